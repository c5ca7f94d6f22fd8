//! The control link when the other end misbehaves, with the real daemon and a stand-in control
//! plane (the link's own QUIC endpoint and frames): a control plane the relay cannot verify is
//! never registered with, a first answer other than `Registered` is not obeyed and the relay
//! redials, and pushed secrets the relay would refuse in its own files are left out while the
//! others apply. In every case the relay keeps relaying.

mod support;

use std::time::{Duration, Instant};

use support::link::*;
use support::*;
use teletip_link::{ControlToRelay, PushedSecret, RelayToControl, read_frame, write_frame};
use teletip_turn_proto::codec::Class;
use teletip_turn_proto::credentials::issue;

/// Starts the relay with a control link to `endpoint` (on a blocking thread: the helper waits).
async fn start_linked(pki: &std::path::Path, endpoint: &quinn::Endpoint) -> Relay {
    let flags = link_flags(pki, endpoint.local_addr().unwrap());
    tokio::task::spawn_blocking(move || {
        Relay::start("127.0.0.1", &flags.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap()
}

/// Polls `metric` (no labels) until it equals `want`, for at most `within`.
async fn wait_gauge(relay: &Relay, metric: &str, want: f64, within: Duration) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let v = relay.metric(metric, "");
        if v == want || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_signed_by_another_ca_is_never_registered_with() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    // The right name (control.test) under a CA the relay was not told to trust.
    let impostor = control_endpoint(pki.path(), "impostor");
    let relay = start_linked(pki.path(), &impostor).await;

    let incoming = tokio::time::timeout(Duration::from_secs(10), impostor.accept())
        .await
        .expect("the relay dials")
        .expect("an incoming connection");
    let handshake = tokio::time::timeout(Duration::from_secs(10), incoming).await.expect("the handshake ends");
    assert!(handshake.is_err(), "the relay completed a handshake with a control plane it cannot verify");

    // The relay relays on without the link, and says the link is down.
    let mut client = TurnClient::new(relay.addr, "while-unlinked");
    assert_eq!(client.allocate(&|_| {}).class(), Class::Success);
    assert_eq!(relay.metric("teletip_control_link_up", ""), 0.0);
    // It dials again (backoff from 1 s), and is refused again.
    let again = tokio::time::timeout(Duration::from_secs(10), impostor.accept()).await.expect("the relay redials");
    let handshake = tokio::time::timeout(Duration::from_secs(10), again.unwrap()).await.unwrap();
    assert!(handshake.is_err(), "the second attempt is refused too");
    assert_eq!(relay.metric("teletip_control_link_up", ""), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_answer_other_than_registered_is_not_obeyed_and_the_relay_redials() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let endpoint = control_endpoint(pki.path(), "control");
    let relay = start_linked(pki.path(), &endpoint).await;

    // A drain order where the registration's answer belongs.
    let (first, mut send, _recv) =
        tokio::time::timeout(Duration::from_secs(10), accept_registration(&endpoint)).await.expect("registration");
    write_frame(&mut send, &ControlToRelay::Drain { draining: true }).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), first.closed()).await;
    assert!(closed.is_ok(), "the relay closes a link whose first answer is not Registered");
    assert_eq!(relay.metric("teletip_draining", ""), 0.0, "the order was not obeyed");
    let mut client = TurnClient::new(relay.addr, "not-drained");
    assert_eq!(client.allocate(&|_| {}).class(), Class::Success, "new allocations are not turned away");
    assert_eq!(relay.metric("teletip_control_link_up", ""), 0.0);

    // The relay dials again; registered properly, the link is up and orders apply.
    let mut control = tokio::time::timeout(Duration::from_secs(10), accept_relay(endpoint.clone()))
        .await
        .expect("the relay redials after the protocol error");
    assert_eq!(wait_gauge(&relay, "teletip_control_link_up", 1.0, Duration::from_secs(5)).await, 1.0);
    write_frame(&mut control.send, &ControlToRelay::Drain { draining: true }).await.unwrap();
    assert_eq!(wait_gauge(&relay, "teletip_draining", 1.0, Duration::from_secs(5)).await, 1.0);

    // A second Registered on a registered link is a protocol error too: the relay drops the
    // link (and redials).
    let registered = ControlToRelay::Registered { node: "relay1.test".into(), report_every_ms: 1000 };
    write_frame(&mut control.send, &registered).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), control.connection.closed()).await;
    assert!(closed.is_ok(), "the relay closes a link that registers twice");
    let (_third, _send, mut recv) =
        tokio::time::timeout(Duration::from_secs(10), accept_registration(&endpoint)).await.expect("redialled");
    // Nothing but the registration until it is answered.
    let nothing = tokio::time::timeout(Duration::from_millis(1500), read_frame::<_, RelayToControl>(&mut recv)).await;
    assert!(nothing.is_err(), "the relay sent {nothing:?} before being registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_secrets_the_relay_would_refuse_are_left_out_and_the_others_apply() {
    const PUSHED: &str = "pushed-by-control-0123456789abcdef";
    const BAD_ID: &str = "under-a-bad-key-id-0123456789abcd";
    const SHORT: &str = "too-short";
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let endpoint = control_endpoint(pki.path(), "control");
    let relay = start_linked(pki.path(), &endpoint).await;
    let mut control = tokio::time::timeout(Duration::from_secs(10), accept_relay(endpoint.clone())).await.unwrap();

    let secret = |key_id: &str, secret: &str| PushedSecret { key_id: key_id.into(), secret: secret.into() };
    let pushed = vec![secret("k/../x", BAD_ID), secret("k-short", SHORT), secret("k-pushed", PUSHED)];
    write_frame(&mut control.send, &ControlToRelay::Secrets { secrets: pushed }).await.unwrap();

    let under = |secret: &str, id: &str| issue(secret.as_bytes(), id, unix_now() + 600);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut probe = TurnClient::with_credentials(relay.addr, under(PUSHED, "probe"));
        if probe.allocate(&|_| {}).class() == Class::Success {
            break;
        }
        assert!(Instant::now() < deadline, "the pushed secret is not accepted 5 s after the push");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (secret, what) in [(BAD_ID, "a secret under a key id that is not a plain name"), (SHORT, "a short secret")] {
        let mut client = TurnClient::with_credentials(relay.addr, under(secret, "refused"));
        assert_eq!(client.allocate(&|_| {}).error_code(), Some(401), "{what} is left out");
    }
    // The relay's own secret stays accepted beside the pushed one.
    let mut own = TurnClient::new(relay.addr, "own-secret");
    assert_eq!(own.allocate(&|_| {}).class(), Class::Success);
    assert!(relay.wait_metric("teletip_auth_success_total", "key_id=\"k-pushed\"", 1.0) >= 1.0);
}
