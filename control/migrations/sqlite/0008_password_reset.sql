-- Single-use, short-lived password-reset tokens: only a SHA-256 of the token is kept, so a
-- copy of the database cannot reset anybody's password. Timestamps: Unix microseconds.
CREATE TABLE password_resets (
    token_hash BLOB PRIMARY KEY NOT NULL,
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX password_resets_by_user ON password_resets (user_id);
