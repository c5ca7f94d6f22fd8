-- Accounts, login sessions with rotating refresh tokens, and the append-only audit chain.
CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL UNIQUE,
    display_name  text NOT NULL,
    role          text NOT NULL CHECK (role IN ('admin', 'practitioner', 'patient')),
    password_hash text NOT NULL,
    disabled      boolean NOT NULL DEFAULT false,
    failed_logins bigint NOT NULL DEFAULT 0,
    locked_until  timestamptz,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE TABLE sessions (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text
);
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    id         uuid PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    token_hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);

CREATE TABLE audit_events (
    seq        bigint PRIMARY KEY,
    id         uuid NOT NULL UNIQUE,
    at         timestamptz NOT NULL,
    actor      uuid,
    action     text NOT NULL,
    target     text,
    outcome    text NOT NULL,
    source_ip  text,
    request_id text,
    prev_hash  text NOT NULL,
    hash       text NOT NULL
);
CREATE INDEX audit_by_actor ON audit_events (actor, seq);
CREATE INDEX audit_by_action ON audit_events (action, seq);

-- HIPAA 164.312(b): the audit trail is append-only. The hash chain shows tampering; this
-- trigger refuses it outright. Only a superuser or the table's owner can disable it, so the
-- application should connect as a role that owns nothing (docs/control-config.md).
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;
CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
