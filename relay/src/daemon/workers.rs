//! The listeners and the worker threads: what each worker binds, its share of the limits, and
//! how they are stopped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::RelayConfig;
use crate::metrics::Publisher;
use crate::net::binder::{BinderSettings, Reservations};
use crate::net::socket::SocketTuning;
use crate::net::worker::WorkerSetup;

use super::shared::Core;

/// The addresses the workers listen on, and the TLS certificate SIGHUP reloads.
pub(super) struct Listeners {
    pub(super) udp: Vec<SocketAddr>,
    /// TCP listeners, and TLS ones with their configuration.
    pub(super) stream: Vec<(SocketAddr, Option<Arc<rustls::ServerConfig>>)>,
    pub(super) served_certificate: Option<Arc<crate::net::tls::ServedCertificate>>,
}

impl Listeners {
    pub(super) fn new(config: &RelayConfig) -> anyhow::Result<Listeners> {
        let udp: Vec<SocketAddr> =
            config.listening_ips.iter().map(|ip| SocketAddr::new(*ip, config.listening_port)).collect();
        let (tls, served_certificate) = match &config.tls {
            Some(files) => {
                let (tls, served) = crate::net::tls::server_config(&files.cert, &files.key)?;
                (Some(tls), Some(served))
            }
            None => (None, None),
        };
        let mut stream = Vec::new();
        if config.tcp {
            stream.extend(udp.iter().map(|a| (*a, None)));
        }
        if let Some(tls) = &tls {
            stream.extend(
                config
                    .listening_ips
                    .iter()
                    .map(|ip| (SocketAddr::new(*ip, config.tls_listening_port), Some(tls.clone()))),
            );
        }
        Ok(Listeners { udp, stream, served_certificate })
    }

    /// "udp a, tcp b, tls c", for the start-up line.
    pub(super) fn describe(&self) -> String {
        let mut listening = self.udp.iter().map(|a| format!("udp {a}")).collect::<Vec<_>>();
        listening
            .extend(self.stream.iter().map(|(a, tls)| format!("{} {a}", if tls.is_some() { "tls" } else { "tcp" })));
        listening.join(", ")
    }
}

/// The running worker threads.
pub(super) struct Workers {
    pub(super) stop: Arc<AtomicBool>,
    pub(super) wakers: Vec<Arc<mio::Waker>>,
    pub(super) heartbeats: Vec<Arc<std::sync::atomic::AtomicU64>>,
    pub(super) handles: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Tells every worker to stop, wakes it, and waits for it.
    pub(super) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in &self.wakers {
            let _ = w.wake();
        }
        for h in self.handles {
            let _ = h.join();
        }
    }
}

/// Binds every worker's listeners (a bind error stops the start here), then starts them.
pub(super) fn start_workers(
    config: &RelayConfig,
    core: &Core,
    listeners: &Listeners,
    open_file_limit: u64,
    offload: Option<&crate::xdp::Offload>,
) -> anyhow::Result<Workers> {
    let tuning =
        SocketTuning { buffer: config.udp_buffer, dscp: config.dscp, timestamps: config.max_queue_delay_ms > 0 };
    let (pool, pool_ceiling) = pool_per_worker(config, open_file_limit);
    let binder = BinderSettings {
        relay_addresses: config.relay_addresses.clone(),
        min_port: config.min_port,
        max_port: config.max_port,
        tuning,
        pool,
        pool_at_start: pool_at_start_per_worker(config, pool, pool_ceiling),
        pool_ceiling,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let reservations = Reservations::default();
    let mut setups = Vec::new();
    for index in 0..config.workers {
        let mut setup = WorkerSetup::new(
            index,
            &listeners.udp,
            tuning,
            core.server.clone(),
            core.controls.clone(),
            core.quotas.clone(),
            binder.clone(),
            reservations.clone(),
            stop.clone(),
            Publisher::new(core.controls.secrets.clone()),
        )?;
        setup.busy_poll = std::time::Duration::from_micros(u64::from(config.busy_poll_us));
        setup.max_queue_delay = std::time::Duration::from_millis(u64::from(config.max_queue_delay_ms));
        setup.overload_grace = std::time::Duration::from_millis(u64::from(config.overload_grace_ms));
        for (addr, tls) in &listeners.stream {
            setup.listen_stream(*addr, tls.clone())?;
        }
        setup.max_connections = config.max_tcp_connections.div_ceil(config.workers);
        // The kernel spreads one address's connections over the workers by their source port,
        // so each worker holds its share of the per-address limit.
        setup.max_connections_per_ip = match config.max_tcp_connections_per_ip {
            0 => usize::MAX,
            n => n.div_ceil(config.workers),
        };
        if let Some(offload) = offload {
            // Each worker hands out allocation slots from its own range: no lock between them.
            let per_worker = crate::xdp::maps::MAX_ALLOCS / config.workers as u32;
            let slots = index as u32 * per_worker..(index as u32 + 1) * per_worker;
            setup.offload = Some(crate::xdp::mirror::Mirror::new(offload.maps(), slots, config.dscp << 2));
        }
        setups.push(setup);
    }
    let wakers = setups.iter().map(|s| s.waker.clone()).collect();
    let heartbeats = setups.iter().map(|s| s.heartbeat.clone()).collect();
    let handles = setups.into_iter().map(|s| s.spawn()).collect::<Result<Vec<_>, _>>()?;
    Ok(Workers { stop, wakers, heartbeats, handles })
}

/// The relayed-socket pool of each worker and family: as configured, but all pools of a family
/// together hold at most half of the port range, so that EVEN-PORT requests and the other
/// workers still find ports, and all pools at most a quarter of the open-file limit, so that allocations beyond the pools, the
/// metrics listener and its connections still get descriptors. Returns the pool opened at
/// start and the ceiling up to which released sockets are kept after a peak (that same cap;
/// 0 when the pool is turned off).
fn pool_per_worker(config: &RelayConfig, open_file_limit: u64) -> (usize, usize) {
    let span = usize::from(config.max_port - config.min_port) + 1;
    let by_ports = span / 2 / config.workers;
    let families = config.relay_addresses.len().max(1);
    let by_files = usize::try_from(open_file_limit / 4).unwrap_or(usize::MAX) / config.workers / families;
    let cap = by_ports.min(by_files);
    if config.relay_socket_pool > cap {
        tracing::info!(
            configured = config.relay_socket_pool,
            pool = cap,
            "relay-socket-pool capped at half of the port range and a quarter of the open-file limit ({open_file_limit}), shared by {} workers",
            config.workers
        );
    }
    let pool = config.relay_socket_pool.min(cap);
    (pool, if pool == 0 { 0 } else { cap })
}

/// What each worker's pool of a family is filled to at start: its share of
/// `relay-socket-pool-at-start`, never below its pool nor above the ceiling the pool is capped
/// at (so the start-up pools obey the same port-range and open-file caps).
fn pool_at_start_per_worker(config: &RelayConfig, pool: usize, pool_ceiling: usize) -> usize {
    if pool == 0 {
        return 0;
    }
    config.relay_socket_pool_at_start.div_ceil(config.workers.max(1)).clamp(pool, pool_ceiling.max(pool))
}

/// Lifts the soft open-file limit to the hard one and returns it: every allocation holds a
/// socket, and the pools hold more (systemd's LimitNOFILE sets the hard limit).
pub(super) fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
            tracing::warn!("cannot raise the open-file limit: {}", std::io::Error::last_os_error());
        }
    }
    limit.rlim_cur
}
