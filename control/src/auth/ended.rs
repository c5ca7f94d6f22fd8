//! Ending sessions at once everywhere they are in use. A revoked session already fails every
//! REST request (each request checks the store, `extract.rs`); a Socket.IO connection, though,
//! was authenticated once at its handshake. When a session ends (logout, refresh-token reuse) or
//! all of a user's sessions end (disabled, role or password changed), the handler that ended it
//! announces it here, and the signaling layer disconnects that session's or user's sockets, on
//! every control instance when Redis is configured (`signaling::attach` installs the hook).
//! Each signaling event re-checks the store as well, so a lost announcement (Redis away) still
//! refuses the next event.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;

use uuid::Uuid;

/// Whose sessions ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// One login session.
    Session(Uuid),
    /// Every session of this user.
    User(Uuid),
}

type Hook = Box<dyn Fn(Ended, &'static str) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Where ended sessions are announced; without a hook (no signaling) announcing does nothing.
#[derive(Default)]
pub struct SessionsEnded {
    hook: OnceLock<Hook>,
}

impl SessionsEnded {
    /// Installs what an announcement does; the first hook stays.
    pub fn set_hook(&self, hook: Hook) {
        if self.hook.set(hook).is_err() {
            tracing::warn!("a second ended-session hook was ignored");
        }
    }

    /// Ends the connections of `ended` now; `reason` is what their clients are told.
    pub async fn announce(&self, ended: Ended, reason: &'static str) {
        if let Some(hook) = self.hook.get() {
            hook(ended, reason).await;
        }
    }
}
