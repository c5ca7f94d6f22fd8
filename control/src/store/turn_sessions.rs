//! TURN sessions as stored: what was issued to whom, and what was revoked, by whom and why.

use time::OffsetDateTime;
use uuid::Uuid;

/// Relay credentials the control plane issued: the session id (the opaque part of the REST
/// username), until when they are valid, and under which login and for which appointment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedTurnSession {
    pub id: String,
    pub expires_at: OffsetDateTime,
    pub user_id: Uuid,
    pub login_session: Uuid,
    pub appointment_id: Option<Uuid>,
    pub issued_at: OffsetDateTime,
}

/// Which issued sessions a revocation names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnSessionScope {
    /// One session; `unknown_until` is how long to keep it revoked if none was issued by that
    /// id (an id from elsewhere, or already purged).
    Session {
        id: String,
        unknown_until: OffsetDateTime,
    },
    User(Uuid),
    Login(Uuid),
    Appointment(Uuid),
}

/// A revocation to record: the sessions, who (`None`: the system) and why, as of `now`.
#[derive(Debug, Clone)]
pub struct TurnRevocation {
    pub scope: TurnSessionScope,
    pub by: Option<Uuid>,
    pub reason: String,
    pub now: OffsetDateTime,
}

/// A revoked session still in force: relays refuse it until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedTurnSession {
    pub id: String,
    pub expires_at: OffsetDateTime,
}
