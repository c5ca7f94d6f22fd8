//! What the control plane knows of every relay node: where clients reach it, its load, whether
//! it drains, and how to tell the ones connected here something.
//!
//! Each instance holds the connections of the relays that dialled it. What is known of every
//! node is a [`Snapshot`]; without Redis the snapshots are this instance's, with `redis-url`
//! every instance publishes its nodes' snapshots there ([`super::shared`]) and reads everyone's,
//! so that any instance names any healthy relay and drains any relay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
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

/// What is known of one node at its last report: the unit instances share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub node: String,
    pub registration: Registration,
    pub load: Load,
    pub drain_requested: bool,
    pub connected: bool,
    /// Wall clock (Unix milliseconds): instances compare it with their own clock.
    pub last_report_ms: i64,
}

impl Snapshot {
    fn healthy(&self, now_ms: i64, stale_after: Duration) -> bool {
        self.connected && now_ms - self.last_report_ms <= stale_after.as_millis() as i64
    }

    /// Share of its capacity in use; a node without a limit counts its allocations against a
    /// nominal 10,000 so that it still sorts by load.
    fn load_fraction(&self) -> f64 {
        let capacity = if self.registration.capacity == 0 { 10_000 } else { self.registration.capacity };
        f64::from(self.load.allocations) / f64::from(capacity)
    }

    fn view(&self, now_ms: i64, stale_after: Duration) -> RelayNode {
        let r = &self.registration;
        RelayNode {
            node: self.node.clone(),
            version: r.version.clone(),
            region: r.region.clone(),
            host: r.host.clone(),
            udp_port: r.udp_port,
            tcp_port: r.tcp_port,
            tls_port: r.tls_port,
            allocations: self.load.allocations,
            capacity: r.capacity,
            draining: self.load.draining,
            drain_requested: self.drain_requested,
            healthy: self.healthy(now_ms, stale_after),
            connected: self.connected,
            last_report_at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.last_report_ms) * 1_000_000)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        }
    }
}

/// Every node, by name, as the admin API lists them.
pub fn list(snapshots: &[Snapshot], now_ms: i64, stale_after: Duration) -> Vec<RelayNode> {
    let mut list: Vec<RelayNode> = snapshots.iter().map(|s| s.view(now_ms, stale_after)).collect();
    list.sort_by(|a, b| a.node.cmp(&b.node));
    list
}

/// The relays to hand out, best first: healthy, not draining, not full, least loaded. Empty
/// when none qualifies (the caller falls back to the static list).
pub fn ice_relays(snapshots: &[Snapshot], now_ms: i64, stale_after: Duration) -> Vec<RelayEntry> {
    let mut usable: Vec<&Snapshot> = snapshots
        .iter()
        .filter(|s| s.healthy(now_ms, stale_after) && !s.load.draining && !s.drain_requested)
        .filter(|s| s.registration.capacity == 0 || s.load.allocations < s.registration.capacity)
        .collect();
    usable.sort_by(|a, b| a.load_fraction().total_cmp(&b.load_fraction()));
    usable
        .into_iter()
        .map(|s| RelayEntry {
            host: s.registration.host.clone(),
            ipv6_host: s.registration.ipv6_host,
            udp_port: s.registration.udp_port,
            tcp_port: s.registration.tcp_port,
            tls_port: s.registration.tls_port,
            stun: true,
            region: s.registration.region.clone(),
        })
        .collect()
}

/// The clock snapshots are stamped and judged with.
pub fn now_ms() -> i64 {
    (crate::clock::now().unix_timestamp_nanos() / 1_000_000) as i64
}

struct Node {
    snapshot: Snapshot,
    /// Which connection is current: a reconnecting node's old connection may end after its new
    /// one registered, and must not mark the node gone.
    connection: u64,
    commands: Option<mpsc::UnboundedSender<ControlToRelay>>,
}

/// A registered connection; hand it back on every report and at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection(u64);

/// The nodes that dialled this instance.
#[derive(Clone)]
pub struct Registry {
    nodes: Arc<Mutex<HashMap<String, Node>>>,
    next_connection: Arc<std::sync::atomic::AtomicU64>,
    /// A node that has not reported for this long is left out of ICE answers.
    pub stale_after: Duration,
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
    /// away), and its snapshot to publish. `drain_requested` is what is known of that beyond
    /// this instance (Redis), if anything.
    pub fn connect(
        &self,
        node: &str,
        registration: Registration,
        commands: mpsc::UnboundedSender<ControlToRelay>,
        drain_requested: Option<bool>,
        now_ms: i64,
    ) -> (Connection, Vec<ControlToRelay>, Snapshot) {
        let connection = self.next_connection.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut nodes = self.nodes.lock().expect("registry lock");
        let drain_requested =
            drain_requested.unwrap_or_else(|| nodes.get(node).is_some_and(|n| n.snapshot.drain_requested));
        let pending = if drain_requested && !registration.draining {
            vec![ControlToRelay::Drain { draining: true }]
        } else {
            Vec::new()
        };
        let load = Load { allocations: 0, draining: registration.draining };
        let snapshot = Snapshot {
            node: node.to_owned(),
            registration,
            load,
            drain_requested,
            connected: true,
            last_report_ms: now_ms,
        };
        nodes.insert(node.to_owned(), Node { snapshot: snapshot.clone(), connection, commands: Some(commands) });
        metrics::gauge!("teletip_relays_connected").set(nodes.values().filter(|n| n.commands.is_some()).count() as f64);
        (Connection(connection), pending, snapshot)
    }

    /// Records a load report; returns the node's snapshot to publish (none if the connection
    /// is no longer the node's current one).
    pub fn report(&self, node: &str, connection: Connection, load: Load, now_ms: i64) -> Option<Snapshot> {
        let mut nodes = self.nodes.lock().expect("registry lock");
        let n = nodes.get_mut(node).filter(|n| n.connection == connection.0)?;
        n.snapshot.load = load;
        n.snapshot.last_report_ms = now_ms;
        Some(n.snapshot.clone())
    }

    /// The connection ended. The node stays listed (as not connected) so that an admin sees it
    /// and its requested drain survives. Returns the snapshot to publish.
    pub fn disconnect(&self, node: &str, connection: Connection) -> Option<Snapshot> {
        let mut nodes = self.nodes.lock().expect("registry lock");
        let n = nodes.get_mut(node).filter(|n| n.connection == connection.0)?;
        n.commands = None;
        n.snapshot.connected = false;
        let snapshot = n.snapshot.clone();
        metrics::gauge!("teletip_relays_connected").set(nodes.values().filter(|n| n.commands.is_some()).count() as f64);
        Some(snapshot)
    }

    /// Asks a node connected here to start or end a drain, now if it is connected, and records
    /// it for its reconnection. Returns whether it was connected here, or an error for a node
    /// this instance has never seen.
    pub fn set_drain(&self, node: &str, draining: bool) -> Result<bool, RegistryError> {
        let mut nodes = self.nodes.lock().expect("registry lock");
        let n = nodes.get_mut(node).ok_or_else(|| RegistryError::UnknownNode(node.to_owned()))?;
        n.snapshot.drain_requested = draining;
        Ok(n.commands.as_ref().is_some_and(|c| c.send(ControlToRelay::Drain { draining }).is_ok()))
    }

    /// Applies a drain request made on another instance to a node connected here, if it
    /// differs from what this instance last asked of it. Returns whether it changed.
    pub fn reconcile_drain(&self, node: &str, connection: Connection, draining: bool) -> bool {
        let mut nodes = self.nodes.lock().expect("registry lock");
        let Some(n) = nodes.get_mut(node).filter(|n| n.connection == connection.0) else { return false };
        if n.snapshot.drain_requested == draining {
            return false;
        }
        n.snapshot.drain_requested = draining;
        if let Some(commands) = &n.commands {
            let _ = commands.send(ControlToRelay::Drain { draining });
        }
        true
    }

    /// Sends `frames` to every node connected here; returns how many nodes took them.
    pub fn broadcast(&self, frames: &[ControlToRelay]) -> usize {
        let nodes = self.nodes.lock().expect("registry lock");
        nodes
            .values()
            .filter_map(|n| n.commands.as_ref())
            .filter(|commands| frames.iter().all(|f| commands.send(f.clone()).is_ok()))
            .count()
    }

    /// This instance's nodes.
    pub fn snapshots(&self) -> Vec<Snapshot> {
        self.nodes.lock().expect("registry lock").values().map(|n| n.snapshot.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALE: Duration = Duration::from_secs(15);

    fn registration(host: &str, capacity: u32) -> Registration {
        Registration {
            version: "0.1.0".into(),
            region: None,
            host: host.into(),
            ipv6_host: None,
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
        let registry = Registry::new(STALE);
        let t0 = 1_000_000;
        let mut channels = Vec::new();
        let mut connect = |node: &str, capacity: u32| {
            let (tx, rx) = mpsc::unbounded_channel();
            channels.push(rx);
            registry.connect(node, registration(&format!("{node}.example"), capacity), tx, None, t0).0
        };
        let (a, b, c, d) = (connect("a", 100), connect("b", 100), connect("c", 10), connect("d", 100));
        registry.report("a", a, Load { allocations: 50, draining: false }, t0);
        registry.report("b", b, Load { allocations: 10, draining: false }, t0);
        registry.report("c", c, Load { allocations: 10, draining: false }, t0); // full
        registry.report("d", d, Load { allocations: 0, draining: true }, t0);
        assert_eq!(hosts(ice_relays(&registry.snapshots(), t0, STALE)), ["b.example", "a.example"]);

        // b stops reporting: after stale-after it is left out.
        let later = t0 + 16_000;
        registry.report("a", a, Load { allocations: 50, draining: false }, later);
        let snapshots = registry.snapshots();
        assert_eq!(hosts(ice_relays(&snapshots, later, STALE)), ["a.example"]);
        let listed = list(&snapshots, later, STALE);
        assert_eq!(
            listed.iter().map(|n| (n.node.as_str(), n.healthy)).collect::<Vec<_>>(),
            [("a", true), ("b", false), ("c", false), ("d", false)]
        );
    }

    #[test]
    fn a_requested_drain_is_sent_now_and_again_on_reconnection_and_an_old_connection_cannot_unregister() {
        let registry = Registry::new(STALE);
        let now = 1_000_000;
        assert_eq!(registry.set_drain("x", true), Err(RegistryError::UnknownNode("x".into())));

        let (tx, mut rx) = mpsc::unbounded_channel();
        let (first, pending, _) = registry.connect("x", registration("x.example", 0), tx, None, now);
        assert!(pending.is_empty());
        assert_eq!(registry.set_drain("x", true), Ok(true));
        assert_eq!(rx.try_recv().unwrap(), ControlToRelay::Drain { draining: true });
        assert!(ice_relays(&registry.snapshots(), now, STALE).is_empty(), "asked to drain: not handed out");

        // It reconnects (a restart: not draining any more); the drain is asked again at once.
        let (tx2, _rx2) = mpsc::unbounded_channel();
        let (second, pending, _) = registry.connect("x", registration("x.example", 0), tx2, None, now);
        assert_eq!(pending, [ControlToRelay::Drain { draining: true }]);
        assert!(registry.disconnect("x", first).is_none(), "the old connection's end changes nothing");
        assert!(registry.snapshots()[0].connected);
        assert!(!registry.disconnect("x", second).unwrap().connected);
        assert_eq!(registry.set_drain("x", false), Ok(false), "recorded, sent when it reconnects");
    }

    #[test]
    fn a_broadcast_reaches_every_connected_node_and_no_disconnected_one() {
        let registry = Registry::new(STALE);
        let (tx_a, mut rx_a) = mpsc::unbounded_channel();
        let (tx_b, mut rx_b) = mpsc::unbounded_channel();
        registry.connect("a", registration("a.example", 0), tx_a, None, 0);
        let (b, _, _) = registry.connect("b", registration("b.example", 0), tx_b, None, 0);
        registry.disconnect("b", b);
        let frame = ControlToRelay::Drain { draining: true };
        assert_eq!(registry.broadcast(std::slice::from_ref(&frame)), 1);
        assert_eq!(rx_a.try_recv().unwrap(), frame);
        assert!(rx_b.try_recv().is_err());
    }

    #[test]
    fn a_drain_requested_on_another_instance_reaches_the_node_once() {
        let registry = Registry::new(STALE);
        let (tx, mut rx) = mpsc::unbounded_channel();
        // Redis says an admin asked for a drain before this connection: it is the first order.
        let (c, pending, _) = registry.connect("x", registration("x.example", 0), tx, Some(true), 0);
        assert_eq!(pending, [ControlToRelay::Drain { draining: true }]);
        assert!(!registry.reconcile_drain("x", c, true), "already asked");
        assert!(registry.reconcile_drain("x", c, false));
        assert_eq!(rx.try_recv().unwrap(), ControlToRelay::Drain { draining: false });
        assert!(rx.try_recv().is_err());
    }
}
