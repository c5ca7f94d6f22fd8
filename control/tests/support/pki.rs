//! Certificates made by openssl for the control link's tests, and free local ports.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use super::http::RELAXED_LIMITS;

/// Runs openssl in `dir`; `args` are split on spaces (none of the test's arguments holds one).
pub fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split(' '))
        .current_dir(dir)
        .output()
        .expect("openssl is installed (apt-get install openssl)");
    assert!(out.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A fresh P-256 key, unencrypted.
const NEW_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

/// A CA named `ca` in `dir` (ca.pem, ca.key).
pub fn make_ca(dir: &Path, ca: &str) {
    openssl(dir, &format!("req -x509 {NEW_KEY} -keyout {ca}.key -out {ca}.pem -days 2 -subj /CN={ca}"));
}

/// `name`.pem and `name`.key, signed by CA `ca`, for a server (`serverAuth`) or a relay node
/// (`clientAuth`), naming `name` as its DNS name.
pub fn make_cert(dir: &Path, ca: &str, name: &str, usage: &str) {
    openssl(dir, &format!("req {NEW_KEY} -keyout {name}.key -out {name}.csr -subj /CN={name}"));
    std::fs::write(dir.join(format!("{name}.ext")), format!("subjectAltName=DNS:{name}\nextendedKeyUsage={usage}\n"))
        .unwrap();
    openssl(
        dir,
        &format!(
            "x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial -out {name}.pem -days 2 -extfile {name}.ext"
        ),
    );
}

/// A fresh directory with a CA (`ca`), the control plane's link certificate (`control.test`,
/// serverAuth) and one client certificate per relay node, named by its DNS name.
pub fn link_pki(nodes: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), "ca");
    make_cert(dir.path(), "ca", "control.test", "serverAuth");
    for node in nodes {
        make_cert(dir.path(), "ca", node, "clientAuth");
    }
    dir
}

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A port free for both UDP and TCP on loopback: a relay's listening port serves TURN over
/// both, and a port the kernel handed out as free for UDP may be a TCP connection's local port.
pub fn free_udp_and_tcp_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The `[relay-link]` table of a control plane listening for relays on `link_port`, with the
/// certificates of `pki` (control.test.pem, ca.pem).
pub fn relay_link_table(pki: &Path, link_port: u16) -> String {
    format!(
        "[relay-link]\nlisten = \"127.0.0.1:{link_port}\"\ncert = \"{cert}\"\nkey = \"{key}\"\nclient-ca = \"{ca}\"\n\
         report-seconds = 1\nstale-after-seconds = 3\n",
        cert = pki.join("control.test.pem").display(),
        key = pki.join("control.test.key").display(),
        ca = pki.join("ca.pem").display(),
    )
}

/// A whole configuration's tail for the link tests: relaxed rate limits, a static relay that
/// does not exist (offered while no relay is registered), and the relay link.
pub fn link_config(pki: &Path, link_port: u16) -> String {
    format!(
        "{RELAXED_LIMITS}\n[[ice.relays]]\nhost = \"static.invalid\"\nudp-port = 3478\n{}",
        relay_link_table(pki, link_port)
    )
}
