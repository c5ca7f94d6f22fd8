//! The relay's end of the control link: dial the control plane (QUIC, mutual TLS), register,
//! report the load every few seconds and at once after a change, and apply drain orders,
//! pushed secrets and revocations.
//!
//! The link is a convenience, never a dependency: while it is down the relay keeps relaying
//! with the secrets and the revocations it has, and it redials with a capped backoff.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use teletip_link::{
    ControlToRelay, FrameError, Load, PushedSecret, Registration, RelayToControl, RevokedSession, read_frame,
    write_frame,
};
use teletip_turn_proto::limits::SharedQuotas;
use teletip_turn_proto::server::{Controls, ServerConfig};
use tokio::sync::{mpsc, watch};

use crate::config::ControlLink;
use crate::secret_sources::SecretSources;

/// The control plane must answer a registration within this long.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// Redial backoff bounds: fast after a blip, at most this slow while the control plane is away.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, std::io::Error),
    #[error("cannot open a UDP socket: {0}")]
    Socket(std::io::Error),
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("{0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("the control plane did not answer the registration within {REGISTER_TIMEOUT:?}")]
    RegisterTimeout,
    #[error("protocol: {0}")]
    Protocol(&'static str),
}

/// What the relay needs to report and to obey.
pub struct LinkContext {
    pub link: ControlLink,
    pub client: quinn::ClientConfig,
    /// The registration, `draining` filled in at each connection.
    pub registration: Registration,
    pub server: Arc<ServerConfig>,
    /// The drain flag the control plane sets and clears.
    pub controls: Controls,
    pub quotas: Arc<SharedQuotas>,
    /// Where pushed secrets go (besides the secret files').
    pub secrets: Arc<Mutex<SecretSources>>,
    /// Wake each worker, so that it applies a revocation now rather than at its next datagram
    /// or its poll timeout.
    pub workers: Vec<Arc<mio::Waker>>,
}

/// Keeps the link up until `stop` turns true, then closes it so that the control plane stops
/// handing this relay out at once rather than after its stale-after.
pub async fn run(context: LinkContext, mut stop: watch::Receiver<bool>) {
    let mut backoff = FIRST_RETRY;
    loop {
        let started = Instant::now();
        let outcome = tokio::select! {
            outcome = session(&context) => outcome,
            _ = stop.wait_for(|stopping| *stopping) => return,
        };
        ::metrics::gauge!("teletip_control_link_up").set(0.0);
        match outcome {
            Ok(()) => tracing::warn!("control link closed by the control plane; relaying carries on, redialling"),
            Err(e) => tracing::warn!(
                server = context.link.server,
                "control link down: {e}; relaying carries on with the secrets it has, redialling in {backoff:?}"
            ),
        }
        if started.elapsed() > LAST_RETRY {
            backoff = FIRST_RETRY;
        }
        // Jitter, so that relays cut off together do not redial together.
        let wait = backoff + Duration::from_millis(rand::rng().random_range(0..=backoff.as_millis() as u64 / 4));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|stopping| *stopping) => return,
        }
        backoff = (backoff * 2).min(LAST_RETRY);
    }
}

fn load(context: &LinkContext) -> RelayToControl {
    RelayToControl::Load(Load { allocations: context.quotas.active(), draining: context.controls.draining() })
}

/// Connects to the first address of `control-server` that answers: a name with several
/// addresses (several control plane instances) still gets the relay registered when one of
/// them is down.
async fn connect(context: &LinkContext) -> Result<(quinn::Endpoint, quinn::Connection, SocketAddr), LinkError> {
    let link = &context.link;
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host(&link.server).await.map_err(|e| LinkError::Resolve(link.server.clone(), e))?.collect();
    let mut last = LinkError::Resolve(link.server.clone(), std::io::ErrorKind::NotFound.into());
    for addr in addrs {
        let any: IpAddr = if addr.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
        let endpoint = quinn::Endpoint::client(SocketAddr::new(any, 0)).map_err(LinkError::Socket)?;
        // An address that does not answer costs the link's idle timeout (teletip_link::tls::
        // IDLE_TIMEOUT, 3 s) before the next.
        let attempt = match endpoint.connect_with(context.client.clone(), addr, &link.server_name) {
            Ok(connecting) => connecting.await.map_err(LinkError::from),
            Err(e) => Err(e.into()),
        };
        match attempt {
            Ok(connection) => return Ok((endpoint, connection, addr)),
            Err(e) => {
                tracing::debug!(%addr, "control link: {e}");
                last = e;
            }
        }
    }
    Err(last)
}

async fn session(context: &LinkContext) -> Result<(), LinkError> {
    let (endpoint, connection, addr) = connect(context).await?;
    let result = registered_session(context, &connection, addr).await;
    // Down from now on, not after the bounded wait for the close below: a control plane that
    // died is reported within the link's idle timeout.
    ::metrics::gauge!("teletip_control_link_up").set(0.0);
    // A frame error on a closed connection only says "connection lost": the reason the
    // connection closed (the control plane refused this node's certificate, or is stopping)
    // tells the operator more.
    let result = match (result, connection.close_reason()) {
        (Err(LinkError::Frame(_)), Some(reason)) => Err(LinkError::Connection(reason)),
        (result, _) => result,
    };
    connection.close(0u32.into(), b"relay leaving");
    // Lets the close reach the control plane (bounded: it may be gone).
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    result
}

async fn registered_session(
    context: &LinkContext,
    connection: &quinn::Connection,
    addr: SocketAddr,
) -> Result<(), LinkError> {
    let (mut send, mut recv) = connection.open_bi().await?;
    let mut registration = context.registration.clone();
    registration.draining = context.controls.draining();
    write_frame(&mut send, &RelayToControl::Register(registration)).await?;
    let answer = tokio::time::timeout(REGISTER_TIMEOUT, read_frame::<_, ControlToRelay>(&mut recv))
        .await
        .map_err(|_| LinkError::RegisterTimeout)??;
    let Some(ControlToRelay::Registered { node, report_every_ms }) = answer else {
        return Err(LinkError::Protocol("the control plane's first frame must be registered"));
    };
    let report_every = Duration::from_millis(report_every_ms).max(Duration::from_secs(1));
    tracing::info!(node, control = %addr, "registered with the control plane; reporting load every {report_every:?}");
    ::metrics::gauge!("teletip_control_link_up").set(1.0);

    // Orders are read on their own task: a read cut short by the select! below would lose
    // part of a frame. It pings `changed` so that the new state is reported at once.
    let (changed, mut changes) = mpsc::unbounded_channel::<()>();
    let (server, controls) = (context.server.clone(), context.controls.clone());
    let secrets = context.secrets.clone();
    let workers = context.workers.clone();
    let mut orders = tokio::spawn(async move {
        loop {
            match read_frame::<_, ControlToRelay>(&mut recv).await? {
                Some(ControlToRelay::Drain { draining }) => {
                    crate::daemon::signals::set_draining(&server, &controls, draining, "the control plane");
                    let _ = changed.send(());
                }
                Some(ControlToRelay::Secrets { secrets: pushed }) => accept_pushed_secrets(&secrets, pushed),
                Some(ControlToRelay::Revoke { sessions }) => apply_revocations(&controls, &workers, &sessions),
                Some(ControlToRelay::Registered { .. }) => return Err(LinkError::Protocol("registered sent twice")),
                None => return Ok(()),
            }
        }
    });
    let mut tick = tokio::time::interval(report_every);
    let ended = loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(()) = changes.recv() => {}
            ended = &mut orders => break ended.unwrap_or(Err(LinkError::Protocol("the order reader stopped"))),
        }
        // Revocations outlive the link (a relay cut off keeps them) but not their credentials.
        ::metrics::gauge!("teletip_revoked_sessions").set(context.controls.revocations.prune(unix_secs()) as f64);
        if let Err(e) = write_frame(&mut send, &load(context)).await {
            break Err(e.into());
        }
    };
    orders.abort();
    ended
}

/// Publishes the sessions the control plane revoked and wakes every worker, each of which ends
/// its allocations of them before it relays anything else. Kept while the link is down; a
/// restart forgets them, and the control plane sends every revocation in force again when the
/// relay registers.
fn apply_revocations(controls: &Controls, workers: &[Arc<mio::Waker>], sessions: &[RevokedSession]) {
    let applied = controls.revocations.revoke(sessions.iter().map(|s| (s.id.as_str(), s.expires)), unix_secs());
    if applied.added > 0 {
        for worker in workers {
            // A worker that cannot be woken (stopping) applies it at its next turn.
            let _ = worker.wake();
        }
    }
    ::metrics::gauge!("teletip_revoked_sessions").set(controls.revocations.current().len() as f64);
    // Session ids are pseudonymous credentials' names, not logged; counts are.
    tracing::info!(
        added = applied.added,
        already = applied.known,
        ignored = applied.ignored,
        "control link: sessions revoked"
    );
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Publishes the secrets the control plane pushed, beside the secret files'. A secret the
/// relay would refuse in its own files (a short value, a key id that is not a plain name) is
/// left out and logged; the others still apply.
fn accept_pushed_secrets(sources: &Mutex<SecretSources>, pushed: Vec<PushedSecret>) {
    let mut accepted = Vec::new();
    for secret in pushed {
        if !crate::config::is_plain_key_id(&secret.key_id) || secret.secret.len() < 16 {
            tracing::error!(
                key_id = secret.key_id.escape_debug().to_string(),
                "the control plane pushed a secret this relay refuses (key ids: letters, digits, '-', '_', '.'; values: 16 bytes or more); left out"
            );
            continue;
        }
        accepted.push(teletip_turn_proto::credentials::Secret::new(secret.key_id, secret.secret.into_bytes()));
    }
    let published = sources.lock().expect("secret sources lock").replace_pushed(accepted);
    crate::daemon::signals::log_secrets_published("secrets pushed by the control plane", &published);
}
