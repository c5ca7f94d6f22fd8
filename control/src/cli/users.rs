//! `teletip-control user list|disable|reset-password|reset-mfa`: account administration on the host, for
//! the operator who cannot (or can no longer) use the API. Every action is audited like its API
//! counterpart, with the outcome `success:cli` and no actor, source address or request id.

use std::fmt::Write as _;

use uuid::Uuid;

use crate::auth::{normalize_email, password};
use crate::state::AppState;
use crate::store::{NewAuditEvent, StoreError, User, UserChanges};

/// Why a `user` subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum UserCliError {
    #[error("no user has the e-mail {0}")]
    NoSuchUser(String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn cli_event(action: &str, target: Option<String>, outcome: &str) -> NewAuditEvent {
    NewAuditEvent {
        at: crate::clock::now(),
        actor: None,
        action: action.into(),
        target,
        outcome: outcome.into(),
        source_ip: None,
        request_id: None,
    }
}

async fn by_email(state: &AppState, email: &str) -> Result<User, UserCliError> {
    let email = normalize_email(email);
    state.store().user_by_email(&email).await?.ok_or(UserCliError::NoSuchUser(email))
}

/// Every account as a table: e-mail, role, state, id, created. Audited as `user.list`.
pub async fn list(state: &AppState) -> Result<String, UserCliError> {
    let mut users = Vec::new();
    loop {
        let page = state.store().list_users(None, 500, users.len() as i64).await?;
        let done = page.len() < 500;
        users.extend(page);
        if done {
            break;
        }
    }
    state.store().append_audit(cli_event("user.list", None, "success:cli")).await?;
    let width = users.iter().map(|u| u.email.len()).max().unwrap_or(5).max(5);
    let mut out = format!("{:<width$}  {:<12}  {:<8}  {:<36}  CREATED\n", "EMAIL", "ROLE", "STATE", "ID");
    for u in &users {
        let state = if u.disabled { "disabled" } else { "enabled" };
        let created = u.created_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let _ = writeln!(out, "{:<width$}  {:<12}  {:<8}  {}  {created}", u.email, u.role.as_str(), state, u.id);
    }
    Ok(out)
}

/// What a disable or password reset does beyond the row: every session of the user ends, and
/// the relay credentials issued under them are revoked (recorded in the store; relays learn it
/// from the serving instances). A Socket.IO connection's next event fails the store check.
///
/// The serving instances may have the sessions in their read cache (`store::READ_CACHE_TTL`),
/// which this process cannot clear: the command waits that long before it returns, so that
/// when it returns the sessions are refused everywhere.
async fn end_sessions(state: &AppState, id: Uuid, reason: &'static str) -> Result<(), UserCliError> {
    let now = state.clock().now();
    state.store().revoke_user_sessions(id, "account-changed", now).await?;
    let revoke = crate::domain::revocation::on_account_change(id, reason);
    crate::revocation::follow(state, revoke, None, None).await;
    tokio::time::sleep(crate::store::READ_CACHE_TTL).await;
    Ok(())
}

/// Disables the account with this e-mail and ends its sessions. Audited as `user.update`
/// (`success:cli`, or `refused:last-admin`).
pub async fn disable(state: &AppState, email: &str) -> Result<User, UserCliError> {
    let user = by_email(state, email).await?;
    let changes = UserChanges { disabled: Some(true), ..Default::default() };
    let target = Some(user.id.to_string());
    match state.store().update_user(user.id, changes, state.clock().now()).await {
        Ok(Some(updated)) => {
            end_sessions(state, user.id, "account-disabled").await?;
            state.store().append_audit(cli_event("user.update", target, "success:cli")).await?;
            Ok(updated)
        }
        Ok(None) => Err(UserCliError::NoSuchUser(user.email)),
        Err(StoreError::LastAdmin) => {
            state.store().append_audit(cli_event("user.update", target, "refused:last-admin")).await?;
            Err(UserCliError::Refused("this is the last enabled admin; add or enable another admin first".into()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Sets a new password (checked by the password policy) for the account with this e-mail and
/// ends its sessions. Audited as `user.update` (`success:cli-password-reset`).
pub async fn reset_password(state: &AppState, email: &str, new_password: &str) -> Result<User, UserCliError> {
    let user = by_email(state, email).await?;
    if let Some(why) = password::policy_violation(new_password, &user.email, state.config().auth.password_min_length) {
        return Err(UserCliError::Refused(format!("password: {why}")));
    }
    let changes = UserChanges { password_hash: Some(password::hash(new_password)), ..Default::default() };
    let updated = state
        .store()
        .update_user(user.id, changes, state.clock().now())
        .await?
        .ok_or_else(|| UserCliError::NoSuchUser(user.email.clone()))?;
    end_sessions(state, user.id, "password-changed").await?;
    state
        .store()
        .append_audit(cli_event("user.update", Some(user.id.to_string()), "success:cli-password-reset"))
        .await?;
    Ok(updated)
}

/// Removes the second factor of the account with this e-mail (a lost device) and ends its
/// sessions: the user logs in with the password alone and enrolls again. Audited as
/// `user.reset-mfa` (`success:cli`, or `success:cli-not-enrolled`). True if it had one.
pub async fn reset_mfa(state: &AppState, email: &str) -> Result<bool, UserCliError> {
    let user = by_email(state, email).await?;
    let removed = state.store().remove_mfa(user.id).await?;
    end_sessions(state, user.id, "mfa-reset").await?;
    let outcome = if removed { "success:cli" } else { "success:cli-not-enrolled" };
    state.store().append_audit(cli_event("user.reset-mfa", Some(user.id.to_string()), outcome)).await?;
    Ok(removed)
}
