//! What relays and the control plane say to each other.

use serde::{Deserialize, Serialize};

/// Relay → control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum RelayToControl {
    /// The first frame of a connection.
    Register(Registration),
    /// Sent every `report_every_ms` and at once when something changes (a drain).
    Load(Load),
}

/// Control plane → relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ControlToRelay {
    /// The answer to `Register`: the name the control plane knows the node by (from its
    /// certificate) and how often it wants a load report.
    Registered { node: String, report_every_ms: u64 },
    /// Start (`true`) or end (`false`) a drain: new allocations go to an alternate server or are
    /// refused, those in place carry on.
    Drain { draining: bool },
    /// The REST API secrets the control plane issues credentials with, current first. The relay
    /// accepts them besides its own secret files, so that a rotation needs no change on the
    /// relays. Sent after `Registered` and whenever they change.
    Secrets { secrets: Vec<PushedSecret> },
    /// TURN sessions the control plane revoked, each until its credentials expire: the relay
    /// ends every allocation of each at once and refuses its credentials until `expires`. Sent
    /// after `Registered` with every revocation still in force (in frames of at most
    /// [`REVOKE_BATCH`] sessions) and whenever new ones are made. Idempotent; an entry whose
    /// `expires` has passed is ignored.
    Revoke { sessions: Vec<RevokedSession> },
}

/// The most sessions one `Revoke` frame names: about 45 bytes of JSON each, well under the
/// 64 KiB frame limit.
pub const REVOKE_BATCH: usize = 1000;

/// One revoked TURN session: the opaque part of its REST username (`<expiry>:<id>`) and that
/// expiry (Unix seconds), after which its credentials are refused anyway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokedSession {
    pub id: String,
    pub expires: u64,
}

/// One secret as pushed. Its value never appears in `Debug` output (logs).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushedSecret {
    pub key_id: String,
    pub secret: String,
}

impl std::fmt::Debug for PushedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushedSecret").field("key_id", &self.key_id).field("secret", &"<redacted>").finish()
    }
}

/// How clients reach the relay, as ICE servers are built from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    /// teletip-relay's version.
    pub version: String,
    /// A free-form region or site name ("istanbul-1"), for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Host name or address clients use (the TLS certificate's name when `tls_port` is set).
    pub host: String,
    /// The IPv6 address clients reach the relay by too, when `host` is an IPv4 address and the
    /// relay serves IPv6 as well (a DNS name in `host` carries its IPv6 address itself, in its
    /// AAAA record). Absent from older relays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_host: Option<std::net::Ipv6Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_port: Option<u16>,
    /// The most allocations the relay takes (its total-quota; 0: no limit).
    pub capacity: u32,
    /// Whether it is draining already (SIGUSR1 before the link came up).
    pub draining: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Load {
    /// Allocations in place.
    pub allocations: u32,
    pub draining: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_json_an_operator_can_read() {
        let drain = serde_json::to_string(&ControlToRelay::Drain { draining: true }).unwrap();
        assert_eq!(drain, r#"{"type":"drain","draining":true}"#);
        let load = serde_json::to_string(&RelayToControl::Load(Load { allocations: 7, draining: false })).unwrap();
        assert_eq!(load, r#"{"type":"load","allocations":7,"draining":false}"#);
        let register: RelayToControl = serde_json::from_str(
            r#"{"type":"register","version":"0.1.0","host":"relay1.example","udpPort":3478,"capacity":10000,"draining":false}"#,
        )
        .unwrap();
        let RelayToControl::Register(r) = register else { panic!("not a registration") };
        assert_eq!((r.udp_port, r.tcp_port, r.region), (Some(3478), None, None));
    }

    #[test]
    fn pushed_secrets_travel_but_never_show_in_debug_output() {
        let message = ControlToRelay::Secrets {
            secrets: vec![PushedSecret { key_id: "k2026-12".into(), secret: "s3cr3t-s3cr3t-s3cr3t".into() }],
        };
        let json = serde_json::to_string(&message).unwrap();
        assert_eq!(json, r#"{"type":"secrets","secrets":[{"keyId":"k2026-12","secret":"s3cr3t-s3cr3t-s3cr3t"}]}"#);
        assert_eq!(serde_json::from_str::<ControlToRelay>(&json).unwrap(), message);
        let debug = format!("{message:?}");
        assert!(debug.contains("k2026-12") && !debug.contains("s3cr3t"), "{debug}");
    }

    #[test]
    fn an_unknown_message_type_is_an_error_not_a_default() {
        assert!(serde_json::from_str::<ControlToRelay>(r#"{"type":"self-destruct"}"#).is_err());
    }
}
