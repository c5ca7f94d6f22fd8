//! What the server keeps about one signaling connection: who it is (from the handshake token),
//! from where, until when its token is good, and the room it joined. Kept in the socket's
//! extensions; the timers task reads it to send `auth:expired`, `session:expiring` and
//! `room:ended {window-closed}` on time.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::auth::extract::Caller;
use crate::store::Role;

#[derive(Debug, Clone)]
pub struct Joined {
    pub appointment: Uuid,
    /// The appointment's practitioner (record id), whose presence a waiting patient is shown.
    pub practitioner: Uuid,
    pub peer_id: String,
    pub role: Role,
    pub closes_at: OffsetDateTime,
    /// Whether `session:expiring` was sent for this window.
    pub warned: bool,
}

#[derive(Debug)]
pub struct ConnState {
    /// Who: replaced by `auth:renew` with a token of another session of the same user.
    caller: Mutex<Caller>,
    pub ip: IpAddr,
    token_expires: Mutex<OffsetDateTime>,
    joined: Mutex<Option<Joined>>,
    /// For a practitioner's connection, their practitioner record (set once connected).
    clinician: Mutex<Option<Uuid>>,
    /// Wakes the timers task when a deadline changes.
    pub changed: Notify,
}

/// The handle stored in the socket's extensions (they need `Clone`).
#[derive(Debug, Clone)]
pub struct Conn(pub Arc<ConnState>);

impl Conn {
    pub fn new(caller: Caller, ip: IpAddr, token_expires: OffsetDateTime) -> Conn {
        Conn(Arc::new(ConnState {
            caller: Mutex::new(caller),
            ip,
            token_expires: Mutex::new(token_expires),
            joined: Mutex::new(None),
            clinician: Mutex::new(None),
            changed: Notify::new(),
        }))
    }

    pub fn caller(&self) -> Caller {
        *self.0.caller.lock().expect("conn lock")
    }

    pub fn token_expires(&self) -> OffsetDateTime {
        *self.0.token_expires.lock().expect("conn lock")
    }

    /// A fresh token (of the same user) now carries the connection; returns the caller before.
    pub fn renew(&self, caller: Caller, expires: OffsetDateTime) -> Caller {
        let before = std::mem::replace(&mut *self.0.caller.lock().expect("conn lock"), caller);
        *self.0.token_expires.lock().expect("conn lock") = expires;
        self.0.changed.notify_one();
        before
    }

    pub fn joined(&self) -> Option<Joined> {
        self.0.joined.lock().expect("conn lock").clone()
    }

    pub fn set_joined(&self, joined: Option<Joined>) {
        *self.0.joined.lock().expect("conn lock") = joined;
        self.0.changed.notify_one();
    }

    pub fn clinician(&self) -> Option<Uuid> {
        *self.0.clinician.lock().expect("conn lock")
    }

    pub fn set_clinician(&self, practitioner: Uuid) {
        *self.0.clinician.lock().expect("conn lock") = Some(practitioner);
    }

    pub fn mark_warned(&self) {
        if let Some(j) = self.0.joined.lock().expect("conn lock").as_mut() {
            j.warned = true;
        }
    }
}
