//! The QUIC server relay nodes dial (mutual TLS, see `teletip_link::tls`): a node registers,
//! is sent the secrets and every revocation still in force, then reports its load every few
//! seconds and takes drain orders and new revocations until the connection ends.

use std::time::Duration;

use teletip_link::{ControlToRelay, FrameError, PushedSecret, RelayToControl, read_frame, write_frame};
use tokio::sync::mpsc;

use super::registry::now_ms;
use super::{on_the_link, revoke_frames};
use crate::state::AppState;

/// A node that has not registered this long after its handshake is dropped.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("its certificate names no node (a DNS name or common name of letters, digits, '.', '-', '_')")]
    NoIdentity,
    #[error("it did not register within {REGISTER_TIMEOUT:?}")]
    RegisterTimeout,
    #[error("protocol: {0}")]
    Protocol(&'static str),
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The revocations in force could not be read: the relay is let go to register again
    /// rather than left unaware of them.
    #[error("cannot read the revocations in force: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl SessionError {
    fn reason(&self) -> &'static str {
        match self {
            SessionError::NoIdentity => "identity",
            SessionError::RegisterTimeout => "register_timeout",
            SessionError::Protocol(_) | SessionError::Frame(_) => "protocol",
            SessionError::Connection(_) => "connection",
            SessionError::Store(_) => "store",
        }
    }
}

/// What every session sends a relay besides its orders.
#[derive(Clone)]
pub struct LinkSettings {
    pub report_every: Duration,
    /// The ICE secrets to push after registration (`push-secrets`), or none.
    pub secrets: Option<Vec<PushedSecret>>,
}

/// Accepts relay connections until the endpoint closes.
pub async fn serve(endpoint: quinn::Endpoint, state: AppState, settings: LinkSettings) {
    while let Some(incoming) = endpoint.accept().await {
        let state = state.clone();
        let settings = settings.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let connection = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    // Most often a certificate the relay CA did not sign.
                    tracing::warn!(%remote, "relay link: handshake refused: {e}");
                    metrics::counter!("teletip_relay_link_refused_total", "reason" => "handshake").increment(1);
                    return;
                }
            };
            let ended = session(&connection, &state, &settings).await;
            // A frame error on a closed connection only says "connection lost"; why it closed
            // (the relay stopping, or its idle timeout) says more.
            let ended = match (ended, connection.close_reason()) {
                (Err(SessionError::Frame(_)), Some(reason)) => Err(SessionError::Connection(reason)),
                (ended, _) => ended,
            };
            if let Err(e) = ended {
                use quinn::ConnectionError::{ApplicationClosed, LocallyClosed};
                let quiet = matches!(&e, SessionError::Connection(ApplicationClosed(_) | LocallyClosed));
                if quiet {
                    // The relay stopping, or this control plane.
                    tracing::info!(%remote, "relay link closed: {e}");
                } else {
                    tracing::warn!(%remote, "relay link ended: {e}");
                    metrics::counter!("teletip_relay_link_refused_total", "reason" => e.reason()).increment(1);
                }
                connection.close(1u32.into(), e.reason().as_bytes());
            }
        });
    }
}

async fn session(
    connection: &quinn::Connection,
    state: &AppState,
    settings: &LinkSettings,
) -> Result<(), SessionError> {
    let relays = state.relays();
    let node = teletip_link::tls::peer_node(connection).ok_or(SessionError::NoIdentity)?;
    let (registration, mut send, mut recv) = tokio::time::timeout(REGISTER_TIMEOUT, async {
        let (send, mut recv) = connection.accept_bi().await?;
        match read_frame::<_, RelayToControl>(&mut recv).await? {
            Some(RelayToControl::Register(r)) => Ok((r, send, recv)),
            Some(_) => Err(SessionError::Protocol("the first frame must be register")),
            None => Err(SessionError::Protocol("the stream ended before register")),
        }
    })
    .await
    .map_err(|_| SessionError::RegisterTimeout)??;
    if !plausible_host(&registration.host) {
        return Err(SessionError::Protocol("a registration's host must be a host name or an IP address"));
    }
    if (registration.udp_port, registration.tcp_port, registration.tls_port) == (None, None, None)
        || [registration.udp_port, registration.tcp_port, registration.tls_port].contains(&Some(0))
    {
        return Err(SessionError::Protocol("a registration needs at least one port, none of them 0"));
    }
    let (commands, mut outbox) = mpsc::unbounded_channel::<ControlToRelay>();
    let drain_requested = relays.drain_requested(&node).await;
    let (this, pending, snapshot) =
        relays.local().connect(&node, registration.clone(), commands, drain_requested, now_ms());
    relays.publish(Some(snapshot)).await;
    tracing::info!(
        node,
        remote = %connection.remote_address(),
        host = registration.host,
        region = ?registration.region,
        version = registration.version,
        draining = registration.draining,
        "relay registered"
    );
    let registered =
        ControlToRelay::Registered { node: node.clone(), report_every_ms: settings.report_every.as_millis() as u64 };
    write_frame(&mut send, &registered).await?;
    if let Some(secrets) = &settings.secrets {
        write_frame(&mut send, &ControlToRelay::Secrets { secrets: secrets.clone() }).await?;
    }
    for command in pending {
        write_frame(&mut send, &command).await?;
    }
    // Read after the node joined the registry: a revocation made meanwhile is in the outbox
    // too (sent twice, harmlessly), never in neither.
    let in_force = state.store().turn_revocations_in_force(state.clock().now()).await?;
    let in_force: Vec<_> = in_force.iter().map(on_the_link).collect();
    for frame in revoke_frames(&in_force) {
        write_frame(&mut send, &frame).await?;
    }
    if !in_force.is_empty() {
        tracing::info!(node, sessions = in_force.len(), "revocations in force sent to the relay");
    }
    // Writes on their own task: a read cut short by a select! would lose part of a frame.
    let writer = tokio::spawn(async move {
        while let Some(command) = outbox.recv().await {
            write_frame(&mut send, &command).await?;
        }
        Ok::<(), FrameError>(())
    });
    let ended = loop {
        match read_frame::<_, RelayToControl>(&mut recv).await {
            Ok(Some(RelayToControl::Load(load))) => {
                relays.publish(relays.local().report(&node, this, load, now_ms())).await;
                // A drain asked on another instance reaches the node here.
                if let Some(requested) = relays.drain_requested(&node).await {
                    relays.local().reconcile_drain(&node, this, requested);
                }
            }
            Ok(Some(RelayToControl::Register(_))) => break Err(SessionError::Protocol("register sent twice")),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e.into()),
        }
    };
    writer.abort();
    relays.publish(relays.local().disconnect(&node, this)).await;
    tracing::info!(node, "relay disconnected");
    ended
}

/// Whether `host` can go into a `turn:` URL as it is: a DNS name or an IP address (IPv6 without
/// brackets). Anything else (spaces, `?`, `@`, `/`) would let a relay shape the URLs clients get.
/// Public for the fuzzer (fuzz/fuzz_targets/link_message.rs).
pub fn plausible_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::plausible_host;

    #[test]
    fn registered_hosts_are_names_or_addresses_and_nothing_that_reshapes_a_url() {
        for ok in ["turn.hosp.example", "relay-1", "203.0.113.10", "2001:db8::10", "127.0.0.1"] {
            assert!(plausible_host(ok), "{ok}");
        }
        for bad in
            ["", "turn.hosp.example:443", "a b", "evil.example?transport=tcp", "x@y", "-a.example", "a..b", "[::1]"]
        {
            assert!(!plausible_host(bad), "{bad}");
        }
    }
}
