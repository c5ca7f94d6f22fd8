//! Starting and stopping the relay: workers, metrics endpoint, signals.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rand::Rng;
use teletip_turn_proto::credentials::Secret;
use teletip_turn_proto::limits::SharedQuotas;
use teletip_turn_proto::nonce::NonceIssuer;
use teletip_turn_proto::policy::PeerPolicy;
use teletip_turn_proto::server::{Controls, ServerConfig};

use crate::config::RelayConfig;
use crate::metrics::{self, Publisher};
use crate::net::binder::{BinderSettings, Reservations};
use crate::net::socket::SocketTuning;
use crate::net::worker::WorkerSetup;
use crate::secret_sources::{Published, SecretSources};

/// The secrets as the state machine takes them.
fn proto_secrets(c: &RelayConfig) -> Vec<Secret> {
    c.secrets.iter().map(|s| Secret::new(s.key_id.clone(), s.value.as_bytes().to_vec())).collect()
}

/// The protocol settings the state machine gets from the daemon's configuration.
pub fn server_config(c: &RelayConfig) -> ServerConfig {
    // Shared with the alternates when configured, so that their redirected clients' nonces
    // hold there; otherwise random per start.
    let nonce_key: [u8; 32] = c.nonce_key.as_ref().map_or_else(|| rand::rng().random(), |k| k.key);
    let mut sc = ServerConfig::new(c.realm.clone(), nonce_key);
    sc.nonces = NonceIssuer::new(nonce_key, c.stale_nonce);
    sc.policy = PeerPolicy::new(c.effective_allowed_peers(), c.denied_peer_ip.clone());
    sc.max_lifetime = c.max_allocate_lifetime;
    sc.max_permissions_per_allocation = c.max_permissions;
    if c.strict_channel_numbers {
        sc.max_channel_number = teletip_turn_proto::codec::RFC8656_MAX_CHANNEL;
    }
    sc.max_bps = c.max_bps;
    sc.max_credential_lifetime = c.max_credential_lifetime;
    sc.unauth_rate = c.unauth_rate;
    sc.unauth_burst = c.unauth_burst;
    sc.same_relay_delivery = c.same_relay_delivery;
    sc.alternate_servers = c.alternate_servers.clone();
    sc.tls_alternate_servers = c.tls_alternate_servers.clone();
    sc
}

/// How clients reach this relay, as the control link registers it.
fn registration(config: &RelayConfig) -> teletip_link::Registration {
    teletip_link::Registration {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        region: config.region.clone(),
        host: config.public_host.clone(),
        udp_port: Some(config.listening_port),
        tcp_port: config.tcp.then_some(config.listening_port),
        tls_port: config.tls.as_ref().map(|_| config.tls_listening_port),
        capacity: config.total_quota,
        draining: false,
    }
}

/// The relayed-socket pool of each worker: as configured, but all pools together hold at most
/// half of the port range, so that EVEN-PORT requests and the other workers still find ports,
/// and at most a quarter of the open-file limit, so that allocations beyond the pools, the
/// metrics listener and its connections still get descriptors. Returns the pool opened at
/// start and the ceiling up to which released sockets are kept after a peak (that same cap;
/// 0 when the pool is turned off).
fn pool_per_worker(config: &RelayConfig, open_file_limit: u64) -> (usize, usize) {
    let span = usize::from(config.max_port - config.min_port) + 1;
    let by_ports = span / 2 / config.workers;
    let by_files = usize::try_from(open_file_limit / 4).unwrap_or(usize::MAX) / config.workers;
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

/// Lifts the soft open-file limit to the hard one and returns it: every allocation holds a
/// socket, and the pools hold more (systemd's LimitNOFILE sets the hard limit).
fn raise_open_file_limit() -> u64 {
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

/// SIGHUP: serves the certificate and key files as they are now, from the next TLS handshake
/// on; on an error, keeps the one served so far.
fn reload_certificate(served: Option<&crate::net::tls::ServedCertificate>) {
    let Some(served) = served else {
        tracing::warn!("SIGHUP: no TLS certificate to reload; configuration changes other than secrets need a restart");
        return;
    };
    let (cert, key) = served.files();
    match served.reload() {
        Ok(()) => tracing::info!(
            cert = %cert.display(),
            key = %key.display(),
            "SIGHUP: TLS certificate reloaded for new connections; configuration changes other than secrets need a restart"
        ),
        Err(e) => tracing::error!("SIGHUP: TLS certificate NOT reloaded, still serving the previous one: {e}"),
    }
}

/// SIGHUP: reads the configuration again (file, secret files) and publishes its secrets to every
/// worker, so that a rotation needs no restart (a restart ends every call). A configuration
/// that no longer validates changes nothing. Secrets pushed by the control plane stay.
fn reload_secrets(sources: &Mutex<SecretSources>, reread: &dyn Fn() -> anyhow::Result<RelayConfig>) {
    let config = match reread() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("SIGHUP: secrets NOT reloaded, still accepting the previous ones: {e:#}");
            return;
        }
    };
    let published = sources.lock().expect("secret sources lock").replace_files(proto_secrets(&config));
    log_secrets_published("SIGHUP: secrets reloaded", &published);
}

/// Logs what a change of the accepted secrets did: key ids, never values.
pub(crate) fn log_secrets_published(what: &str, published: &Published) {
    let rotation = &published.rotation;
    if rotation.added.is_empty() && rotation.removed.is_empty() && rotation.changed.is_empty() {
        tracing::info!(current = %rotation.current, "{what}, unchanged");
    } else {
        tracing::info!(
            current = %rotation.current,
            added = ?rotation.added,
            removed = ?rotation.removed,
            changed = ?rotation.changed,
            "{what}; allocations made under a removed secret keep running until their credential expires"
        );
    }
    if !published.conflicts.is_empty() {
        tracing::warn!(
            key_ids = ?published.conflicts,
            "the control plane pushes these key ids with other values than the secret files: the files' values are kept, so credentials the control plane issues under them are refused here"
        );
    }
}

/// SIGUSR1 (or the control plane) starts a drain, SIGUSR2 (or the control plane) ends it:
/// while draining, new Allocates are sent to an alternate server (300) or refused (508), and
/// the allocations in place carry on, so the operator can empty a relay before maintenance
/// without cutting a call. `by` names who asked, for the log.
pub(crate) fn set_draining(server: &ServerConfig, controls: &Controls, draining: bool, by: &str) {
    let was = controls.set_draining(draining);
    ::metrics::gauge!("teletip_draining").set(if draining { 1.0 } else { 0.0 });
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(if draining { "draining" } else { "relaying" })]);
    match (was, draining) {
        (false, true) => tracing::warn!(
            alternates = ?server.alternate_servers,
            tls_alternates = ?server.tls_alternate_servers,
            "{by}: draining: new allocations are sent to an alternate server (300) or refused (508); allocations in place carry on (SIGUSR2 ends the drain)"
        ),
        (true, false) => tracing::info!("{by}: drain ended: new allocations are accepted again"),
        (true, true) => tracing::info!("{by}: already draining"),
        (false, false) => tracing::info!("{by}: not draining"),
    }
}

/// Runs until SIGTERM or SIGINT. `reread` reads the configuration again as at start (SIGHUP
/// applies its secrets).
pub fn run(config: RelayConfig, reread: &dyn Fn() -> anyhow::Result<RelayConfig>) -> anyhow::Result<()> {
    announce_settings(&config);
    serve_metrics(&config)?;
    let open_file_limit = raise_open_file_limit();
    crate::net::memory::fix_malloc_thresholds();
    let core = Core::new(&config);
    let listeners = Listeners::new(&config)?;
    let workers = start_workers(&config, &core, &listeners, open_file_limit)?;
    log_started(&config, &listeners);

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let link = start_control_link(&runtime, &config, &core)?;
    notify_ready_and_watch(&runtime, workers.heartbeats.clone());
    let signal = runtime.block_on(serve_signals(&core, listeners.served_certificate.as_deref(), reread))?;
    tracing::info!("{signal} received: closing allocations and stopping");
    link.stop(&runtime);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    workers.stop();
    tracing::info!("stopped");
    Ok(())
}

/// Logs the settings that weaken the defaults or change how the workers behave.
fn announce_settings(config: &RelayConfig) {
    for warning in config.unsafe_settings() {
        tracing::warn!("UNSAFE SETTING: {warning}");
    }
    if config.busy_poll_us > 0 {
        tracing::info!(
            "busy-poll-us = {}: idle workers keep polling that long after their last datagram (a core spins)",
            config.busy_poll_us
        );
    }
    if let Some(warning) = crate::net::idle::slow_wake_up_warning(
        crate::net::idle::read_guest_halt_poll_ns().as_deref(),
        config.busy_poll_us,
    ) {
        tracing::warn!("{warning}");
    }
    if !config.same_relay_delivery {
        tracing::info!("same-relay-delivery = false: datagrams between allocations go through the kernel");
    }
}

/// The Prometheus endpoint, when configured.
fn serve_metrics(config: &RelayConfig) -> anyhow::Result<()> {
    if let Some(addr) = config.prometheus {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        metrics::describe();
    }
    Ok(())
}

/// What the workers share with each other and with the daemon's signal handlers and control
/// link.
struct Core {
    server: Arc<ServerConfig>,
    controls: Controls,
    quotas: Arc<SharedQuotas>,
    /// The files' secrets and, with a control link, the ones the control plane pushes.
    secret_sources: Arc<Mutex<SecretSources>>,
}

impl Core {
    fn new(config: &RelayConfig) -> Core {
        let controls = Controls::new(proto_secrets(config));
        Core {
            server: Arc::new(server_config(config)),
            secret_sources: Arc::new(Mutex::new(SecretSources::new(controls.secrets.clone(), proto_secrets(config)))),
            controls,
            quotas: Arc::new(SharedQuotas::new(config.user_quota, config.client_ip_quota, config.total_quota)),
        }
    }
}

/// The addresses the workers listen on, and the TLS certificate SIGHUP reloads.
struct Listeners {
    udp: Vec<SocketAddr>,
    /// TCP listeners, and TLS ones with their configuration.
    stream: Vec<(SocketAddr, Option<Arc<rustls::ServerConfig>>)>,
    served_certificate: Option<Arc<crate::net::tls::ServedCertificate>>,
}

impl Listeners {
    fn new(config: &RelayConfig) -> anyhow::Result<Listeners> {
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
    fn describe(&self) -> String {
        let mut listening = self.udp.iter().map(|a| format!("udp {a}")).collect::<Vec<_>>();
        listening
            .extend(self.stream.iter().map(|(a, tls)| format!("{} {a}", if tls.is_some() { "tls" } else { "tcp" })));
        listening.join(", ")
    }
}

/// The running worker threads.
struct Workers {
    stop: Arc<AtomicBool>,
    wakers: Vec<Arc<mio::Waker>>,
    heartbeats: Vec<Arc<std::sync::atomic::AtomicU64>>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Tells every worker to stop, wakes it, and waits for it.
    fn stop(self) {
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
fn start_workers(
    config: &RelayConfig,
    core: &Core,
    listeners: &Listeners,
    open_file_limit: u64,
) -> anyhow::Result<Workers> {
    let tuning =
        SocketTuning { buffer: config.udp_buffer, dscp: config.dscp, timestamps: config.max_queue_delay_ms > 0 };
    let (pool, pool_ceiling) = pool_per_worker(config, open_file_limit);
    let binder = BinderSettings {
        relay_ip: config.relay_ip,
        external_ip: config.external_ip,
        min_port: config.min_port,
        max_port: config.max_port,
        tuning,
        pool,
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
        setups.push(setup);
    }
    let wakers = setups.iter().map(|s| s.waker.clone()).collect();
    let heartbeats = setups.iter().map(|s| s.heartbeat.clone()).collect();
    let handles = setups.into_iter().map(|s| s.spawn()).collect::<Result<Vec<_>, _>>()?;
    Ok(Workers { stop, wakers, heartbeats, handles })
}

fn log_started(config: &RelayConfig, listeners: &Listeners) {
    let advertised = config.external_ip.unwrap_or(config.relay_ip);
    tracing::info!(
        "teletip-relay {} listening on {} with {} workers; relaying on {}:{}-{} (advertised as {advertised}); realm {:?}; {} secret(s); metrics {}",
        env!("CARGO_PKG_VERSION"),
        listeners.describe(),
        config.workers,
        config.relay_ip,
        config.min_port,
        config.max_port,
        config.realm,
        config.secrets.len(),
        config.prometheus.map_or("off".to_string(), |a| format!("http://{a}/metrics")),
    );
}

/// The control link's task, when one is configured.
struct LinkTask {
    task: Option<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl LinkTask {
    /// Closes the link, so that the control plane stops handing this relay out at once.
    fn stop(self, runtime: &tokio::runtime::Runtime) {
        if let Some(task) = self.task {
            let _ = self.stop.send(true);
            let _ = runtime.block_on(async { tokio::time::timeout(std::time::Duration::from_secs(2), task).await });
        }
    }
}

fn start_control_link(
    runtime: &tokio::runtime::Runtime,
    config: &RelayConfig,
    core: &Core,
) -> anyhow::Result<LinkTask> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let Some(link) = &config.control_link else {
        return Ok(LinkTask { task: None, stop });
    };
    let client = teletip_link::tls::client_config(&link.cert, &link.key, &link.ca)
        .context("control link: cannot build the TLS configuration")?;
    let context = crate::control_link::LinkContext {
        link: link.clone(),
        client,
        registration: registration(config),
        server: core.server.clone(),
        controls: core.controls.clone(),
        quotas: core.quotas.clone(),
        secrets: core.secret_sources.clone(),
    };
    tracing::info!(server = link.server, server_name = link.server_name, "control link: dialling the control plane");
    Ok(LinkTask { task: Some(runtime.spawn(crate::control_link::run(context, stopped))), stop })
}

/// systemd (Type=notify): ready once every worker listens; the watchdog is fed only while every
/// worker's loop keeps turning, so a wedged worker gets the relay restarted.
fn notify_ready_and_watch(runtime: &tokio::runtime::Runtime, heartbeats: Vec<Arc<std::sync::atomic::AtomicU64>>) {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("relaying")]);
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(interval / 2);
        loop {
            tick.tick().await;
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            let stalled =
                heartbeats.iter().any(|h| now.saturating_sub(h.load(Ordering::Relaxed)) > interval.as_millis() as u64);
            if stalled {
                tracing::error!(
                    "a worker stopped turning: withholding the watchdog ping so that systemd restarts the relay"
                );
            } else {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        }
    });
}

/// Serves SIGHUP, SIGUSR1 and SIGUSR2 until SIGTERM or SIGINT, and names the one that ended it.
async fn serve_signals(
    core: &Core,
    served_certificate: Option<&crate::net::tls::ServedCertificate>,
    reread: &dyn Fn() -> anyhow::Result<RelayConfig>,
) -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok("SIGTERM"),
            _ = int.recv() => return Ok("SIGINT"),
            // Without a handler SIGHUP would kill the relay and every call on it. It reloads
            // the secrets and the TLS certificate (rotations and renewals come every few
            // weeks; a restart would end the calls in progress); the rest of the
            // configuration needs a restart.
            _ = hup.recv() => {
                reload_secrets(&core.secret_sources, reread);
                reload_certificate(served_certificate);
            }
            _ = usr1.recv() => set_draining(&core.server, &core.controls, true, "SIGUSR1"),
            _ = usr2.recv() => set_draining(&core.server, &core.controls, false, "SIGUSR2"),
        }
    }
}
