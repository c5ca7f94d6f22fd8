-- KVKK / HIPAA: versioned privacy notices, explicit consents as an append-only history, and
-- the medical-record retention date of anonymised patients.
CREATE TABLE privacy_notices (
    id           uuid PRIMARY KEY,
    version      text NOT NULL UNIQUE,
    language     text NOT NULL,
    title        text NOT NULL,
    body         text NOT NULL,
    -- JSON array of {code, required, description}: what the notice asks consent for.
    purposes     text NOT NULL,
    published_at timestamptz NOT NULL,
    published_by uuid NOT NULL
);

-- One row per decision; the current state of a purpose is its latest row. Never updated.
CREATE TABLE consents (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    notice_version text NOT NULL REFERENCES privacy_notices (version),
    purpose        text NOT NULL,
    decision       text NOT NULL CHECK (decision IN ('given', 'withdrawn')),
    at             timestamptz NOT NULL,
    source_ip      text
);
CREATE INDEX consents_by_user ON consents (user_id, at);
CREATE FUNCTION consents_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'consents is append-only';
END $$;
CREATE TRIGGER consents_no_update BEFORE UPDATE ON consents
    FOR EACH ROW EXECUTE FUNCTION consents_append_only();

-- Set when a patient is anonymised on an erasure request: the retention job deletes the
-- remaining (anonymised) medical record after this date.
ALTER TABLE patients ADD COLUMN retain_until timestamptz;
