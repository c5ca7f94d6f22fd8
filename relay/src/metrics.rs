//! Prometheus metrics. Workers count in plain integers (the core's `Stats`) and publish the
//! differences once a second, so the packet path never touches the metrics registry. No label
//! carries a username or an address.

use metrics::{counter, describe_counter, describe_gauge, gauge};
use std::sync::Arc;
use teletip_turn_proto::policy::DenyClass;
use teletip_turn_proto::secrets::SecretRing;
use teletip_turn_proto::server::{AllocFailure, AuthFailure, DropReason, Family, Stats};

use crate::net::stream::CloseReason;

/// What the I/O shell counts itself (the core never sees sends).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShellStats {
    pub send_buffer_full: u64,
    pub send_errors: u64,
    pub recv_errors: u64,
    /// Datagrams dropped by overload control (late in a queue that stayed long).
    pub queue_delay_drops: u64,
    /// Relayed sockets open and waiting for an allocation (a gauge).
    pub relay_sockets_pooled: u64,
    /// Client connections over TCP and over TLS open now (gauges).
    pub tcp_open: u64,
    pub tls_open: u64,
    /// Client connections accepted over TCP and over TLS.
    pub tcp_accepted: u64,
    pub tls_accepted: u64,
    /// Connections closed at once because max-tcp-connections were open.
    pub stream_refused: u64,
    /// Connections closed at once because max-tcp-connections-per-ip were open from that address.
    pub stream_refused_per_ip: u64,
    /// Connections closed, indexed like `CloseReason::ALL`.
    pub stream_closed: [u64; CloseReason::ALL.len()],
    /// Messages to a stream client dropped because its connection was too far behind.
    pub stream_backlog_drops: u64,
    /// Messages from a stream client longer than the relay forwards, skipped.
    pub stream_too_large: u64,
    /// Allocations whose grants the XDP offload holds in the kernel's maps (a gauge).
    pub xdp_mirrored: u64,
    /// Map writes that failed and allocations left out for want of a slot.
    pub xdp_failures: u64,
    /// Datagrams the XDP program relayed (counted in the relayed totals too).
    pub xdp_relayed_packets: u64,
}

pub fn describe() {
    describe_gauge!("teletip_allocations_active", "Allocations currently open");
    describe_gauge!("teletip_draining", "1 while the relay drains (SIGUSR1): new allocations are turned away");
    gauge!("teletip_draining").set(0.0);
    describe_gauge!(
        "teletip_control_link_up",
        "1 while registered with the control plane over the control link (0 also when none is configured)"
    );
    gauge!("teletip_control_link_up").set(0.0);
    describe_gauge!(
        "teletip_revoked_sessions",
        "TURN sessions the control plane revoked whose credentials have not expired yet (refused until then)"
    );
    gauge!("teletip_revoked_sessions").set(0.0);
    describe_counter!("teletip_allocations_created_total", "Allocations granted");
    describe_counter!(
        "teletip_relayed_addresses_created_total",
        "Relayed addresses granted, by family (ipv4, ipv6): a dual allocation (ADDITIONAL-ADDRESS-FAMILY) counts one of each"
    );
    describe_counter!("teletip_allocations_failed_total", "Authenticated Allocate requests refused, by reason");
    describe_counter!(
        "teletip_allocations_ended_total",
        "Allocations ended, by how (expired, deleted by the client, connection_closed: its TCP/TLS connection closed, or revoked: the control plane revoked its session)"
    );
    describe_counter!(
        "teletip_auth_challenges_total",
        "Requests without credentials that drew a 401 challenge (counted before the unauthenticated rate limit)"
    );
    describe_counter!("teletip_auth_failures_total", "Requests whose credentials were refused, by reason");
    describe_counter!(
        "teletip_auth_success_total",
        "Credentials verified against a secret, by key id (later requests on an allocation reuse its key and are not counted)"
    );
    describe_counter!("teletip_permissions_created_total", "Permissions installed");
    describe_gauge!("teletip_permissions_active", "Permissions currently valid");
    describe_counter!("teletip_channels_bound_total", "Channels bound");
    describe_gauge!("teletip_channels_active", "Channel bindings currently valid");
    describe_gauge!(
        "teletip_relay_sockets_pooled",
        "Relayed sockets open and waiting for the next allocation (relay-socket-pool)"
    );
    describe_gauge!(
        "teletip_xdp_offloaded_allocations",
        "Allocations whose channels the XDP offload relays in the kernel (xdp-offload; 0 when off)"
    );
    describe_counter!(
        "teletip_xdp_mirror_failures_total",
        "Map writes of the XDP offload that failed, and allocations left to user space for want of a map slot"
    );
    describe_counter!(
        "teletip_xdp_relayed_packets_total",
        "Of teletip_relayed_packets_total, the datagrams the XDP offload relayed inside the kernel"
    );
    describe_counter!("teletip_relayed_packets_total", "Datagrams relayed, by direction");
    describe_counter!("teletip_relayed_bytes_total", "Application bytes relayed, by direction");
    describe_counter!("teletip_dropped_packets_total", "Datagrams dropped without an answer, by reason");
    describe_counter!(
        "teletip_peer_denied_total",
        "Peers refused by the peer policy (403 to CreatePermission/ChannelBind, or a dropped Send), by address class"
    );
    describe_counter!("teletip_stun_binding_total", "STUN Binding requests answered");
    describe_gauge!("teletip_stream_connections", "Client connections open, by transport (tcp or tls)");
    describe_counter!("teletip_stream_connections_accepted_total", "Client connections accepted, by transport");
    describe_counter!(
        "teletip_stream_connections_refused_total",
        "Client connections closed at once, by limit reached (max_tcp_connections, or max_tcp_connections_per_ip from that address)"
    );
    describe_counter!(
        "teletip_stream_connections_closed_total",
        "Client connections closed, by reason (peer_closed, error, framing, tls, unallocated_timeout, revoked: its allocation's session was revoked)"
    );
    // Gauges exist from the start, so that alert rules see 0 rather than no series.
    for name in [
        "teletip_allocations_active",
        "teletip_permissions_active",
        "teletip_channels_active",
        "teletip_relay_sockets_pooled",
        "teletip_xdp_offloaded_allocations",
    ] {
        gauge!(name).set(0.0);
    }
    for transport in ["tcp", "tls"] {
        gauge!("teletip_stream_connections", "transport" => transport).set(0.0);
    }
}

/// One worker's view of what it already published.
pub struct Publisher {
    last: Stats,
    last_shell: ShellStats,
    /// Names the success counters' slots, including key ids a rotation brought or removed.
    secrets: Arc<SecretRing>,
}

impl Publisher {
    pub fn new(secrets: Arc<SecretRing>) -> Self {
        Publisher { last: Stats::default(), last_shell: ShellStats::default(), secrets }
    }

    pub fn publish(&mut self, now: &Stats, shell: &ShellStats) {
        let last = &self.last;
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let gauge_delta = |name: &'static str, a: u64, b: u64| {
            if a != b {
                gauge!(name).increment(a as f64 - b as f64);
            }
        };
        counter!("teletip_allocations_created_total").increment(d(now.allocations_created, last.allocations_created));
        for family in Family::ALL {
            let i = family.index();
            counter!("teletip_relayed_addresses_created_total", "family" => family.label())
                .increment(d(now.relayed_created[i], last.relayed_created[i]));
        }
        counter!("teletip_allocations_ended_total", "how" => "expired")
            .increment(d(now.allocations_expired, last.allocations_expired));
        counter!("teletip_allocations_ended_total", "how" => "deleted")
            .increment(d(now.allocations_deleted, last.allocations_deleted));
        counter!("teletip_allocations_ended_total", "how" => "connection_closed")
            .increment(d(now.allocations_closed, last.allocations_closed));
        counter!("teletip_allocations_ended_total", "how" => "revoked")
            .increment(d(now.allocations_revoked, last.allocations_revoked));
        gauge_delta("teletip_allocations_active", now.allocations_active, last.allocations_active);
        gauge_delta("teletip_permissions_active", now.permissions_active, last.permissions_active);
        gauge_delta("teletip_channels_active", now.channels_active, last.channels_active);
        for r in AllocFailure::ALL {
            let i = *r as usize;
            counter!("teletip_allocations_failed_total", "reason" => r.label())
                .increment(d(now.alloc_failures[i], last.alloc_failures[i]));
        }
        for r in AuthFailure::ALL {
            let i = *r as usize;
            counter!("teletip_auth_failures_total", "reason" => r.label())
                .increment(d(now.auth_failures[i], last.auth_failures[i]));
        }
        let key_ids = &self.secrets.current().key_ids;
        for (slot, key_id) in key_ids.iter().enumerate() {
            let count = |s: &Stats| s.auth_by_secret.get(slot).copied().unwrap_or(0);
            counter!("teletip_auth_success_total", "key_id" => key_id.clone()).increment(d(count(now), count(last)));
        }
        counter!("teletip_auth_challenges_total").increment(d(now.challenges, last.challenges));
        counter!("teletip_stun_binding_total").increment(d(now.bindings, last.bindings));
        counter!("teletip_permissions_created_total").increment(d(now.permissions_created, last.permissions_created));
        counter!("teletip_channels_bound_total").increment(d(now.channels_bound, last.channels_bound));
        for (dir, n, l) in [
            ("client_to_peer", now.client_to_peer, last.client_to_peer),
            ("peer_to_client", now.peer_to_client, last.peer_to_client),
        ] {
            counter!("teletip_relayed_packets_total", "direction" => dir).increment(d(n.packets, l.packets));
            counter!("teletip_relayed_bytes_total", "direction" => dir).increment(d(n.bytes, l.bytes));
        }
        for r in DropReason::ALL {
            let i = *r as usize;
            counter!("teletip_dropped_packets_total", "reason" => r.label()).increment(d(now.drops[i], last.drops[i]));
        }
        for c in DenyClass::ALL {
            let i = c.index();
            counter!("teletip_peer_denied_total", "class" => c.label())
                .increment(d(now.peer_denied[i], last.peer_denied[i]));
        }
        let ls = &self.last_shell;
        gauge_delta("teletip_relay_sockets_pooled", shell.relay_sockets_pooled, ls.relay_sockets_pooled);
        gauge_delta("teletip_xdp_offloaded_allocations", shell.xdp_mirrored, ls.xdp_mirrored);
        counter!("teletip_xdp_mirror_failures_total").increment(d(shell.xdp_failures, ls.xdp_failures));
        counter!("teletip_xdp_relayed_packets_total").increment(d(shell.xdp_relayed_packets, ls.xdp_relayed_packets));
        counter!("teletip_dropped_packets_total", "reason" => "send_buffer_full")
            .increment(d(shell.send_buffer_full, ls.send_buffer_full));
        counter!("teletip_dropped_packets_total", "reason" => "send_error")
            .increment(d(shell.send_errors, ls.send_errors));
        counter!("teletip_dropped_packets_total", "reason" => "recv_error")
            .increment(d(shell.recv_errors, ls.recv_errors));
        counter!("teletip_dropped_packets_total", "reason" => "queue_delay")
            .increment(d(shell.queue_delay_drops, ls.queue_delay_drops));
        counter!("teletip_dropped_packets_total", "reason" => "stream_backlog")
            .increment(d(shell.stream_backlog_drops, ls.stream_backlog_drops));
        counter!("teletip_dropped_packets_total", "reason" => "too_large")
            .increment(d(shell.stream_too_large, ls.stream_too_large));
        for (transport, open, last_open, accepted, last_accepted) in [
            ("tcp", shell.tcp_open, ls.tcp_open, shell.tcp_accepted, ls.tcp_accepted),
            ("tls", shell.tls_open, ls.tls_open, shell.tls_accepted, ls.tls_accepted),
        ] {
            if open != last_open {
                gauge!("teletip_stream_connections", "transport" => transport)
                    .increment(open as f64 - last_open as f64);
            }
            counter!("teletip_stream_connections_accepted_total", "transport" => transport)
                .increment(d(accepted, last_accepted));
        }
        counter!("teletip_stream_connections_refused_total", "limit" => "max_tcp_connections")
            .increment(d(shell.stream_refused, ls.stream_refused));
        counter!("teletip_stream_connections_refused_total", "limit" => "max_tcp_connections_per_ip")
            .increment(d(shell.stream_refused_per_ip, ls.stream_refused_per_ip));
        for (i, reason) in CloseReason::ALL.iter().enumerate() {
            counter!("teletip_stream_connections_closed_total", "reason" => reason.label())
                .increment(d(shell.stream_closed[i], ls.stream_closed[i]));
        }
        self.last = now.clone();
        self.last_shell = shell.clone();
    }
}

/// What does not change while the relay runs, and what it is measured against: build info,
/// the allocation quota and the size of the relay port range (for the "near the quota" and
/// "near the end of the port range" alerts), and when the certificates it presents expire.
pub fn describe_setup(config: &crate::config::RelayConfig) {
    describe_gauge!("teletip_build_info", "Always 1; the version of the running binary is the label");
    gauge!("teletip_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    describe_gauge!("teletip_allocations_quota", "total-quota: allocations the relay grants at most (0: no limit)");
    gauge!("teletip_allocations_quota").set(f64::from(config.total_quota));
    describe_gauge!("teletip_relay_ports", "Ports in the relay port range (min-port to max-port)");
    let (min, max) = (config.min_port, config.max_port);
    gauge!("teletip_relay_ports").set(f64::from(max.saturating_sub(min)) + 1.0);
    describe_gauge!(
        "teletip_tls_certificate_expiry_timestamp_seconds",
        "When a certificate the relay presents expires (Unix seconds), by certificate (turn_tls, control_link)"
    );
    if let Some(tls) = &config.tls {
        certificate_expiry("turn_tls", &tls.cert);
    }
    if let Some(link) = &config.control_link {
        certificate_expiry("control_link", &link.cert);
    }
    process_collector().describe();
    process_collector().collect();
}

/// Exports when the certificate in `path` expires (again after SIGHUP reloads it).
pub fn certificate_expiry(name: &'static str, path: &std::path::Path) {
    match teletip_link::tls::certificate_expiry(path) {
        Ok(at) => gauge!("teletip_tls_certificate_expiry_timestamp_seconds", "certificate" => name).set(at as f64),
        Err(e) => tracing::warn!(certificate = name, "cannot read the expiry of {}: {e}", path.display()),
    }
}

fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: std::sync::OnceLock<metrics_process::Collector> = std::sync::OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Process CPU, memory, file descriptors and threads, read from /proc; the exporter serves
/// what was last set, so this runs on a timer (every second, like the workers' counters).
pub fn collect_process() {
    process_collector().collect();
}
