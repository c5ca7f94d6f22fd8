//! What the control plane knows of every relay node that has dialled in since it started:
//! where clients reach it, its load, whether it drains, and how to tell it something.
//!
//! Kept in memory: a relay re-registers within seconds of a control plane restart, and with
//! several control instances each one knows the relays connected to it (docs/control-config.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use teletip_link::{ControlToRelay, Load, Registration};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::config::RelayEntry;

/// One node as the admin API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RelayNode {
    /// The node's name, from its client certificate.
    pub node: String,
    pub version: String,
    pub region: Option<String>,
    pub host: String,
    pub udp_port: Option<u16>,
    pub tcp_port: Option<u16>,
    pub tls_port: Option<u16>,
    /// Allocations in place, as last reported.
    pub allocations: u32,
    /// Its total-quota (0: no limit).
    pub capacity: u32,
    /// Whether it reports draining.
    pub draining: bool,
    /// Whether an admin asked it to drain (kept across its reconnections).
    pub drain_requested: bool,
    /// Connected, and reporting on time.
    pub healthy: bool,
    pub connected: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_report_at: OffsetDateTime,
}

struct Node {
    registration: Registration,
    load: Load,
    drain_requested: bool,
    /// Which connection is current: a reconnecting node's old connection may end after its new
    /// one registered, and must not mark the node gone.
    connection: u64,
    commands: Option<mpsc::UnboundedSender<ControlToRelay>>,
    last_report: Instant,
    last_report_at: OffsetDateTime,
}

impl Node {
    fn healthy(&self, now: Instant, stale_after: Duration) -> bool {
        self.commands.is_some() && now.duration_since(self.last_report) <= stale_after
    }

    /// Share of its capacity in use; a node without a limit counts its allocations against a
    /// nominal 10,000 so that it still sorts by load.
    fn load_fraction(&self) -> f64 {
        let capacity = if self.registration.capacity == 0 { 10_000 } else { self.registration.capacity };
        f64::from(self.load.allocations) / f64::from(capacity)
    }
}

/// A registered connection; hand it back on every report and at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection(u64);

#[derive(Clone)]
pub struct Registry {
    nodes: Arc<Mutex<HashMap<String, Node>>>,
    next_connection: Arc<std::sync::atomic::AtomicU64>,
    /// A node that has not reported for this long is left out of ICE answers.
    stale_after: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("no relay node {0:?} has registered")]
    UnknownNode(String),
}

impl Registry {
    pub fn new(stale_after: Duration) -> Registry {
        Registry { nodes: Arc::default(), next_connection: Arc::default(), stale_after }
    }

    /// A node (re)connected: records it, replacing any earlier connection of the same node,
    /// and returns the commands to send it first (a drain an admin asked for while it was
    /// away).
    pub fn connect(
        &self,
        node: &str,
        registration: Registration,
        commands: mpsc::UnboundedSender<ControlToRelay>,
        now: Instant,
    ) -> (Connection, Vec<ControlToRelay>) {
        let connection = self.next_connection.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut nodes = self.nodes.lock().expect("registry lock");
        let drain_requested = nodes.get(node).is_some_and(|n| n.drain_requested);
        let load = Load { allocations: 0, draining: registration.draining };
        let pending = if drain_requested && !registration.draining {
            vec![ControlToRelay::Drain { draining: true }]
        } else {
            Vec::new()
        };
        nodes.insert(
            node.to_owned(),
            Node {
                registration,
                load,
                drain_requested,
                connection,
                commands: Some(commands),
                last_report: now,
                last_report_at: crate::clock::now(),
            },
        );
        metrics::gauge!("teletip_relays_connected").set(nodes.values().filter(|n| n.commands.is_some()).count() as f64);
        (Connection(connection), pending)
    }

    pub fn report(&self, node: &str, connection: Connection, load: Load, now: Instant) {
        let mut nodes = self.nodes.lock().expect("registry lock");
        if let Some(n) = nodes.get_mut(node).filter(|n| n.connection == connection.0) {
            n.load = load;
            n.last_report = now;
            n.last_report_at = crate::clock::now();
        }
    }

    /// The connection ended. The node stays listed (as not connected) so that an admin sees it
    /// and its requested drain survives.
    pub fn disconnect(&self, node: &str, connection: Connection) {
        let mut nodes = self.nodes.lock().expect("registry lock");
        if let Some(n) = nodes.get_mut(node).filter(|n| n.connection == connection.0) {
            n.commands = None;
        }
        metrics::gauge!("teletip_relays_connected").set(nodes.values().filter(|n| n.commands.is_some()).count() as f64);
    }

    /// Asks a node to start or end a drain, now if it is connected, else when it reconnects.
    /// Returns whether it was connected.
    pub fn set_drain(&self, node: &str, draining: bool) -> Result<bool, RegistryError> {
        let mut nodes = self.nodes.lock().expect("registry lock");
        let n = nodes.get_mut(node).ok_or_else(|| RegistryError::UnknownNode(node.to_owned()))?;
        n.drain_requested = draining;
        let sent = n.commands.as_ref().is_some_and(|c| c.send(ControlToRelay::Drain { draining }).is_ok());
        Ok(sent)
    }

    pub fn list(&self, now: Instant) -> Vec<RelayNode> {
        let nodes = self.nodes.lock().expect("registry lock");
        let mut list: Vec<RelayNode> = nodes
            .iter()
            .map(|(name, n)| RelayNode {
                node: name.clone(),
                version: n.registration.version.clone(),
                region: n.registration.region.clone(),
                host: n.registration.host.clone(),
                udp_port: n.registration.udp_port,
                tcp_port: n.registration.tcp_port,
                tls_port: n.registration.tls_port,
                allocations: n.load.allocations,
                capacity: n.registration.capacity,
                draining: n.load.draining,
                drain_requested: n.drain_requested,
                healthy: n.healthy(now, self.stale_after),
                connected: n.commands.is_some(),
                last_report_at: n.last_report_at,
            })
            .collect();
        list.sort_by(|a, b| a.node.cmp(&b.node));
        list
    }

    /// The relays to hand out, best first: healthy, not draining, not full, least loaded.
    /// Empty when none qualifies (the caller falls back to the static list).
    pub fn ice_relays(&self, now: Instant) -> Vec<RelayEntry> {
        let nodes = self.nodes.lock().expect("registry lock");
        let mut usable: Vec<&Node> = nodes
            .values()
            .filter(|n| n.healthy(now, self.stale_after) && !n.load.draining && !n.drain_requested)
            .filter(|n| n.registration.capacity == 0 || n.load.allocations < n.registration.capacity)
            .collect();
        usable.sort_by(|a, b| a.load_fraction().total_cmp(&b.load_fraction()));
        usable
            .into_iter()
            .map(|n| RelayEntry {
                host: n.registration.host.clone(),
                udp_port: n.registration.udp_port,
                tcp_port: n.registration.tcp_port,
                tls_port: n.registration.tls_port,
                stun: true,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(host: &str, capacity: u32) -> Registration {
        Registration {
            version: "0.1.0".into(),
            region: None,
            host: host.into(),
            udp_port: Some(3478),
            tcp_port: Some(3478),
            tls_port: None,
            capacity,
            draining: false,
        }
    }

    fn hosts(entries: Vec<RelayEntry>) -> Vec<String> {
        entries.into_iter().map(|e| e.host).collect()
    }

    #[test]
    fn least_loaded_healthy_relays_come_first_and_full_or_draining_ones_not_at_all() {
        let registry = Registry::new(Duration::from_secs(15));
        let t0 = Instant::now();
        let mut channels = Vec::new();
        let mut connect = |node: &str, capacity: u32| {
            let (tx, rx) = mpsc::unbounded_channel();
            channels.push(rx);
            registry.connect(node, registration(&format!("{node}.example"), capacity), tx, t0).0
        };
        let (a, b, c, d) = (connect("a", 100), connect("b", 100), connect("c", 10), connect("d", 100));
        registry.report("a", a, Load { allocations: 50, draining: false }, t0);
        registry.report("b", b, Load { allocations: 10, draining: false }, t0);
        registry.report("c", c, Load { allocations: 10, draining: false }, t0); // full
        registry.report("d", d, Load { allocations: 0, draining: true }, t0);
        assert_eq!(hosts(registry.ice_relays(t0)), ["b.example", "a.example"]);

        // b stops reporting: after stale-after it is left out.
        let later = t0 + Duration::from_secs(16);
        registry.report("a", a, Load { allocations: 50, draining: false }, later);
        assert_eq!(hosts(registry.ice_relays(later)), ["a.example"]);
        let listed = registry.list(later);
        assert_eq!(
            listed.iter().map(|n| (n.node.as_str(), n.healthy)).collect::<Vec<_>>(),
            [("a", true), ("b", false), ("c", false), ("d", false)]
        );
    }

    #[test]
    fn a_requested_drain_is_sent_now_and_again_on_reconnection_and_an_old_connection_cannot_unregister() {
        let registry = Registry::new(Duration::from_secs(15));
        let now = Instant::now();
        assert_eq!(registry.set_drain("x", true), Err(RegistryError::UnknownNode("x".into())));

        let (tx, mut rx) = mpsc::unbounded_channel();
        let (first, pending) = registry.connect("x", registration("x.example", 0), tx, now);
        assert!(pending.is_empty());
        assert_eq!(registry.set_drain("x", true), Ok(true));
        assert_eq!(rx.try_recv().unwrap(), ControlToRelay::Drain { draining: true });
        assert!(registry.ice_relays(now).is_empty(), "asked to drain: not handed out even before it reports");

        // It reconnects (a restart: not draining any more); the drain is asked again at once.
        let (tx2, _rx2) = mpsc::unbounded_channel();
        let (second, pending) = registry.connect("x", registration("x.example", 0), tx2, now);
        assert_eq!(pending, [ControlToRelay::Drain { draining: true }]);
        registry.disconnect("x", first);
        assert!(registry.list(now)[0].connected, "the old connection's end leaves the new one in place");
        registry.disconnect("x", second);
        assert!(!registry.list(now)[0].connected);
        assert_eq!(registry.set_drain("x", false), Ok(false), "recorded, sent when it reconnects");
    }
}
