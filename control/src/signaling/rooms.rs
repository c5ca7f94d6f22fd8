//! Socket.IO room names of one consultation. A socket joins `all` and its own `peer` room on
//! joining; `lobby` while waiting; `members` and its own `admitted` room once admitted (signals
//! are delivered to `admitted` rooms only, so they can never reach a waiting or foreign peer);
//! the practitioner also joins `practitioner`. A waiting patient is also in `waiting_for` the
//! appointment's practitioner, and every connection of a practitioner in their `clinician` room,
//! for the practitioner's presence (`presence`).
//!
//! Apart from consultations, every connection is in the room of its login session and the room
//! of its user, so that ending a session (or all of a user's) reaches its sockets on every
//! instance (`auth/ended.rs`).

use uuid::Uuid;

pub fn all(a: Uuid) -> String {
    format!("rtc:{a}")
}

/// Whether a room name is a consultation's `all` room (one per consultation with a participant).
pub fn is_consultation(room: &str) -> bool {
    room.strip_prefix("rtc:").is_some_and(|rest| Uuid::parse_str(rest).is_ok())
}

pub fn lobby(a: Uuid) -> String {
    format!("rtc:{a}:lobby")
}

pub fn members(a: Uuid) -> String {
    format!("rtc:{a}:members")
}

pub fn practitioner(a: Uuid) -> String {
    format!("rtc:{a}:practitioner")
}

/// The consultation whose `practitioner` room this is, if it is one.
pub fn practitioner_of(room: &str) -> Option<Uuid> {
    let rest = room.strip_prefix("rtc:")?.strip_suffix(":practitioner")?;
    Uuid::parse_str(rest).ok()
}

/// The patients waiting in the lobby of any appointment of one practitioner (record id).
pub fn waiting_for(practitioner: Uuid) -> String {
    format!("rtc-waiting-for:{practitioner}")
}

/// Every connection of one practitioner (record id), in a consultation or not.
pub fn clinician(practitioner: Uuid) -> String {
    format!("rtc-clinician:{practitioner}")
}

pub fn peer(a: Uuid, peer_id: &str) -> String {
    format!("rtc:{a}:peer:{peer_id}")
}

pub fn admitted(a: Uuid, peer_id: &str) -> String {
    format!("rtc:{a}:admitted:{peer_id}")
}

/// Every room a participant may be in, for leaving them all at once (`practitioner`: the
/// appointment's, whose `waiting_for` room a waiting patient is in).
pub fn of_participant(a: Uuid, practitioner: Uuid, peer_id: &str) -> Vec<String> {
    vec![
        all(a),
        lobby(a),
        members(a),
        self::practitioner(a),
        peer(a, peer_id),
        admitted(a, peer_id),
        waiting_for(practitioner),
    ]
}

/// Every connection of one login session.
pub fn session(session_id: Uuid) -> String {
    format!("rtc-session:{session_id}")
}

/// Every connection of one user.
pub fn user(user_id: Uuid) -> String {
    format!("rtc-user:{user_id}")
}
