//! The real `teletip-relay` for the control plane's tests (alone or registered over the control
//! link), and the `turn` crate (a TURN client we did not write) to allocate on it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The relay binary of this workspace, built if the test run has not built it yet.
pub fn relay_binary() -> PathBuf {
    let dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let path = dir.join("teletip-relay");
    if !path.exists() {
        let status = std::process::Command::new(env!("CARGO")).args(["build", "-p", "teletip-relay"]).status().unwrap();
        assert!(status.success());
    }
    path
}

/// A running `teletip-relay` registered with the control plane over the control link (its
/// certificate `<node>.pem` in `pki`, signed by `pki/ca.pem`), one worker, killed on drop.
pub struct LinkedRelay {
    child: Child,
    pub port: u16,
    pub metrics: u16,
}

impl LinkedRelay {
    /// Starts relay `node` dialling the control link at `link_port`, with the ICE secrets of
    /// `secret_file` and relayed ports `ports`.
    pub fn start(pki: &Path, node: &str, link_port: u16, secret_file: &Path, ports: (u16, u16)) -> LinkedRelay {
        LinkedRelay::start_with(pki, node, link_port, secret_file, ports, &[])
    }

    /// As `start`, with more command-line arguments (`--allow-loopback-peers true` to relay to
    /// a peer on this host).
    pub fn start_with(
        pki: &Path,
        node: &str,
        link_port: u16,
        secret_file: &Path,
        ports: (u16, u16),
        extra_args: &[&str],
    ) -> LinkedRelay {
        LinkedRelay::spawn(pki, node, "istanbul-1", link_port, secret_file, ports, extra_args)
    }

    /// As `start`, reporting `region` at registration (the data-residency tests).
    pub fn start_in_region(
        pki: &Path,
        node: &str,
        region: &str,
        link_port: u16,
        secret_file: &Path,
        ports: (u16, u16),
    ) -> LinkedRelay {
        LinkedRelay::spawn(pki, node, region, link_port, secret_file, ports, &[])
    }

    fn spawn(
        pki: &Path,
        node: &str,
        region: &str,
        link_port: u16,
        secret_file: &Path,
        ports: (u16, u16),
        extra_args: &[&str],
    ) -> LinkedRelay {
        // Ports picked free may be taken by another test before the relay binds them: a relay
        // that exits at start is started again on fresh ports rather than failing the test
        // later with a relay that never registered.
        for _ in 0..5 {
            let (port, metrics) = (super::pki::free_udp_and_tcp_port(), super::pki::free_tcp_port());
            let mut child = Command::new(relay_binary())
                .args(["--realm", "teletip.test", "--static-auth-secret-file", secret_file.to_str().unwrap()])
                .args(["--listening-port", &port.to_string(), "--prometheus-port", &metrics.to_string()])
                .args(["--min-port", &ports.0.to_string(), "--max-port", &ports.1.to_string(), "--workers", "1"])
                .args(["--region", region, "--total-quota", "100"])
                .args(["--control-server", &format!("127.0.0.1:{link_port}"), "--control-server-name", "control.test"])
                .arg("--control-ca")
                .arg(pki.join("ca.pem"))
                .arg("--control-cert")
                .arg(pki.join(format!("{node}.pem")))
                .arg("--control-key")
                .arg(pki.join(format!("{node}.key")))
                .args(extra_args)
                .env("RUST_LOG", "warn")
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start teletip-relay");
            if wait_until_serving(&mut child, metrics) {
                return LinkedRelay { child, port, metrics };
            }
        }
        panic!("teletip-relay {node} did not start on five sets of free ports (its stderr is above)");
    }

    pub fn addr(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    /// One value of the relay's own metrics, `name` with its labels (None while the endpoint
    /// is not up or the series does not exist yet).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics)).await.ok()?.text().await.ok()?;
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Sends the relay signal `signal` (1: SIGHUP, a reload).
    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child.
        unsafe { super::libc_kill(self.child.id() as i32, signal) };
    }

    /// Stops the relay (SIGTERM) and waits for it.
    pub fn terminate(&mut self) {
        self.signal(15);
        let _ = self.child.wait();
    }
}

/// Whether the relay `child` serves its metrics endpoint (it has bound every listening socket
/// by then) within 10 s; false if it exited first.
fn wait_until_serving(child: &mut Child, metrics: u16) -> bool {
    for _ in 0..100 {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if std::net::TcpStream::connect(("127.0.0.1", metrics)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

impl Drop for LinkedRelay {
    fn drop(&mut self) {
        super::end_child(&mut self.child);
    }
}

/// Polls `check` every 100 ms until it is true, or fails saying `what` after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An allocation held open by the `turn` crate until dropped (closed) or `close`d.
pub struct Held {
    client: turn::client::Client,
    /// Refreshes the allocation while it lives.
    conn: std::sync::Arc<dyn webrtc_util::Conn + Send + Sync>,
    pub relayed: SocketAddr,
}

impl Held {
    /// The relayed connection, to send to peers through the allocation (`send_to`).
    pub fn conn(&self) -> std::sync::Arc<dyn webrtc_util::Conn + Send + Sync> {
        self.conn.clone()
    }

    pub async fn close(self) {
        let _ = self.conn.close().await;
        let _ = self.client.close().await;
    }
}

/// Allocates on `relay` (realm teletip.test) and keeps the allocation.
pub async fn allocate_and_hold(relay: SocketAddr, username: &str, password: &str) -> Result<Held, String> {
    use webrtc_util::Conn;
    let local = if relay.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" };
    let socket = tokio::net::UdpSocket::bind(local).await.unwrap();
    let client = turn::client::Client::new(turn::client::ClientConfig {
        stun_serv_addr: relay.to_string(),
        turn_serv_addr: relay.to_string(),
        username: username.into(),
        password: password.into(),
        realm: "teletip.test".into(),
        software: String::new(),
        rto_in_ms: 0,
        conn: std::sync::Arc::new(socket),
        vnet: None,
    })
    .await
    .map_err(|e| e.to_string())?;
    client.listen().await.map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(10), client.allocate()).await {
        Ok(Ok(conn)) => {
            let relayed = conn.local_addr().unwrap();
            Ok(Held { client, conn: std::sync::Arc::new(conn), relayed })
        }
        Ok(Err(e)) => {
            let _ = client.close().await;
            Err(e.to_string())
        }
        Err(_) => {
            let _ = client.close().await;
            Err("timed out".into())
        }
    }
}

/// Allocates on `relay` and lets the allocation go again: the relayed address, or why not.
pub async fn turn_allocate(relay: SocketAddr, username: &str, password: &str) -> Result<SocketAddr, String> {
    let held = allocate_and_hold(relay, username, password).await?;
    let relayed = held.relayed;
    held.close().await;
    Ok(relayed)
}
