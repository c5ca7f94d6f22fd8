-- Notifications (issue 25 item 2): the outbox of webhook deliveries. One row per event and
-- endpoint; `UNIQUE (kind, appointment_id, occurrence, endpoint)` makes producing an event
-- idempotent, so a retried hook, a restarted scheduler or a second control instance never
-- queues it twice. A worker claims due rows with a lease (`claimed_by`, `lease_until`),
-- delivers, and records the outcome; after the last attempt a row is dead (`dead_at`) until
-- an admin replays it. `payload` holds pseudonymous ids, times and a link only (see
-- docs/notifications.md). Timestamps: Unix microseconds.
CREATE TABLE notification_outbox (
    id              BLOB PRIMARY KEY NOT NULL,
    event_id        BLOB NOT NULL,
    kind            TEXT NOT NULL,
    appointment_id  BLOB NOT NULL,
    occurrence      TEXT NOT NULL,
    endpoint        TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    claimed_by      TEXT,
    lease_until     INTEGER,
    delivered_at    INTEGER,
    dead_at         INTEGER,
    last_error      TEXT,
    UNIQUE (kind, appointment_id, occurrence, endpoint)
);
CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND dead_at IS NULL;
CREATE INDEX notification_outbox_dead ON notification_outbox (dead_at) WHERE dead_at IS NOT NULL;
