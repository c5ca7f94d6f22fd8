-- TOTP second factor (RFC 6238) per account. `secret` is the shared secret encrypted under the
-- field-encryption data keys (crypto.rs: "v1:<key id>:<AES-256-GCM>"), never plaintext;
-- `enabled_at` NULL means an enrollment waiting for its first code; `last_used_step` is the
-- newest 30-second step a code was accepted for, so a code cannot be used twice.
-- Timestamps: Unix microseconds.
CREATE TABLE user_mfa (
    user_id        BLOB PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret         TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    enabled_at     INTEGER,
    last_used_step INTEGER
);
-- Single-use recovery codes: only a SHA-256 of each is kept.
CREATE TABLE mfa_recovery_codes (
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (user_id, code_hash)
);
