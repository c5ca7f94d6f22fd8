//! Starting and stopping the relay: `run` is the sequence of start-up steps, each named; the
//! steps live in the submodules by what they set up.

mod link;
mod shared;
pub(crate) mod signals;
mod workers;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;

use crate::config::RelayConfig;
use crate::metrics;

use link::start_control_link;
use shared::Core;
pub use shared::server_config;
use signals::{Signals, serve_signals};
use workers::{Listeners, raise_open_file_limit, start_workers};

/// Runs until SIGTERM or SIGINT. `reread` reads the configuration again as at start (SIGHUP
/// applies its secrets).
pub fn run(config: RelayConfig, reread: &dyn Fn() -> anyhow::Result<RelayConfig>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let signals = Signals::install(&runtime).context("registering the signal handlers")?;
    announce_settings(&config);
    serve_metrics(&config)?;
    let open_file_limit = raise_open_file_limit();
    crate::net::memory::fix_malloc_thresholds();
    let core = Core::new(&config);
    let listeners = Listeners::new(&config)?;
    // Before the workers, which mirror their grants into its maps; dropped after they stopped
    // (the program leaves the interfaces then).
    let offload = start_offload(&config);
    let workers = start_workers(&config, &core, &listeners, open_file_limit, offload.as_ref())?;
    log_started(&config, &listeners);

    let link = start_control_link(&runtime, &config, &core, &workers.wakers)?;
    notify_ready_and_watch(&runtime, workers.heartbeats.clone());
    if config.prometheus.is_some() {
        runtime.spawn(async {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                metrics::collect_process();
            }
        });
    }
    let signal = runtime.block_on(serve_signals(signals, &core, listeners.served_certificate.as_deref(), reread))?;
    tracing::info!("{signal} received: closing allocations and stopping");
    link.stop(&runtime);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    workers.stop();
    drop(offload);
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

/// The XDP offload, when `xdp-offload` names interfaces: loaded and attached, loudly, or
/// refused with the reason and the relay continues in user space (never a failed start: the
/// offload only makes relaying cheaper, the sockets relay the same datagrams).
fn start_offload(config: &RelayConfig) -> Option<crate::xdp::Offload> {
    if config.xdp_offload.is_empty() {
        return None;
    }
    match crate::xdp::Offload::start(&config.xdp_offload, config.xdp_mode) {
        Ok(offload) => {
            let modes: Vec<String> =
                offload.attachments().iter().map(|(name, mode)| format!("{name} ({mode} mode)")).collect();
            tracing::warn!(
                "XDP OFFLOAD ON: ChannelData over UDP of admitted allocations is relayed inside the kernel on {}; \
                 user space still decides every grant and the program relays only what it wrote",
                modes.join(", ")
            );
            for warning in crate::xdp::forwarding_warnings(&config.xdp_offload) {
                tracing::warn!("{warning}");
            }
            for ip in config.listening_ips.iter().filter(|ip| ip.is_unspecified()) {
                tracing::warn!(
                    "listening-ip {ip} is a wildcard: its UDP clients are relayed in user space, not by XDP"
                );
            }
            Some(offload)
        }
        Err(e) => {
            tracing::error!("XDP offload refused, relaying in user space: {e}");
            None
        }
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
        metrics::describe_setup(config);
    }
    Ok(())
}

fn log_started(config: &RelayConfig, listeners: &Listeners) {
    let relaying =
        config
            .relay_addresses
            .iter()
            .map(|a| {
                if a.advertised == a.ip {
                    a.ip.to_string()
                } else {
                    format!("{} (advertised as {})", a.ip, a.advertised)
                }
            })
            .collect::<Vec<_>>()
            .join(" and ");
    tracing::info!(
        "teletip-relay {} listening on {} with {} workers; relaying on {relaying}, ports {}-{}; realm {:?}; {} secret(s); metrics {}",
        env!("CARGO_PKG_VERSION"),
        listeners.describe(),
        config.workers,
        config.min_port,
        config.max_port,
        config.realm,
        config.secrets.len(),
        config.prometheus.map_or("off".to_string(), |a| format!("http://{a}/metrics")),
    );
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
