//! The TOTP second factor of the logged-in user: enroll (a new secret, pending), confirm with a
//! first code (on, with 10 single-use recovery codes shown once), disable, new recovery codes.
//! The secret is kept encrypted under the field-encryption keys; recovery codes as hashes only.
//! Every wrong code, here and at login, counts as a failed login in the per-(account, source)
//! throttle and is audited.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::{EnrollingCaller, must_enroll_mfa};
use super::totp::{SECRET_BYTES, Totp, TotpError};
use crate::audit::Audit;
use crate::crypto::FieldKeys;
use crate::problem::{ApiError, ApiJson, ApiResult};
use crate::state::{AppState, ClientIp};
use crate::store::{MfaRecord, StoreError, User};

/// The column name bound into every encrypted TOTP secret (crypto.rs): never change it.
pub const SECRET_FIELD: &str = "account.totp_secret";
/// Recovery codes made at confirmation and at each regeneration.
pub const RECOVERY_CODES: usize = 10;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// The 6-digit code the authenticator app shows now.
    #[schema(pattern = r"^[0-9]{6}$")]
    pub code: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DisableRequest {
    /// The 6-digit code the authenticator app shows now…
    #[schema(max_length = 64)]
    pub code: Option<String>,
    /// …or one unused recovery code.
    #[schema(max_length = 64)]
    pub recovery_code: Option<String>,
}

/// A new, pending enrollment: put the secret into an authenticator app (the URI is what a QR
/// code would carry), then confirm with a code.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Enrollment {
    /// The shared secret, base32.
    pub secret: String,
    /// `otpauth://totp/…` with the secret, issuer, SHA1, 6 digits, 30 s.
    pub otpauth_uri: String,
}

/// Single-use recovery codes, shown this once: only their hashes are kept.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

/// The caller's second factor.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MfaStatus {
    /// On: logins need a code.
    pub enabled: bool,
    /// Enrolled, waiting for the confirming code.
    pub pending: bool,
    /// The account's role must use it (`auth.mfa-required-roles`).
    pub required: bool,
    pub recovery_codes_left: i64,
}

/// A second factor as presented.
#[derive(Debug, Clone, Copy)]
pub enum Proof<'a> {
    Code(&'a str),
    RecoveryCode(&'a str),
}

/// Whether a presented second factor was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Refused,
}

/// Why the stored secrets cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MfaKeyError {
    #[error(
        "{count} stored TOTP secret(s) cannot be decrypted with the configured [field-encryption] data keys \
         ({reason}): restore the key they were encrypted under (data-dir/field.key, or the data-keys entry), or \
         reset those accounts' MFA with `teletip-control user reset-mfa EMAIL`"
    )]
    Unreadable { count: usize, reason: crate::crypto::CryptoError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Start-up check: every stored TOTP secret decrypts under the configured keys. A lost or
/// changed key is a clear refusal to start, never logins that fail one by one.
pub async fn check_secrets_readable(store: &crate::store::DynStore, keys: &FieldKeys) -> Result<usize, MfaKeyError> {
    let secrets = store.mfa_secrets().await?;
    let failures: Vec<_> = secrets.iter().filter_map(|s| keys.decrypt(SECRET_FIELD, s).err()).collect();
    match failures.first() {
        Some(reason) => Err(MfaKeyError::Unreadable { count: failures.len(), reason: reason.clone() }),
        None => Ok(secrets.len()),
    }
}

fn secret_of(state: &AppState, record: &MfaRecord) -> ApiResult<Totp> {
    let text =
        zeroize::Zeroizing::new(state.fields().decrypt(SECRET_FIELD, &record.secret).map_err(|e| {
            ApiError::Internal(format!("the TOTP secret of {} cannot be decrypted: {e}", record.user_id))
        })?);
    Totp::from_base32(&text).ok_or_else(|| ApiError::Internal("a stored TOTP secret is not base32".into()))
}

/// A recovery code as stored: SHA-256 of the user id and the code without dashes, spaces or case.
pub fn recovery_code_hash(user_id: Uuid, code: &str) -> Vec<u8> {
    let normalized: String =
        code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect();
    let mut digest = Sha256::new();
    digest.update(user_id.as_bytes());
    digest.update(normalized.as_bytes());
    digest.finalize().to_vec()
}

/// Ten new recovery codes (80 random bits each, `xxxx-xxxx-xxxx-xxxx` in base32) and their hashes.
fn new_recovery_codes(user_id: Uuid) -> (Vec<String>, Vec<Vec<u8>>) {
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| {
            let mut raw = [0u8; 10];
            rand::rng().fill_bytes(&mut raw);
            let text = data_encoding::BASE32_NOPAD.encode(&raw).to_lowercase();
            text.as_bytes()
                .chunks(4)
                .map(|c| std::str::from_utf8(c).expect("base32 is ASCII"))
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect();
    let hashes = codes.iter().map(|c| recovery_code_hash(user_id, c)).collect();
    (codes, hashes)
}

/// Refuses while the (account, source) pair is throttled: a guess made now could not count.
async fn refuse_if_throttled(state: &AppState, ip: &ClientIp, user: &User) -> ApiResult<()> {
    let now = state.clock().now();
    let (account, source) = (super::throttle_account(&user.email), super::throttle_source(ip.0));
    if let Some(until) = state.store().login_throttle(&account, &source).await?.and_then(|t| t.blocked_until) {
        if until > now {
            let audit = Audit::new("auth.mfa.verify", ip).actor(user.id).target(user.id.to_string());
            state.audit(audit.outcome("refused:throttled")).await?;
            let wait = (until - now).whole_milliseconds().max(1) as u64;
            return Err(ApiError::RetryLater {
                detail: "too many failed logins for this account from this address; try again later".into(),
                retry_after_seconds: wait.div_ceil(1000),
            });
        }
    }
    Ok(())
}

/// A wrong, replayed or spent code: a failed login of the (account, source) pair, audited as
/// `auth.mfa.verify` with `outcome`.
async fn count_failure(state: &AppState, ip: &ClientIp, user: &User, outcome: &str) -> ApiResult<()> {
    let (account, source) = (super::throttle_account(&user.email), super::throttle_source(ip.0));
    let policy = state.config().auth.throttle();
    state.store().record_login_failure(&account, &source, &policy, state.clock().now()).await?;
    state.audit(Audit::new("auth.mfa.verify", ip).actor(user.id).target(user.id.to_string()).outcome(outcome)).await?;
    metrics::counter!("teletip_mfa_codes_failed_total").increment(1);
    Ok(())
}

/// Checks a second factor of `user`, whose MFA `record` is on. Refused while the (account,
/// source) pair is throttled; a wrong, replayed or spent code counts as a failed login of the
/// pair. A code's step is recorded as used, a recovery code spent (`auth.mfa.verify`
/// `success:recovery-code`).
pub async fn check_proof(
    state: &AppState,
    ip: &ClientIp,
    user: &User,
    record: &MfaRecord,
    proof: Proof<'_>,
) -> ApiResult<Verdict> {
    refuse_if_throttled(state, ip, user).await?;
    let now = state.clock().now();
    let failure = match proof {
        Proof::Code(code) => {
            match secret_of(state, record)?.verify(code, now.unix_timestamp(), record.last_used_step) {
                // The store decides between two logins racing with one code.
                Ok(step) if state.store().use_totp_step(user.id, step).await? => return Ok(Verdict::Accepted),
                Ok(_) | Err(TotpError::Replayed) => "failure:replayed-code",
                Err(TotpError::Malformed | TotpError::Wrong) => "failure:wrong-code",
            }
        }
        Proof::RecoveryCode(code) => {
            if state.store().use_recovery_code(user.id, &recovery_code_hash(user.id, code), now).await? {
                let audit = Audit::new("auth.mfa.verify", ip).actor(user.id).target(user.id.to_string());
                state.audit(audit.outcome("success:recovery-code")).await?;
                return Ok(Verdict::Accepted);
            }
            "failure:wrong-recovery-code"
        }
    };
    count_failure(state, ip, user, failure).await?;
    Ok(Verdict::Refused)
}

const WRONG_CODE: &str = "is wrong or already used";

async fn caller_user(state: &AppState, caller: &EnrollingCaller) -> ApiResult<User> {
    state.store().user_by_id(caller.0.user_id).await?.ok_or(ApiError::NotFound)
}

/// The caller's second factor: on, pending, required by their role, recovery codes left.
#[utoipa::path(get, path = "/v1/auth/mfa", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = MfaStatus), (status = 401, body = crate::problem::Problem)))]
pub async fn status(State(state): State<AppState>, caller: EnrollingCaller) -> ApiResult<Json<MfaStatus>> {
    let record = state.store().mfa(caller.0.user_id).await?;
    let enabled = record.as_ref().is_some_and(MfaRecord::enabled);
    Ok(Json(MfaStatus {
        enabled,
        pending: record.is_some() && !enabled,
        required: state.config().auth.mfa_required_roles.contains(&caller.0.role),
        recovery_codes_left: if enabled { state.store().recovery_codes_left(caller.0.user_id).await? } else { 0 },
    }))
}

/// Start enrolling a TOTP second factor: a new secret, pending until confirmed with a code
/// (an earlier pending one is replaced). Audited as `auth.mfa.enroll`.
#[utoipa::path(post, path = "/v1/auth/mfa/enroll", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Enrollment), (status = 401, body = crate::problem::Problem),
              (status = 409, body = crate::problem::Problem, description = "MFA is already on")))]
pub async fn enroll(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: EnrollingCaller,
) -> ApiResult<Json<Enrollment>> {
    let user = caller_user(&state, &caller).await?;
    let audit = Audit::new("auth.mfa.enroll", &ip).actor(user.id).target(user.id.to_string());
    let mut raw = vec![0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut raw);
    let totp = Totp::new(raw);
    let secret = zeroize::Zeroizing::new(totp.base32());
    let stored = state.fields().encrypt(SECRET_FIELD, &secret);
    if !state.store().start_mfa_enrollment(user.id, &stored, state.clock().now()).await? {
        state.audit(audit.outcome("refused:already-on")).await?;
        return Err(ApiError::Conflict(
            "two-factor authentication is already on; disable it first (or ask an admin to reset it)".into(),
        ));
    }
    state.audit(audit.outcome("success")).await?;
    Ok(Json(Enrollment {
        otpauth_uri: totp.otpauth_uri(&state.config().auth.issuer, &user.email),
        secret: secret.to_string(),
    }))
}

/// Turn the pending second factor on with a first code: answers the 10 recovery codes, shown
/// this once. Audited as `auth.mfa.confirm`.
#[utoipa::path(post, path = "/v1/auth/mfa/confirm", tag = "auth", request_body = CodeRequest, security(("bearer" = [])),
    responses((status = 200, body = RecoveryCodes), (status = 401, body = crate::problem::Problem),
              (status = 409, body = crate::problem::Problem, description = "no enrollment is pending"),
              (status = 422, body = crate::problem::Problem, description = "the code is wrong"),
              (status = 429, body = crate::problem::Problem)))]
pub async fn confirm(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: EnrollingCaller,
    ApiJson(req): ApiJson<CodeRequest>,
) -> ApiResult<Json<RecoveryCodes>> {
    let user = caller_user(&state, &caller).await?;
    let audit = Audit::new("auth.mfa.confirm", &ip).actor(user.id).target(user.id.to_string());
    let Some(record) = state.store().mfa(user.id).await?.filter(|r| !r.enabled()) else {
        state.audit(audit.outcome("refused:nothing-pending")).await?;
        return Err(ApiError::Conflict("no enrollment is pending; start one with POST /v1/auth/mfa/enroll".into()));
    };
    refuse_if_throttled(&state, &ip, &user).await?;
    let now = state.clock().now();
    let step = match secret_of(&state, &record)?.verify(&req.code, now.unix_timestamp(), None) {
        Ok(step) => step,
        Err(_) => {
            count_failure(&state, &ip, &user, "failure:wrong-code").await?;
            state.audit(audit.outcome("failure:wrong-code")).await?;
            return Err(ApiError::field("code", WRONG_CODE));
        }
    };
    let (codes, hashes) = new_recovery_codes(user.id);
    if !state.store().enable_mfa(user.id, step, &hashes, now).await? {
        state.audit(audit.outcome("refused:nothing-pending")).await?;
        return Err(ApiError::Conflict("no enrollment is pending; start one with POST /v1/auth/mfa/enroll".into()));
    }
    state.audit(audit.outcome("success")).await?;
    Ok(Json(RecoveryCodes { recovery_codes: codes }))
}

/// Turn the second factor off, with a current code or a recovery code. Refused (409) when the
/// account's role requires it. Audited as `auth.mfa.disable`.
#[utoipa::path(post, path = "/v1/auth/mfa/disable", tag = "auth", request_body = DisableRequest, security(("bearer" = [])),
    responses((status = 204), (status = 401, body = crate::problem::Problem),
              (status = 409, body = crate::problem::Problem, description = "MFA is not on, or the role requires it"),
              (status = 422, body = crate::problem::Problem, description = "the code is wrong"),
              (status = 429, body = crate::problem::Problem)))]
pub async fn disable(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: EnrollingCaller,
    ApiJson(req): ApiJson<DisableRequest>,
) -> ApiResult<StatusCode> {
    let user = caller_user(&state, &caller).await?;
    let audit = Audit::new("auth.mfa.disable", &ip).actor(user.id).target(user.id.to_string());
    let (proof, field) = match (req.code.as_deref(), req.recovery_code.as_deref()) {
        (Some(code), None) => (Proof::Code(code), "code"),
        (None, Some(code)) => (Proof::RecoveryCode(code), "recoveryCode"),
        _ => return Err(ApiError::field("body", "send either code or recoveryCode")),
    };
    let Some(record) = state.store().mfa(user.id).await?.filter(MfaRecord::enabled) else {
        state.audit(audit.outcome("refused:not-on")).await?;
        return Err(ApiError::Conflict("two-factor authentication is not on".into()));
    };
    if state.config().auth.mfa_required_roles.contains(&user.role) {
        state.audit(audit.outcome("refused:required-by-role")).await?;
        return Err(ApiError::Conflict(format!(
            "the role {} must use two-factor authentication (auth.mfa-required-roles); an admin can reset it for a lost device",
            user.role.as_str()
        )));
    }
    if check_proof(&state, &ip, &user, &record, proof).await? == Verdict::Refused {
        state.audit(audit.outcome("failure:wrong-code")).await?;
        return Err(ApiError::field(field, WRONG_CODE));
    }
    state.store().remove_mfa(user.id).await?;
    state.audit(audit.outcome("success")).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// New recovery codes, with a current code: the earlier ones stop working. Audited as
/// `auth.mfa.regenerate-recovery-codes`.
#[utoipa::path(post, path = "/v1/auth/mfa/recovery-codes", tag = "auth", request_body = CodeRequest,
    security(("bearer" = [])),
    responses((status = 200, body = RecoveryCodes), (status = 401, body = crate::problem::Problem),
              (status = 409, body = crate::problem::Problem, description = "MFA is not on"),
              (status = 422, body = crate::problem::Problem, description = "the code is wrong"),
              (status = 429, body = crate::problem::Problem)))]
pub async fn regenerate(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: EnrollingCaller,
    ApiJson(req): ApiJson<CodeRequest>,
) -> ApiResult<Json<RecoveryCodes>> {
    let user = caller_user(&state, &caller).await?;
    let audit = Audit::new("auth.mfa.regenerate-recovery-codes", &ip).actor(user.id).target(user.id.to_string());
    let Some(record) = state.store().mfa(user.id).await?.filter(MfaRecord::enabled) else {
        state.audit(audit.outcome("refused:not-on")).await?;
        return Err(ApiError::Conflict("two-factor authentication is not on".into()));
    };
    if check_proof(&state, &ip, &user, &record, Proof::Code(&req.code)).await? == Verdict::Refused {
        state.audit(audit.outcome("failure:wrong-code")).await?;
        return Err(ApiError::field("code", WRONG_CODE));
    }
    let (codes, hashes) = new_recovery_codes(user.id);
    state.store().replace_recovery_codes(user.id, &hashes, state.clock().now()).await?;
    state.audit(audit.outcome("success")).await?;
    Ok(Json(RecoveryCodes { recovery_codes: codes }))
}

/// Whether the account must enroll before its session may do anything else.
pub async fn enrollment_required(state: &AppState, user: &User) -> ApiResult<bool> {
    Ok(must_enroll_mfa(state, user.id, user.role).await?)
}

/// The caller's second factor: the routes, each served and described from its `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(enroll))
        .routes(routes!(confirm))
        .routes(routes!(disable))
        .routes(routes!(regenerate))
}
