//! Relay nodes: the QUIC server they dial (`link`), what is known of each (`registry`, shared
//! between instances through Redis by `shared`), and the admin routes that list them and drain
//! them (`routes`). ICE credentials hand out the relays found healthy, least loaded first;
//! without a link, or before any relay has registered, the static `ice.relays` list.

pub mod link;
pub mod registry;
pub mod routes;
pub mod shared;

use std::time::Duration;

pub use registry::Registry;
use registry::{RegistryError, RelayNode, Snapshot};
use shared::SharedRegistry;

use crate::config::RelayEntry;

/// The relays as this instance sees them: its own connections, and with Redis everyone's.
pub struct Relays {
    local: Registry,
    shared: Option<SharedRegistry>,
}

impl Relays {
    pub fn new(stale_after: Duration, redis: Option<redis::Client>) -> Relays {
        Relays { local: Registry::new(stale_after), shared: redis.map(SharedRegistry::new) }
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

#[derive(Debug, thiserror::Error)]
pub enum SetDrainError {
    #[error(transparent)]
    Unknown(#[from] RegistryError),
    #[error("the shared relay registry (Redis) did not answer: {0}")]
    Shared(#[from] redis::RedisError),
}
