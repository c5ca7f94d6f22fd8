//! Accounts and sessions: users, the login throttle, login sessions and their refresh tokens.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::engine::{Row, Tx, sql, write_error};
use super::{
    LoginThrottle, NewUser, RefreshToken, Role, Session, SqlStore, StoreError, StoreResult, ThrottlePolicy, User,
    UserChanges,
};

/// A token's login session and account as last read ([`AccountStore::token_session`]).
pub type TokenSession = (Option<Session>, Option<User>);

#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn create_user(&self, user: NewUser, now: OffsetDateTime) -> StoreResult<User>;
    async fn user_by_id(&self, id: Uuid) -> StoreResult<Option<User>>;
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    async fn list_users(&self, role: Option<Role>, limit: i64, offset: i64) -> StoreResult<Vec<User>>;
    /// `None` if there is no such user; `LastAdmin` (nothing changed) if the change would
    /// disable or demote the last enabled admin, checked and written as one step so that two
    /// admins disabling each other at once cannot leave none.
    async fn update_user(&self, id: Uuid, changes: UserChanges, now: OffsetDateTime) -> StoreResult<Option<User>>;
    /// The failed logins counted for `account` (a hash of an e-mail) from `source`.
    async fn login_throttle(&self, account: &str, source: &str) -> StoreResult<Option<LoginThrottle>>;
    /// Counts one failed login of `account` from `source` (failures last counted before
    /// `policy.forget_before(now)` are forgotten first) and, once `policy` says so, blocks that
    /// pair until a growing delay has passed. Atomic against concurrent failures of the pair.
    async fn record_login_failure(
        &self,
        account: &str,
        source: &str,
        policy: &ThrottlePolicy,
        now: OffsetDateTime,
    ) -> StoreResult<LoginThrottle>;
    /// A successful login forgets that pair's failures.
    async fn clear_login_failures(&self, account: &str, source: &str) -> StoreResult<()>;
    async fn count_users(&self) -> StoreResult<i64>;

    async fn create_session(&self, session: Session, first_token: RefreshToken) -> StoreResult<()>;
    async fn session(&self, id: Uuid) -> StoreResult<Option<Session>>;
    /// The login session `session` and the account `user` an access token names, for the
    /// token's check on every request. May be served from a cache of at most
    /// [`super::READ_CACHE_TTL`]; this store's own writes that end a session or change an
    /// account take effect on it at once (`read_cache`). Shared (`Arc`): a cached answer is
    /// handed out without copying it.
    async fn token_session(&self, session: Uuid, user: Uuid) -> StoreResult<std::sync::Arc<TokenSession>> {
        Ok(std::sync::Arc::new((self.session(session).await?, self.user_by_id(user).await?)))
    }
    async fn refresh_token_by_hash(&self, hash: &[u8]) -> StoreResult<Option<RefreshToken>>;
    /// Marks `used` as spent and stores its successor, atomically: false if it was already
    /// spent (a reuse, which the caller treats as theft).
    async fn rotate_refresh_token(&self, used: Uuid, next: RefreshToken, now: OffsetDateTime) -> StoreResult<bool>;
    async fn revoke_session(&self, id: Uuid, reason: &str, now: OffsetDateTime) -> StoreResult<()>;
    async fn revoke_user_sessions(&self, user_id: Uuid, reason: &str, now: OffsetDateTime) -> StoreResult<u64>;
    /// A user's login sessions, newest first (for the KVKK access export).
    async fn user_sessions(&self, user_id: Uuid) -> StoreResult<Vec<Session>>;
    /// Deletes login sessions (and their refresh tokens) that expired before `cutoff`.
    async fn purge_sessions_expired_before(&self, cutoff: OffsetDateTime) -> StoreResult<u64>;
    /// Keeps a password-reset token (its hash) for `user_id` until `expires_at`; the user's
    /// earlier unused tokens stop working.
    async fn create_password_reset(
        &self,
        user_id: Uuid,
        token_hash: &[u8],
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Spends a password-reset token: the user it was issued for if it is unused and unexpired,
    /// marked used by the same statement (two uses at once: one wins).
    async fn take_password_reset(&self, token_hash: &[u8], now: OffsetDateTime) -> StoreResult<Option<Uuid>>;
    /// The user an unused, unexpired password-reset token was issued for, without spending it.
    async fn password_reset_user(&self, token_hash: &[u8], now: OffsetDateTime) -> StoreResult<Option<Uuid>>;
}

pub(super) fn user_from_row(r: &Row) -> Result<User, sqlx::Error> {
    let role: String = r.get("role")?;
    Ok(User {
        id: r.get("id")?,
        email: r.get("email")?,
        display_name: r.get("display_name")?,
        role: Role::parse(&role).ok_or_else(|| sqlx::Error::Decode(format!("unknown role {role:?}").into()))?,
        password_hash: r.get("password_hash")?,
        disabled: r.get("disabled")?,
        failed_logins: r.get("failed_logins")?,
        locked_until: r.opt_time("locked_until")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

pub(super) fn session_from_row(r: &Row) -> Result<Session, sqlx::Error> {
    Ok(Session {
        id: r.get("id")?,
        user_id: r.get("user_id")?,
        created_at: r.time("created_at")?,
        expires_at: r.time("expires_at")?,
        revoked_at: r.opt_time("revoked_at")?,
        revoked_reason: r.get("revoked_reason")?,
    })
}

fn token_from_row(r: &Row) -> Result<RefreshToken, sqlx::Error> {
    Ok(RefreshToken {
        id: r.get("id")?,
        session_id: r.get("session_id")?,
        token_hash: r.get("token_hash")?,
        created_at: r.time("created_at")?,
        expires_at: r.time("expires_at")?,
        used_at: r.opt_time("used_at")?,
    })
}

async fn insert_token(tx: &mut Tx, t: &RefreshToken) -> Result<(), sqlx::Error> {
    tx.execute(
        sql("INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(t.id)
            .bind(t.session_id)
            .bind(&t.token_hash)
            .bind(t.created_at)
            .bind(t.expires_at),
    )
    .await?;
    Ok(())
}

#[async_trait]
impl AccountStore for SqlStore {
    async fn create_user(&self, u: NewUser, now: OffsetDateTime) -> StoreResult<User> {
        let row = self
            .db
            .fetch_optional(
                sql("INSERT INTO users (id, email, display_name, role, password_hash, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING *")
                .bind(Uuid::new_v4())
                .bind(&u.email)
                .bind(&u.display_name)
                .bind(u.role.as_str())
                .bind(&u.password_hash)
                .bind(now),
            )
            .await
            .map_err(write_error)?;
        Ok(user_from_row(&row.ok_or(sqlx::Error::RowNotFound)?)?)
    }

    async fn user_by_id(&self, id: Uuid) -> StoreResult<Option<User>> {
        Ok(self.db.fetch_optional_as(sql("SELECT * FROM users WHERE id = $1").bind(id), user_from_row).await?)
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        Ok(self.db.fetch_optional_as(sql("SELECT * FROM users WHERE email = $1").bind(email), user_from_row).await?)
    }

    async fn list_users(&self, role: Option<Role>, limit: i64, offset: i64) -> StoreResult<Vec<User>> {
        Ok(self
            .db
            .fetch_all_as(
                sql("SELECT * FROM users WHERE ($1 IS NULL OR role = $1) ORDER BY created_at, id LIMIT $2 OFFSET $3")
                    .bind(role.map(Role::as_str))
                    .bind(limit)
                    .bind(offset),
                user_from_row,
            )
            .await?)
    }

    async fn update_user(&self, id: Uuid, c: UserChanges, now: OffsetDateTime) -> StoreResult<Option<User>> {
        let _invalidate = super::read_cache::InvalidateOnDrop(&self.auth_cache);
        let reset = c.password_hash.is_some();
        let mut tx = self.db.begin().await?;
        tx.lock_enabled_admins().await?;
        let row = tx
            .fetch_optional(
                sql("UPDATE users SET
                        display_name = COALESCE($1, display_name),
                        role = COALESCE($2, role),
                        disabled = COALESCE($3, disabled),
                        password_hash = COALESCE($4, password_hash),
                        failed_logins = CASE WHEN $5 THEN 0 ELSE failed_logins END,
                        locked_until = CASE WHEN $5 THEN NULL ELSE locked_until END,
                        updated_at = $6
                     WHERE id = $7 AND NOT (
                        role = 'admin' AND NOT disabled
                        AND (COALESCE($3, false) OR COALESCE($2, 'admin') <> 'admin')
                        AND (SELECT COUNT(*) FROM users WHERE role = 'admin' AND NOT disabled) <= 1)
                     RETURNING *")
                .bind(c.display_name)
                .bind(c.role.map(Role::as_str))
                .bind(c.disabled)
                .bind(c.password_hash)
                .bind(reset)
                .bind(now)
                .bind(id),
            )
            .await?;
        let exists = match &row {
            Some(_) => true,
            None => tx.fetch_optional(sql("SELECT 1 FROM users WHERE id = $1").bind(id)).await?.is_some(),
        };
        tx.commit().await?;
        match row {
            Some(r) => Ok(Some(user_from_row(&r)?)),
            None if exists => Err(StoreError::LastAdmin),
            None => Ok(None),
        }
    }

    async fn login_throttle(&self, account: &str, source: &str) -> StoreResult<Option<LoginThrottle>> {
        let row = self
            .db
            .fetch_optional(
                sql("SELECT failures, blocked_until FROM login_throttle WHERE account = $1 AND source = $2")
                    .bind(account)
                    .bind(source),
            )
            .await?;
        Ok(row
            .map(|r| -> Result<_, sqlx::Error> {
                Ok(LoginThrottle { failures: r.get("failures")?, blocked_until: r.opt_time("blocked_until")? })
            })
            .transpose()?)
    }

    async fn record_login_failure(
        &self,
        account: &str,
        source: &str,
        policy: &ThrottlePolicy,
        now: OffsetDateTime,
    ) -> StoreResult<LoginThrottle> {
        let mut tx = self.db.begin().await?;
        // Pairs nobody tried for a while go: the table holds recent failures only.
        tx.execute(sql("DELETE FROM login_throttle WHERE updated_at < $1").bind(policy.forget_before(now))).await?;
        // The upsert locks the pair's row until commit: concurrent failures count one by one.
        let row = tx
            .fetch_one(
                sql("INSERT INTO login_throttle (account, source, failures, updated_at) VALUES ($1, $2, 1, $3)
                     ON CONFLICT (account, source) DO UPDATE SET failures = login_throttle.failures + 1, updated_at = $3
                     RETURNING failures, blocked_until")
                .bind(account)
                .bind(source)
                .bind(now),
            )
            .await?;
        let failures: i64 = row.get("failures")?;
        let mut blocked_until = row.opt_time("blocked_until")?;
        if let Some(delay) = policy.delay(failures) {
            let until = now + delay;
            if blocked_until.is_none_or(|b| b < until) {
                tx.execute(
                    sql("UPDATE login_throttle SET blocked_until = $1 WHERE account = $2 AND source = $3")
                        .bind(until)
                        .bind(account)
                        .bind(source),
                )
                .await?;
                blocked_until = Some(until);
            }
        }
        tx.commit().await?;
        Ok(LoginThrottle { failures, blocked_until })
    }

    async fn clear_login_failures(&self, account: &str, source: &str) -> StoreResult<()> {
        self.db
            .execute(sql("DELETE FROM login_throttle WHERE account = $1 AND source = $2").bind(account).bind(source))
            .await?;
        Ok(())
    }

    async fn count_users(&self) -> StoreResult<i64> {
        let row = self.db.fetch_optional(sql("SELECT COUNT(*) AS n FROM users")).await?;
        Ok(row.ok_or(sqlx::Error::RowNotFound)?.get("n")?)
    }

    async fn create_session(&self, s: Session, t: RefreshToken) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        tx.execute(
            sql("INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
                .bind(s.id)
                .bind(s.user_id)
                .bind(s.created_at)
                .bind(s.expires_at),
        )
        .await?;
        insert_token(&mut tx, &t).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session(&self, id: Uuid) -> StoreResult<Option<Session>> {
        Ok(self.db.fetch_optional_as(sql("SELECT * FROM sessions WHERE id = $1").bind(id), session_from_row).await?)
    }

    async fn token_session(&self, session: Uuid, user: Uuid) -> StoreResult<std::sync::Arc<TokenSession>> {
        if let Some(cached) = self.auth_cache.get(&(session, user)) {
            return Ok(cached);
        }
        // Taken before reading: a write that ends the session meanwhile makes this read unkept.
        let ticket = self.auth_cache.ticket();
        let read = std::sync::Arc::new((self.session(session).await?, self.user_by_id(user).await?));
        self.auth_cache.put((session, user), ticket, read.clone());
        Ok(read)
    }

    async fn refresh_token_by_hash(&self, hash: &[u8]) -> StoreResult<Option<RefreshToken>> {
        Ok(self
            .db
            .fetch_optional_as(sql("SELECT * FROM refresh_tokens WHERE token_hash = $1").bind(hash), token_from_row)
            .await?)
    }

    async fn rotate_refresh_token(&self, used: Uuid, next: RefreshToken, now: OffsetDateTime) -> StoreResult<bool> {
        let mut tx = self.db.begin().await?;
        let spent = tx
            .execute(
                sql("UPDATE refresh_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL").bind(now).bind(used),
            )
            .await?;
        if spent != 1 {
            return Ok(false);
        }
        insert_token(&mut tx, &next).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn revoke_session(&self, id: Uuid, reason: &str, now: OffsetDateTime) -> StoreResult<()> {
        let _invalidate = super::read_cache::InvalidateOnDrop(&self.auth_cache);
        self.db
            .execute(
                sql("UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(reason)
                    .bind(id),
            )
            .await?;
        Ok(())
    }

    async fn revoke_user_sessions(&self, user_id: Uuid, reason: &str, now: OffsetDateTime) -> StoreResult<u64> {
        let _invalidate = super::read_cache::InvalidateOnDrop(&self.auth_cache);
        Ok(self
            .db
            .execute(
                sql("UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE user_id = $3 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(reason)
                    .bind(user_id),
            )
            .await?)
    }

    async fn user_sessions(&self, user_id: Uuid) -> StoreResult<Vec<Session>> {
        Ok(self
            .db
            .fetch_all_as(
                sql("SELECT * FROM sessions WHERE user_id = $1 ORDER BY created_at DESC").bind(user_id),
                session_from_row,
            )
            .await?)
    }

    async fn purge_sessions_expired_before(&self, cutoff: OffsetDateTime) -> StoreResult<u64> {
        let mut tx = self.db.begin().await?;
        tx.execute(
            sql("DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE expires_at < $1)")
                .bind(cutoff),
        )
        .await?;
        let done = tx.execute(sql("DELETE FROM sessions WHERE expires_at < $1").bind(cutoff)).await?;
        tx.commit().await?;
        Ok(done)
    }

    async fn create_password_reset(
        &self,
        user_id: Uuid,
        token_hash: &[u8],
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> StoreResult<()> {
        self.db
            .execute(sql("DELETE FROM password_resets WHERE user_id = $1 AND used_at IS NULL").bind(user_id))
            .await?;
        self.db
            .execute(
                sql(
                    "INSERT INTO password_resets (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(token_hash)
                .bind(user_id)
                .bind(now)
                .bind(expires_at),
            )
            .await?;
        Ok(())
    }

    async fn password_reset_user(&self, token_hash: &[u8], now: OffsetDateTime) -> StoreResult<Option<Uuid>> {
        let select =
            sql("SELECT user_id FROM password_resets WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2")
                .bind(token_hash)
                .bind(now);
        Ok(self.db.fetch_optional_as(select, |r| r.get("user_id")).await?)
    }

    async fn take_password_reset(&self, token_hash: &[u8], now: OffsetDateTime) -> StoreResult<Option<Uuid>> {
        let spend = sql(
            "UPDATE password_resets SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $3 \
                         RETURNING user_id",
        )
        .bind(now)
        .bind(token_hash)
        .bind(now);
        Ok(self.db.fetch_optional_as(spend, |r| r.get("user_id")).await?)
    }
}
