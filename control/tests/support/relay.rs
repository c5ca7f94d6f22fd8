//! The real `teletip-relay` for the control plane's tests, and the `turn` crate (a TURN client
//! we did not write) to allocate on it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
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
