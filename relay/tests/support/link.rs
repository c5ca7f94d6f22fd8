//! A stand-in control plane for the relay's control link: the link's own QUIC endpoint and
//! frames, with certificates made by openssl as operations.md makes them.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use teletip_link::{ControlToRelay, RelayToControl, read_frame, write_frame};

/// Runs openssl in `dir`; `args` are split on spaces.
pub fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split(' '))
        .current_dir(dir)
        .output()
        .expect("openssl is installed (apt-get install openssl)");
    assert!(out.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A link CA (`ca.pem`), the control plane's certificate for `control.test` (`control.pem`)
/// and the relay node's (`relay1.pem`); and a second CA (`other-ca.pem`) with a certificate
/// for the same name `control.test` (`impostor.pem`), which the relay must not trust.
pub fn make_pki(dir: &Path) {
    const NEW_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    for ca in ["ca", "other-ca"] {
        openssl(dir, &format!("req -x509 {NEW_KEY} -keyout {ca}.key -out {ca}.pem -days 2 -subj /CN={ca}"));
    }
    for (name, ca, dns, usage) in [
        ("control", "ca", "control.test", "serverAuth"),
        ("relay1", "ca", "relay1.test", "clientAuth"),
        ("impostor", "other-ca", "control.test", "serverAuth"),
    ] {
        openssl(dir, &format!("req {NEW_KEY} -keyout {name}.key -out {name}.csr -subj /CN={dns}"));
        std::fs::write(
            dir.join(format!("{name}.ext")),
            format!("subjectAltName=DNS:{dns}\nextendedKeyUsage={usage}\n"),
        )
        .unwrap();
        openssl(
            dir,
            &format!(
                "x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial -out {name}.pem -days 2 -extfile {name}.ext"
            ),
        );
    }
}

/// A control plane endpoint on 127.0.0.1 presenting `<cert>.pem` and trusting the link CA
/// for relays.
pub fn control_endpoint(pki: &Path, cert: &str) -> quinn::Endpoint {
    control_endpoint_on(pki, cert, std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
}

/// The same on a socket the caller made (in another network namespace, say); call it within a
/// tokio runtime.
pub fn control_endpoint_on(pki: &Path, cert: &str, socket: std::net::UdpSocket) -> quinn::Endpoint {
    let server = teletip_link::tls::server_config(
        &pki.join(format!("{cert}.pem")),
        &pki.join(format!("{cert}.key")),
        &pki.join("ca.pem"),
    )
    .unwrap();
    let runtime = std::sync::Arc::new(quinn::TokioRuntime);
    quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(server), socket, runtime).unwrap()
}

/// The relay's flags for a control link to `server`, trusting the link CA, as `relay1.test`.
pub fn link_flags(pki: &Path, server: SocketAddr) -> Vec<String> {
    let path = |name: &str| pki.join(name).to_str().unwrap().to_owned();
    vec![
        "--allow-loopback-peers".into(),
        "true".into(),
        "--control-server".into(),
        server.to_string(),
        "--control-server-name".into(),
        "control.test".into(),
        "--control-ca".into(),
        path("ca.pem"),
        "--control-cert".into(),
        path("relay1.pem"),
        "--control-key".into(),
        path("relay1.key"),
    ]
}

/// The control plane's end of one relay's link: registered, its load reports read and dropped.
pub struct ControlEnd {
    pub endpoint: quinn::Endpoint,
    pub connection: quinn::Connection,
    pub send: quinn::SendStream,
}

/// Accepts the relay's next connection on `endpoint` and reads its registration, which is
/// returned with the streams, unanswered.
pub async fn accept_registration(
    endpoint: &quinn::Endpoint,
) -> (quinn::Connection, quinn::SendStream, quinn::RecvStream) {
    let connection = endpoint.accept().await.expect("the relay dials").await.expect("mutual TLS handshake");
    let (send, mut recv) = connection.accept_bi().await.unwrap();
    let first = read_frame::<_, RelayToControl>(&mut recv).await.unwrap();
    assert!(matches!(first, Some(RelayToControl::Register(_))), "{first:?}");
    (connection, send, recv)
}

/// Accepts the relay's connection on `endpoint` and answers its registration.
pub async fn accept_relay(endpoint: quinn::Endpoint) -> ControlEnd {
    let (connection, mut send, mut recv) = accept_registration(&endpoint).await;
    let registered = ControlToRelay::Registered { node: "relay1.test".into(), report_every_ms: 1000 };
    write_frame(&mut send, &registered).await.unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = read_frame::<_, RelayToControl>(&mut recv).await {} });
    ControlEnd { endpoint, connection, send }
}
