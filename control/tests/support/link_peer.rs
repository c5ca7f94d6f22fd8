//! A relay's end of the control link driven by the test: it dials the real control plane with a
//! certificate made by openssl, registers through `teletip-link` (the library the relay uses),
//! and keeps every frame the control plane sends, so that a test can say exactly which
//! sessions were revoked and with which expiry, whatever the relay then does with them.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use teletip_link::{ControlToRelay, Registration, RelayToControl, read_frame, write_frame};

pub struct LinkPeer {
    frames: Arc<Mutex<Vec<ControlToRelay>>>,
    task: tokio::task::JoinHandle<()>,
    endpoint: quinn::Endpoint,
}

impl Drop for LinkPeer {
    fn drop(&mut self) {
        self.task.abort();
        self.endpoint.close(0u32.into(), b"test over");
    }
}

impl LinkPeer {
    /// Dials the control plane's link on `link_port` as `node` (its certificate in `pki`) and
    /// registers.
    pub async fn register(pki: &Path, node: &str, link_port: u16) -> LinkPeer {
        let client = teletip_link::tls::client_config(
            &pki.join(format!("{node}.pem")),
            &pki.join(format!("{node}.key")),
            &pki.join("ca.pem"),
        )
        .expect("a client configuration from the test's certificates");
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let server = format!("127.0.0.1:{link_port}").parse().unwrap();
        let connection =
            endpoint.connect_with(client, server, "control.test").unwrap().await.expect("the link handshake");
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        let registration = Registration {
            version: "test-peer".into(),
            region: None,
            host: "127.0.0.1".into(),
            ipv6_host: None,
            udp_port: Some(3478),
            tcp_port: None,
            tls_port: None,
            capacity: 0,
            draining: false,
        };
        write_frame(&mut send, &RelayToControl::Register(registration)).await.unwrap();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let kept = frames.clone();
        let task = tokio::spawn(async move {
            let _send = send; // the stream stays open while the peer lives
            let _connection = connection;
            while let Ok(Some(frame)) = read_frame::<_, ControlToRelay>(&mut recv).await {
                kept.lock().unwrap().push(frame);
            }
        });
        LinkPeer { frames, task, endpoint }
    }

    /// Every session named by the `Revoke` frames received so far, with its expiry.
    pub fn revoked(&self) -> BTreeMap<String, u64> {
        let frames = self.frames.lock().unwrap();
        frames
            .iter()
            .filter_map(|f| match f {
                ControlToRelay::Revoke { sessions } => Some(sessions),
                _ => None,
            })
            .flatten()
            .map(|s| (s.id.clone(), s.expires))
            .collect()
    }

    /// The number of `Revoke` frames received so far.
    pub fn revoke_frames(&self) -> usize {
        self.frames.lock().unwrap().iter().filter(|f| matches!(f, ControlToRelay::Revoke { .. })).count()
    }

    /// Waits up to `within` for every id of `ids` to have been revoked; their expiries.
    pub async fn await_revoked(&self, ids: &[&str], within: Duration) -> BTreeMap<String, u64> {
        let deadline = Instant::now() + within;
        loop {
            let revoked = self.revoked();
            if ids.iter().all(|id| revoked.contains_key(*id)) {
                return revoked;
            }
            assert!(Instant::now() < deadline, "not revoked within {within:?}: {ids:?}; received {revoked:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
