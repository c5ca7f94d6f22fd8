-- KVKK / HIPAA: versioned privacy notices, explicit consents as an append-only history, and
-- the medical-record retention date of anonymised patients. Timestamps: Unix microseconds.
CREATE TABLE privacy_notices (
    id           BLOB PRIMARY KEY NOT NULL,
    version      TEXT NOT NULL UNIQUE,
    language     TEXT NOT NULL,
    title        TEXT NOT NULL,
    body         TEXT NOT NULL,
    -- JSON array of {code, required, description}: what the notice asks consent for.
    purposes     TEXT NOT NULL,
    published_at INTEGER NOT NULL,
    published_by BLOB NOT NULL
);

-- One row per decision; the current state of a purpose is its latest row. Never updated.
CREATE TABLE consents (
    id             BLOB PRIMARY KEY NOT NULL,
    user_id        BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    notice_version TEXT NOT NULL REFERENCES privacy_notices (version),
    purpose        TEXT NOT NULL,
    decision       TEXT NOT NULL CHECK (decision IN ('given', 'withdrawn')),
    at             INTEGER NOT NULL,
    source_ip      TEXT
);
CREATE INDEX consents_by_user ON consents (user_id, at);
CREATE TRIGGER consents_no_update BEFORE UPDATE ON consents
BEGIN
    SELECT RAISE(ABORT, 'consents is append-only');
END;

-- Set when a patient is anonymised on an erasure request: the retention job deletes the
-- remaining (anonymised) medical record after this date.
ALTER TABLE patients ADD COLUMN retain_until INTEGER;
