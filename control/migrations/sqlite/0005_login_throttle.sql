-- Failed logins per (account, source address), replacing the account-wide lockout: an
-- attacker's failures from one address slow down that address only, never the real user at
-- hers. `account` is a hash of the normalised e-mail, so unknown e-mails are counted exactly
-- like known ones (no account enumeration through the delays); `source` is an IPv4 address or
-- an IPv6 /64. Timestamps: Unix microseconds.
CREATE TABLE login_throttle (
    account       TEXT NOT NULL,
    source        TEXT NOT NULL,
    failures      INTEGER NOT NULL,
    blocked_until INTEGER,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (account, source)
);
CREATE INDEX login_throttle_by_age ON login_throttle (updated_at);
