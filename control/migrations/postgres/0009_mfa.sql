-- TOTP second factor (RFC 6238) per account. `secret` is the shared secret encrypted under the
-- field-encryption data keys (crypto.rs: "v1:<key id>:<AES-256-GCM>"), never plaintext;
-- `enabled_at` NULL means an enrollment waiting for its first code; `last_used_step` is the
-- newest 30-second step a code was accepted for, so a code cannot be used twice.
CREATE TABLE user_mfa (
    user_id        uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret         text NOT NULL,
    created_at     timestamptz NOT NULL,
    enabled_at     timestamptz,
    last_used_step bigint
);
-- Single-use recovery codes: only a SHA-256 of each is kept.
CREATE TABLE mfa_recovery_codes (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  bytea NOT NULL,
    created_at timestamptz NOT NULL,
    used_at    timestamptz,
    PRIMARY KEY (user_id, code_hash)
);
