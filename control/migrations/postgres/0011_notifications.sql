-- Notifications (issue 25 item 2): the outbox of webhook deliveries. One row per event and
-- endpoint; `UNIQUE (kind, appointment_id, occurrence, endpoint)` makes producing an event
-- idempotent, so a retried hook, a restarted scheduler or a second control instance never
-- queues it twice. A worker claims due rows with a lease (`claimed_by`, `lease_until`,
-- `FOR UPDATE SKIP LOCKED`), delivers, and records the outcome; after the last attempt a row
-- is dead (`dead_at`) until an admin replays it. `payload` holds pseudonymous ids, times and a
-- link only (see docs/notifications.md).
CREATE TABLE notification_outbox (
    id              uuid PRIMARY KEY,
    event_id        uuid NOT NULL,
    kind            text NOT NULL,
    appointment_id  uuid NOT NULL,
    occurrence      text NOT NULL,
    endpoint        text NOT NULL,
    payload         text NOT NULL,
    created_at      timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    claimed_by      text,
    lease_until     timestamptz,
    delivered_at    timestamptz,
    dead_at         timestamptz,
    last_error      text,
    UNIQUE (kind, appointment_id, occurrence, endpoint)
);
CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND dead_at IS NULL;
CREATE INDEX notification_outbox_dead ON notification_outbox (dead_at) WHERE dead_at IS NOT NULL;
