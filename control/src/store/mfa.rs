//! The TOTP second factor of accounts: the encrypted secret, whether it is on, the last step a
//! code was accepted for, and the hashes of the single-use recovery codes.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::engine::{Row, sql};
use super::{SqlStore, StoreResult};

/// An account's TOTP setting as stored.
#[derive(Debug, Clone)]
pub struct MfaRecord {
    pub user_id: Uuid,
    /// Encrypted (crypto.rs `FieldKeys::encrypt`), never the plaintext secret.
    pub secret: String,
    pub created_at: OffsetDateTime,
    /// `None`: enrolled but not yet confirmed with a code.
    pub enabled_at: Option<OffsetDateTime>,
    pub last_used_step: Option<i64>,
}

impl MfaRecord {
    pub fn enabled(&self) -> bool {
        self.enabled_at.is_some()
    }
}

#[async_trait]
pub trait MfaStore: Send + Sync {
    async fn mfa(&self, user_id: Uuid) -> StoreResult<Option<MfaRecord>>;
    /// Keeps a new, unconfirmed secret for the user, replacing an unconfirmed one: false (and
    /// nothing changed) if the user's MFA is already on.
    async fn start_mfa_enrollment(&self, user_id: Uuid, secret: &str, now: OffsetDateTime) -> StoreResult<bool>;
    /// Turns a pending enrollment on, `step` being the step of the code that confirmed it, and
    /// stores the recovery codes' hashes: false if there was no pending enrollment.
    async fn enable_mfa(
        &self,
        user_id: Uuid,
        step: i64,
        recovery_code_hashes: &[Vec<u8>],
        now: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Records `step` as used if it is newer than the last used one (atomic: of two logins
    /// with the same code, one wins): false means a replay.
    async fn use_totp_step(&self, user_id: Uuid, step: i64) -> StoreResult<bool>;
    /// Spends an unused recovery code of the user: false if it is unknown or spent.
    async fn use_recovery_code(&self, user_id: Uuid, code_hash: &[u8], now: OffsetDateTime) -> StoreResult<bool>;
    /// Replaces every recovery code of the user.
    async fn replace_recovery_codes(&self, user_id: Uuid, hashes: &[Vec<u8>], now: OffsetDateTime) -> StoreResult<()>;
    /// How many unused recovery codes the user has.
    async fn recovery_codes_left(&self, user_id: Uuid) -> StoreResult<i64>;
    /// Removes the user's TOTP secret and recovery codes: false if there were none.
    async fn remove_mfa(&self, user_id: Uuid) -> StoreResult<bool>;
    /// Every stored (encrypted) secret, to check at start-up that the keys can read them.
    async fn mfa_secrets(&self) -> StoreResult<Vec<String>>;
}

fn record_from_row(r: &Row) -> Result<MfaRecord, sqlx::Error> {
    Ok(MfaRecord {
        user_id: r.get("user_id")?,
        secret: r.get("secret")?,
        created_at: r.time("created_at")?,
        enabled_at: r.opt_time("enabled_at")?,
        last_used_step: r.get("last_used_step")?,
    })
}

#[async_trait]
impl MfaStore for SqlStore {
    async fn mfa(&self, user_id: Uuid) -> StoreResult<Option<MfaRecord>> {
        Ok(self
            .db
            .fetch_optional_as(sql("SELECT * FROM user_mfa WHERE user_id = $1").bind(user_id), record_from_row)
            .await?)
    }

    async fn start_mfa_enrollment(&self, user_id: Uuid, secret: &str, now: OffsetDateTime) -> StoreResult<bool> {
        let mut tx = self.db.begin().await?;
        tx.execute(sql("DELETE FROM user_mfa WHERE user_id = $1 AND enabled_at IS NULL").bind(user_id)).await?;
        let inserted = tx
            .execute(
                sql("INSERT INTO user_mfa (user_id, secret, created_at) VALUES ($1, $2, $3) ON CONFLICT (user_id) DO NOTHING")
                    .bind(user_id)
                    .bind(secret)
                    .bind(now),
            )
            .await?;
        tx.commit().await?;
        Ok(inserted == 1)
    }

    async fn enable_mfa(&self, user_id: Uuid, step: i64, hashes: &[Vec<u8>], now: OffsetDateTime) -> StoreResult<bool> {
        let mut tx = self.db.begin().await?;
        let enabled = tx
            .execute(
                sql("UPDATE user_mfa SET enabled_at = $1, last_used_step = $2 WHERE user_id = $3 AND enabled_at IS NULL")
                    .bind(now)
                    .bind(step)
                    .bind(user_id),
            )
            .await?;
        if enabled != 1 {
            return Ok(false);
        }
        tx.execute(sql("DELETE FROM mfa_recovery_codes WHERE user_id = $1").bind(user_id)).await?;
        for hash in hashes {
            tx.execute(
                sql("INSERT INTO mfa_recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)")
                    .bind(user_id)
                    .bind(hash)
                    .bind(now),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn use_totp_step(&self, user_id: Uuid, step: i64) -> StoreResult<bool> {
        let updated = self
            .db
            .execute(
                sql(
                    "UPDATE user_mfa SET last_used_step = $1
                     WHERE user_id = $2 AND enabled_at IS NOT NULL AND (last_used_step IS NULL OR last_used_step < $1)",
                )
                .bind(step)
                .bind(user_id),
            )
            .await?;
        Ok(updated == 1)
    }

    async fn use_recovery_code(&self, user_id: Uuid, code_hash: &[u8], now: OffsetDateTime) -> StoreResult<bool> {
        let spent = self
            .db
            .execute(
                sql("UPDATE mfa_recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL")
                    .bind(now)
                    .bind(user_id)
                    .bind(code_hash),
            )
            .await?;
        Ok(spent == 1)
    }

    async fn replace_recovery_codes(&self, user_id: Uuid, hashes: &[Vec<u8>], now: OffsetDateTime) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        tx.execute(sql("DELETE FROM mfa_recovery_codes WHERE user_id = $1").bind(user_id)).await?;
        for hash in hashes {
            tx.execute(
                sql("INSERT INTO mfa_recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)")
                    .bind(user_id)
                    .bind(hash)
                    .bind(now),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn recovery_codes_left(&self, user_id: Uuid) -> StoreResult<i64> {
        let row = self
            .db
            .fetch_optional(
                sql("SELECT COUNT(*) AS n FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL")
                    .bind(user_id),
            )
            .await?;
        Ok(row.ok_or(sqlx::Error::RowNotFound)?.get("n")?)
    }

    async fn remove_mfa(&self, user_id: Uuid) -> StoreResult<bool> {
        let mut tx = self.db.begin().await?;
        tx.execute(sql("DELETE FROM mfa_recovery_codes WHERE user_id = $1").bind(user_id)).await?;
        let removed = tx.execute(sql("DELETE FROM user_mfa WHERE user_id = $1").bind(user_id)).await?;
        tx.commit().await?;
        Ok(removed == 1)
    }

    async fn mfa_secrets(&self) -> StoreResult<Vec<String>> {
        Ok(self.db.fetch_all_as(sql("SELECT secret FROM user_mfa"), |r| r.get("secret")).await?)
    }
}
