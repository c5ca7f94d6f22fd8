-- TURN sessions the control plane issued credentials for, and the ones it revoked (issue 20).
-- `id` is the opaque part of the REST username `<expiry>:<id>`; nothing in a row is health
-- data. Rows go once their credentials have expired (the retention job). Timestamps: Unix
-- microseconds.
CREATE TABLE turn_sessions (
    id             TEXT PRIMARY KEY NOT NULL,
    expires_at     INTEGER NOT NULL,
    user_id        BLOB NOT NULL,
    login_session  BLOB NOT NULL,
    appointment_id BLOB,
    issued_at      INTEGER NOT NULL
);
CREATE INDEX turn_sessions_by_user ON turn_sessions (user_id);
CREATE INDEX turn_sessions_by_login ON turn_sessions (login_session);
CREATE INDEX turn_sessions_by_appointment ON turn_sessions (appointment_id);
CREATE INDEX turn_sessions_by_expiry ON turn_sessions (expires_at);

-- Revoked TURN sessions, each until its credentials expire: every relay that registers is sent
-- the ones still in force. `revoked_by` is NULL when the system revoked (a no-show).
CREATE TABLE turn_revocations (
    id         TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_by BLOB,
    reason     TEXT NOT NULL,
    revoked_at INTEGER NOT NULL
);
CREATE INDEX turn_revocations_by_expiry ON turn_revocations (expires_at);
