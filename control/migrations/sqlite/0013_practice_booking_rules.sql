-- Issue 25 item 1: a practice's own booking rules, set by an admin
-- (`PUT /v1/practices/{id}/booking-rules`). A practice without a row books under the
-- deployment's `[scheduling]` values; a row holds every rule (`slot_minutes` NULL: each
-- working pattern's own slot length). `updated_by` is the admin's account; the audit trail
-- keeps every change with the old and new values. Timestamps: Unix microseconds.
CREATE TABLE practice_booking_rules (
    practice_id                 BLOB PRIMARY KEY NOT NULL REFERENCES practices (id) ON DELETE CASCADE,
    min_lead_minutes            INTEGER NOT NULL,
    max_horizon_days            INTEGER NOT NULL,
    slot_minutes                INTEGER,
    patient_cancel_window_hours INTEGER NOT NULL,
    proposal_expiry_hours       INTEGER NOT NULL,
    updated_at                  INTEGER NOT NULL,
    updated_by                  BLOB NOT NULL
);

-- The proposal-expiry sweep looks for open proposals and requests only.
CREATE INDEX appointments_open_proposals ON appointments (created_at)
    WHERE status IN ('proposed', 'pending');
