//! The practitioner's presence as a waiting patient sees it: `practitioner:status {status}`
//! (docs/signaling.md). A waiting patient learns only the state of their own appointment's
//! practitioner, never who else waits or with whom the practitioner is.
//!
//! Nothing is stored for it: the practitioner's connections are in the room
//! `rooms::clinician(practitioner)` and, inside a consultation, in that consultation's
//! `practitioner` room, so the rooms of the sockets of `clinician` (one adapter request, on
//! every instance with Redis) say whether the practitioner is connected and which rooms they
//! are in; the room directory says whether a patient is admitted in one of them.

use serde::Serialize;
use serde_json::json;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use uuid::Uuid;

use super::directory::{Directory, DirectoryError, PeerState};
use super::rooms;
use crate::store::Role;

/// The event's name.
pub const EVENT: &str = "practitioner:status";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Presence {
    /// No signaling connection.
    Offline,
    /// Connected, not in a call.
    Online,
    /// In a call with a patient of another appointment.
    Busy,
    /// In this appointment's room: about to let the patient in.
    Here,
}

/// Where the practitioner's connections are, read from their sockets' rooms.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Whereabouts {
    pub connected: bool,
    /// The consultations the practitioner has joined.
    pub rooms: Vec<Uuid>,
}

impl Whereabouts {
    /// From the union of the rooms of the sockets in `clinician(practitioner)`.
    pub fn from_rooms<'a>(practitioner: Uuid, socket_rooms: impl IntoIterator<Item = &'a str>) -> Whereabouts {
        let mine = rooms::clinician(practitioner);
        let mut w = Whereabouts::default();
        for r in socket_rooms {
            if r == mine {
                w.connected = true;
            } else if let Some(a) = rooms::practitioner_of(r) {
                w.rooms.push(a);
            }
        }
        w.rooms.sort();
        w.rooms.dedup();
        w
    }

    /// The state a patient waiting in `appointment` is shown; `busy`: whether a patient is
    /// admitted in one of the practitioner's rooms.
    pub fn seen_from(&self, appointment: Uuid, busy: bool) -> Presence {
        if self.rooms.contains(&appointment) {
            Presence::Here
        } else if !self.connected && self.rooms.is_empty() {
            Presence::Offline
        } else if busy {
            Presence::Busy
        } else {
            Presence::Online
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    #[error("adapter: {0}")]
    Adapter(String),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

/// Where the practitioner is, and whether they are in a call (a connected, admitted patient in
/// one of their rooms).
pub async fn locate<A: Adapter>(
    io: &SocketIo<A>,
    directory: &Directory,
    practitioner: Uuid,
) -> Result<(Whereabouts, bool), PresenceError> {
    let ns = io.of("/rtc").expect("the /rtc namespace is registered at start");
    let found =
        ns.within(rooms::clinician(practitioner)).rooms().await.map_err(|e| PresenceError::Adapter(e.to_string()))?;
    let w = Whereabouts::from_rooms(practitioner, found.iter().map(|r| &**r));
    let mut busy = false;
    for a in &w.rooms {
        let in_call = directory
            .list(*a)
            .await?
            .iter()
            .any(|p| p.role == Role::Patient && p.state == PeerState::Admitted && p.disconnected_at_ms.is_none());
        busy |= in_call;
    }
    Ok((w, busy))
}

/// Tells every patient waiting for `practitioner` the state they see now: `here` to the lobbies
/// of the consultations the practitioner is in, the general state to the others.
pub async fn announce<A: Adapter>(io: &SocketIo<A>, directory: &Directory, practitioner: Uuid) {
    let (w, busy) = match locate(io, directory, practitioner).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "practitioner presence not announced");
            return;
        }
    };
    let ns = io.of("/rtc").expect("the /rtc namespace is registered at start");
    let general = w.seen_from(Uuid::nil(), busy);
    let here: Vec<String> = w.rooms.iter().map(|a| rooms::lobby(*a)).collect();
    let waiting = ns.clone().to(rooms::waiting_for(practitioner));
    let waiting = if here.is_empty() { waiting } else { waiting.except(here.clone()) };
    if let Err(e) = waiting.emit(EVENT, &json!({ "status": general })).await {
        tracing::warn!(error = %e, "practitioner presence not sent to every instance");
    }
    for lobby in here {
        let _ = ns.clone().to(lobby).emit(EVENT, &json!({ "status": Presence::Here })).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patient_sees_here_offline_busy_or_online() {
        let p = Uuid::new_v4();
        let (mine, other) = (Uuid::new_v4(), Uuid::new_v4());
        let clinician = rooms::clinician(p);
        let offline = Whereabouts::from_rooms(p, []);
        assert_eq!(offline.seen_from(mine, false), Presence::Offline);
        let online = Whereabouts::from_rooms(p, [clinician.as_str(), "rtc-user:x"]);
        assert_eq!(online.seen_from(mine, false), Presence::Online);
        let elsewhere_room = rooms::practitioner(other);
        let elsewhere = Whereabouts::from_rooms(p, [clinician.as_str(), elsewhere_room.as_str()]);
        assert_eq!(elsewhere.rooms, vec![other]);
        assert_eq!(elsewhere.seen_from(mine, false), Presence::Online);
        assert_eq!(elsewhere.seen_from(mine, true), Presence::Busy);
        // In my room, busy or not (another tab in a call), the patient hears "here".
        assert_eq!(elsewhere.seen_from(other, true), Presence::Here);
        // Another consultation's lobby room is not the practitioner's.
        let lobby = rooms::lobby(other);
        assert_eq!(Whereabouts::from_rooms(p, [clinician.as_str(), lobby.as_str()]).rooms, Vec::<Uuid>::new());
    }

    #[test]
    fn presence_names_on_the_wire() {
        let names: Vec<String> = [Presence::Offline, Presence::Online, Presence::Busy, Presence::Here]
            .iter()
            .map(|p| serde_json::to_value(p).unwrap().as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["offline", "online", "busy", "here"]);
    }
}
