//! Relay nodes: the QUIC server they dial (`link`), what is known of each (`registry`, shared
//! between instances through Redis by `shared`), and the admin routes that list them and drain
//! them (`routes`). ICE credentials hand out the relays found healthy, least loaded first;
//! without a link, or before any relay has registered, the static `ice.relays` list.
//! Revoked TURN sessions (`crate::revocation`) reach every relay from here: those connected to
//! this instance at once, the others through Redis (`shared`).

pub mod link;
pub mod registry;
pub mod routes;
pub mod shared;

use std::sync::OnceLock;
use std::time::Duration;

pub use registry::Registry;
use registry::{RegistryError, RelayNode, Snapshot};
use shared::SharedRegistry;
use teletip_link::{ControlToRelay, REVOKE_BATCH, RevokedSession};

use crate::config::RelayEntry;
use crate::store::RevokedTurnSession;

/// The relays as this instance sees them: its own connections, and with Redis everyone's.
pub struct Relays {
    local: Registry,
    shared: Option<SharedRegistry>,
    /// This instance's name on the revocations channel.
    instance: String,
    /// The subscription to other instances' revocations, kept while the process runs.
    following: OnceLock<redis::aio::ConnectionManager>,
}

/// `Revoke` frames naming `sessions`, at most [`REVOKE_BATCH`] each (the link's frame limit).
pub fn revoke_frames(sessions: &[RevokedSession]) -> Vec<ControlToRelay> {
    sessions.chunks(REVOKE_BATCH).map(|chunk| ControlToRelay::Revoke { sessions: chunk.to_vec() }).collect()
}

/// A stored revocation as the link carries it.
pub fn on_the_link(s: &RevokedTurnSession) -> RevokedSession {
    RevokedSession { id: s.id.clone(), expires: s.expires_at.unix_timestamp().max(0) as u64 }
}

impl Relays {
    pub fn new(stale_after: Duration, redis: Option<redis::Client>) -> Relays {
        Relays {
            local: Registry::new(stale_after),
            shared: redis.map(SharedRegistry::new),
            instance: uuid::Uuid::new_v4().to_string(),
            following: OnceLock::new(),
        }
    }

    /// Sends revoked sessions to every relay: those connected here now, the others through
    /// the instances they are connected to (with Redis).
    pub async fn revoke(&self, sessions: &[RevokedTurnSession]) {
        if sessions.is_empty() {
            return;
        }
        let sessions: Vec<RevokedSession> = sessions.iter().map(on_the_link).collect();
        let reached = self.local.broadcast(&revoke_frames(&sessions));
        metrics::counter!("teletip_turn_sessions_revoked_total").increment(sessions.len() as u64);
        tracing::info!(sessions = sessions.len(), relays_here = reached, "TURN sessions revoked");
        if let Some(shared) = &self.shared {
            if let Err(e) = shared.publish_revocations(&self.instance, &sessions).await {
                metrics::counter!("teletip_relay_registry_shared_unavailable_total").increment(1);
                tracing::warn!(
                    "relay registry: cannot publish revocations to Redis ({e}); relays connected to other \
                     instances get them when they next register"
                );
            }
        }
    }

    /// With Redis (`resp3_url`), sends the revocations other instances make to the relays
    /// connected here, from now on.
    pub async fn follow_revocations(&self, resp3_url: &str) -> redis::RedisResult<()> {
        let local = self.local.clone();
        let deliver = move |sessions: Vec<RevokedSession>| {
            let reached = local.broadcast(&revoke_frames(&sessions));
            tracing::info!(
                sessions = sessions.len(),
                relays_here = reached,
                "TURN sessions revoked on another instance"
            );
        };
        let conn = shared::follow_revocations(resp3_url, self.instance.clone(), deliver).await?;
        let _ = self.following.set(conn);
        Ok(())
    }

    /// The nodes connected to this instance.
    pub fn local(&self) -> &Registry {
        &self.local
    }

    /// Every node known: from Redis when shared (this instance's own if Redis does not answer,
    /// logged and counted), else this instance's.
    async fn snapshots(&self) -> Vec<Snapshot> {
        if let Some(shared) = &self.shared {
            match shared.snapshots().await {
                Ok(snapshots) => return snapshots,
                Err(e) => {
                    metrics::counter!("teletip_relay_registry_shared_unavailable_total").increment(1);
                    tracing::warn!("relay registry: Redis did not answer ({e}); using this instance's relays only");
                }
            }
        }
        self.local.snapshots()
    }

    pub async fn list(&self) -> Vec<RelayNode> {
        registry::list(&self.snapshots().await, registry::now_ms(), self.local.stale_after)
    }

    pub async fn ice_relays(&self) -> Vec<RelayEntry> {
        registry::ice_relays(&self.snapshots().await, registry::now_ms(), self.local.stale_after)
    }

    /// Publishes a node's snapshot for the other instances (no-op without Redis).
    pub async fn publish(&self, snapshot: Option<Snapshot>) {
        if let (Some(shared), Some(snapshot)) = (&self.shared, snapshot) {
            if let Err(e) = shared.publish(&snapshot).await {
                metrics::counter!("teletip_relay_registry_shared_unavailable_total").increment(1);
                tracing::warn!(node = snapshot.node, "relay registry: cannot publish to Redis: {e}");
            }
        }
    }

    /// Whether a drain of `node` is requested, as Redis knows it; `None` without Redis or when
    /// it does not answer.
    pub async fn drain_requested(&self, node: &str) -> Option<bool> {
        let shared = self.shared.as_ref()?;
        match shared.drain_requested(node).await {
            Ok(requested) => Some(requested),
            Err(e) => {
                metrics::counter!("teletip_relay_registry_shared_unavailable_total").increment(1);
                tracing::warn!(node, "relay registry: cannot read drain requests from Redis: {e}");
                None
            }
        }
    }

    /// Starts or ends the drain of `node`, known here or (with Redis) on any instance. Returns
    /// whether it was connected here and got the order at once; a node connected to another
    /// instance gets it at its next report there.
    pub async fn set_drain(&self, node: &str, draining: bool) -> Result<bool, SetDrainError> {
        let known_here = self.local.snapshots().iter().any(|s| s.node == node);
        if let Some(shared) = &self.shared {
            let known = known_here || shared.snapshots().await?.iter().any(|s| s.node == node);
            if !known {
                return Err(RegistryError::UnknownNode(node.to_owned()).into());
            }
            shared.set_drain(node, draining).await?;
        }
        match self.local.set_drain(node, draining) {
            Ok(delivered) => Ok(delivered),
            Err(_) if self.shared.is_some() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_travel_in_frames_of_at_most_revoke_batch_sessions() {
        let sessions: Vec<RevokedSession> = (0..2 * REVOKE_BATCH + 1)
            .map(|i| RevokedSession { id: format!("{i:016}"), expires: 1_796_000_000 })
            .collect();
        let frames = revoke_frames(&sessions);
        let sizes: Vec<usize> = frames
            .iter()
            .map(|f| match f {
                ControlToRelay::Revoke { sessions } => sessions.len(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sizes, [REVOKE_BATCH, REVOKE_BATCH, 1]);
        // The largest frame stays under the link's frame limit.
        assert!(serde_json::to_vec(&frames[0]).unwrap().len() < teletip_link::frame::MAX_FRAME);
        assert!(revoke_frames(&[]).is_empty());
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetDrainError {
    #[error(transparent)]
    Unknown(#[from] RegistryError),
    #[error("the shared relay registry (Redis) did not answer: {0}")]
    Shared(#[from] redis::RedisError),
}
