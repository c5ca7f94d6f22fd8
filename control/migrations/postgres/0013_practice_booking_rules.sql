-- Issue 25 item 1: a practice's own booking rules, set by an admin
-- (`PUT /v1/practices/{id}/booking-rules`). A practice without a row books under the
-- deployment's `[scheduling]` values; a row holds every rule (`slot_minutes` NULL: each
-- working pattern's own slot length). `updated_by` is the admin's account; the audit trail
-- keeps every change with the old and new values.
CREATE TABLE practice_booking_rules (
    practice_id                 uuid PRIMARY KEY REFERENCES practices (id) ON DELETE CASCADE,
    min_lead_minutes            integer NOT NULL,
    max_horizon_days            integer NOT NULL,
    slot_minutes                integer,
    patient_cancel_window_hours integer NOT NULL,
    proposal_expiry_hours       integer NOT NULL,
    updated_at                  timestamptz NOT NULL,
    updated_by                  uuid NOT NULL
);

-- The proposal-expiry sweep looks for open proposals and requests only.
CREATE INDEX appointments_open_proposals ON appointments (created_at)
    WHERE status IN ('proposed', 'pending');
