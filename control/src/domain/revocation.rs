//! Which TURN sessions an event revokes, why, and until when. A revoked session's relays end
//! its allocations and refuse its credentials; the revocation lasts as long as those credentials
//! would have (their expiry), after which they are refused anyway.

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::store::AppointmentStatus;

/// The TURN sessions one revocation names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One session, by the opaque part of its REST username.
    Session(String),
    /// Every session issued to a user (an admin's order, an erasure).
    User(Uuid),
    /// Every session issued under one login session (its logout).
    Login(Uuid),
    /// Every consultation session issued for an appointment (its end).
    Appointment(Uuid),
}

impl Scope {
    /// How the audit trail names it.
    pub fn audit_name(&self) -> String {
        match self {
            Scope::Session(id) => format!("turn-session:{id}"),
            Scope::User(id) => format!("user:{id}"),
            Scope::Login(id) => format!("login-session:{id}"),
            Scope::Appointment(id) => format!("appointment:{id}"),
        }
    }
}

/// Why sessions were revoked, as recorded with each revocation and in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// An admin's order.
    Admin,
    Logout,
    /// A spent refresh token was presented again: someone holds a copy of the login.
    RefreshTokenReuse,
    /// An admin disabled the account, changed its role or set its password (the login
    /// sessions' own reason: `account-disabled`, `role-changed`, `password-changed`).
    AccountChanged(&'static str),
    Erasure,
    /// The appointment reached this status: its consultation is over or never happens.
    AppointmentEnded(AppointmentStatus),
    /// The appointment moved to other times: credentials issued for the old times are spent.
    AppointmentRescheduled,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Admin => "admin",
            Reason::Logout => "logout",
            Reason::RefreshTokenReuse => "refresh-token-reuse",
            Reason::AccountChanged(why) => why,
            Reason::Erasure => "erasure",
            Reason::AppointmentEnded(AppointmentStatus::Fulfilled) => "appointment-fulfilled",
            Reason::AppointmentEnded(AppointmentStatus::Cancelled) => "appointment-cancelled",
            Reason::AppointmentEnded(AppointmentStatus::Noshow) => "appointment-noshow",
            Reason::AppointmentEnded(AppointmentStatus::EnteredInError) => "appointment-entered-in-error",
            Reason::AppointmentEnded(_) => "appointment-ended",
            Reason::AppointmentRescheduled => "appointment-rescheduled",
        }
    }
}

/// One revocation: the sessions it names and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoke {
    pub scope: Scope,
    pub reason: Reason,
}

/// An appointment that moved to `next`: fulfilled, cancelled, no-show and entered-in-error end
/// its consultation, so the relay credentials issued for it are revoked; other moves revoke
/// nothing.
pub fn on_appointment_status(appointment: Uuid, next: AppointmentStatus) -> Option<Revoke> {
    use AppointmentStatus::*;
    matches!(next, Fulfilled | Cancelled | Noshow | EnteredInError)
        .then(|| Revoke { scope: Scope::Appointment(appointment), reason: Reason::AppointmentEnded(next) })
}

/// A rescheduled appointment's consultation credentials were issued for its old times (and
/// live until the old join window closes): they are revoked, and joining at the new times
/// issues new ones.
pub fn on_reschedule(appointment: Uuid) -> Revoke {
    Revoke { scope: Scope::Appointment(appointment), reason: Reason::AppointmentRescheduled }
}

/// A logout revokes the sessions issued under that login.
pub fn on_logout(login_session: Uuid) -> Revoke {
    Revoke { scope: Scope::Login(login_session), reason: Reason::Logout }
}

/// A reused refresh token ends its login, and the sessions issued under it.
pub fn on_refresh_token_reuse(login_session: Uuid) -> Revoke {
    Revoke { scope: Scope::Login(login_session), reason: Reason::RefreshTokenReuse }
}

/// An account an admin disabled, gave another role or a new password loses its logins, and the
/// sessions issued to it.
pub fn on_account_change(user: Uuid, why: &'static str) -> Revoke {
    Revoke { scope: Scope::User(user), reason: Reason::AccountChanged(why) }
}

/// An erasure revokes every session issued to the erased account.
pub fn on_erasure(user: Uuid) -> Revoke {
    Revoke { scope: Scope::User(user), reason: Reason::Erasure }
}

/// Until when a session this control plane has no record of stays revoked: no credential it
/// issues outlives `ice.max-ttl`, so after that the id means nothing (an unknown id is
/// accepted, and expires harmlessly).
pub fn unknown_session_until(now: OffsetDateTime, max_ttl_seconds: u64) -> OffsetDateTime {
    now + Duration::seconds(max_ttl_seconds.min(i64::MAX as u64) as i64)
}

/// Whether a revocation (or an issued session) expiring at `expires` still matters at `now`.
pub fn in_force(expires: OffsetDateTime, now: OffsetDateTime) -> bool {
    expires > now
}

/// Why a session id is refused before anything is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedId {
    #[error("a TURN session id is the 16 URL-safe base64 characters after the ':' of the username")]
    Shape,
}

/// The session ids `ice.rs` issues: 12 random bytes in URL-safe base64 without padding (16
/// characters of `A-Z a-z 0-9 - _`).
pub fn check_session_id(id: &str) -> Result<(), MalformedId> {
    let ok = id.len() == 16 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err(MalformedId::Shape) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_statuses_that_end_a_consultation_revoke_its_sessions() {
        use AppointmentStatus::*;
        let id = Uuid::from_u128(7);
        for (next, reason) in [
            (Fulfilled, "appointment-fulfilled"),
            (Cancelled, "appointment-cancelled"),
            (Noshow, "appointment-noshow"),
            (EnteredInError, "appointment-entered-in-error"),
        ] {
            let r = on_appointment_status(id, next).unwrap();
            assert_eq!((r.scope, r.reason.as_str()), (Scope::Appointment(id), reason));
        }
        for next in [Proposed, Pending, Booked, Arrived, CheckedIn] {
            assert_eq!(on_appointment_status(id, next), None, "{next:?}");
        }
    }

    #[test]
    fn a_reschedule_revokes_the_appointments_sessions() {
        let id = Uuid::from_u128(8);
        let r = on_reschedule(id);
        assert_eq!((r.scope, r.reason.as_str()), (Scope::Appointment(id), "appointment-rescheduled"));
    }

    #[test]
    fn logout_and_erasure_name_their_sessions() {
        let id = Uuid::from_u128(9);
        assert_eq!(on_logout(id).scope, Scope::Login(id));
        assert_eq!(on_erasure(id), Revoke { scope: Scope::User(id), reason: Reason::Erasure });
        assert_eq!(Scope::Session("abc".into()).audit_name(), "turn-session:abc");
        assert_eq!(on_refresh_token_reuse(id).reason.as_str(), "refresh-token-reuse");
        assert_eq!(on_account_change(id, "account-disabled").reason.as_str(), "account-disabled");
    }

    #[test]
    fn an_unknown_session_stays_revoked_for_the_longest_credential_lifetime() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let until = unknown_session_until(now, 86_400);
        assert_eq!(until, now + Duration::days(1));
        assert!(in_force(until, now) && !in_force(now, now));
    }

    #[test]
    fn session_ids_are_what_ice_rs_issues() {
        assert_eq!(check_session_id("AAECAwQFBgcICQoL"), Ok(()));
        assert_eq!(check_session_id("-_-_-_-_abcdXYZ0"), Ok(()));
        for bad in
            ["", "short", "AAECAwQFBgcICQoL=", "AAECAwQFBgcICQo!", "AAECAwQFBgcICQoLAA", "1796000000:AAECAwQFBgcI"]
        {
            assert_eq!(check_session_id(bad), Err(MalformedId::Shape), "{bad}");
        }
    }
}
