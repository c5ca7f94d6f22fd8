//! What the relay does on a signal (and on the control plane's orders, which do the same):
//! SIGHUP reloads secrets and the TLS certificate, SIGUSR1 and SIGUSR2 start and end a drain,
//! SIGTERM and SIGINT stop it.

use std::sync::Mutex;

use teletip_turn_proto::server::{Controls, ServerConfig};

use crate::config::RelayConfig;
use crate::secret_sources::{Published, SecretSources};

use super::shared::{Core, proto_secrets};

/// The signals the relay serves, registered first thing in `run`: before the metrics endpoint,
/// the sockets or READY=1 can tell anyone that the relay is up. The default action of SIGHUP,
/// SIGUSR1 and SIGUSR2 is to end the process, so a reload or drain sent the moment the relay
/// looks up (systemd's `reload`, an operator's script, the tests) must find the handlers in place,
/// however long the start-up steps in between take (opening the start-up socket pool takes tens
/// of milliseconds, more on a loaded host).
pub(super) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    /// Registers the handlers at once (tokio installs the process-wide handler on this call).
    pub(super) fn install(runtime: &tokio::runtime::Runtime) -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let _context = runtime.enter();
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }
}

/// Serves SIGHUP, SIGUSR1 and SIGUSR2 until SIGTERM or SIGINT, and names the one that ended it.
pub(super) async fn serve_signals(
    signals: Signals,
    core: &Core,
    served_certificate: Option<&crate::net::tls::ServedCertificate>,
    reread: &dyn Fn() -> anyhow::Result<RelayConfig>,
) -> anyhow::Result<&'static str> {
    let Signals { mut term, mut int, mut hup, mut usr1, mut usr2 } = signals;
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

/// SIGHUP: serves the certificate and key files as they are now, from the next TLS handshake
/// on; on an error, keeps the one served so far.
fn reload_certificate(served: Option<&crate::net::tls::ServedCertificate>) {
    let Some(served) = served else {
        tracing::warn!("SIGHUP: no TLS certificate to reload; configuration changes other than secrets need a restart");
        return;
    };
    let (cert, key) = served.files();
    match served.reload() {
        Ok(()) => {
            crate::metrics::certificate_expiry("turn_tls", cert);
            tracing::info!(
            cert = %cert.display(),
            key = %key.display(),
            "SIGHUP: TLS certificate reloaded for new connections; configuration changes other than secrets need a restart"
            )
        }
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
