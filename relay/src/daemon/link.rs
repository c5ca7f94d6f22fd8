//! The control link's task on the daemon's runtime, when one is configured.

use anyhow::Context;

use crate::config::RelayConfig;

use super::shared::Core;

/// How clients reach this relay, as the control link registers it.
pub(super) fn registration(config: &RelayConfig) -> teletip_link::Registration {
    teletip_link::Registration {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        region: config.region.clone(),
        host: config.public_host.clone(),
        ipv6_host: config.ipv6_host(),
        udp_port: Some(config.listening_port),
        tcp_port: config.tcp.then_some(config.listening_port),
        tls_port: config.tls.as_ref().map(|_| config.tls_listening_port),
        capacity: config.total_quota,
        draining: false,
    }
}

/// The control link's task, when one is configured.
pub(super) struct LinkTask {
    pub(super) task: Option<tokio::task::JoinHandle<()>>,
    pub(super) stop: tokio::sync::watch::Sender<bool>,
}

impl LinkTask {
    /// Closes the link, so that the control plane stops handing this relay out at once.
    pub(super) fn stop(self, runtime: &tokio::runtime::Runtime) {
        if let Some(task) = self.task {
            let _ = self.stop.send(true);
            let _ = runtime.block_on(async { tokio::time::timeout(std::time::Duration::from_secs(2), task).await });
        }
    }
}

pub(super) fn start_control_link(
    runtime: &tokio::runtime::Runtime,
    config: &RelayConfig,
    core: &Core,
    workers: &[std::sync::Arc<mio::Waker>],
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
        workers: workers.to_vec(),
    };
    tracing::info!(server = link.server, server_name = link.server_name, "control link: dialling the control plane");
    Ok(LinkTask { task: Some(runtime.spawn(crate::control_link::run(context, stopped))), stop })
}
