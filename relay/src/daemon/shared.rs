//! What the workers share with each other and with the daemon's signal handlers and control
//! link: the core's fixed configuration and its run-time controls, quotas and secret sources.

use std::sync::{Arc, Mutex};

use rand::Rng;
use teletip_turn_proto::credentials::Secret;
use teletip_turn_proto::limits::SharedQuotas;
use teletip_turn_proto::nonce::NonceIssuer;
use teletip_turn_proto::policy::PeerPolicy;
use teletip_turn_proto::server::{Controls, DefaultFamily, ServerConfig};

use crate::config::{AddressFamilySetting, RelayConfig};
use crate::secret_sources::SecretSources;

/// The secrets as the state machine takes them.
pub(super) fn proto_secrets(c: &RelayConfig) -> Vec<Secret> {
    c.secrets.iter().map(|s| Secret::new(s.key_id.clone(), s.value.as_bytes().to_vec())).collect()
}

/// The protocol settings the state machine gets from the daemon's configuration.
pub fn server_config(c: &RelayConfig) -> ServerConfig {
    // Shared with the alternates when configured, so that their redirected clients' nonces
    // hold there; otherwise random per start.
    let nonce_key: [u8; 32] = c.nonce_key.as_ref().map_or_else(|| rand::rng().random(), |k| k.key);
    let mut sc = ServerConfig::new(c.realm.clone(), nonce_key);
    sc.nonces = NonceIssuer::new(nonce_key, c.stale_nonce);
    sc.policy = PeerPolicy::new(c.effective_allowed_peers(), c.denied_peer_ip.clone());
    sc.max_lifetime = c.max_allocate_lifetime;
    sc.max_permissions_per_allocation = c.max_permissions;
    if c.strict_channel_numbers {
        sc.max_channel_number = teletip_turn_proto::codec::RFC8656_MAX_CHANNEL;
    }
    sc.max_bps = c.max_bps;
    sc.max_credential_lifetime = c.max_credential_lifetime;
    sc.unauth_rate = c.unauth_rate;
    sc.unauth_burst = c.unauth_burst;
    sc.unauth_earned_burst = c.unauth_earned_burst;
    sc.same_relay_delivery = c.same_relay_delivery;
    sc.default_family = match c.allocation_default_address_family {
        AddressFamilySetting::Ipv4 => DefaultFamily::Ipv4,
        AddressFamilySetting::Ipv6 => DefaultFamily::Ipv6,
        AddressFamilySetting::Keep => DefaultFamily::Keep,
    };
    sc.alternate_servers = c.alternate_servers.clone();
    sc.tls_alternate_servers = c.tls_alternate_servers.clone();
    sc
}

/// What the workers share with each other and with the daemon's signal handlers and control
/// link.
pub(super) struct Core {
    pub(super) server: Arc<ServerConfig>,
    pub(super) controls: Controls,
    pub(super) quotas: Arc<SharedQuotas>,
    /// The files' secrets and, with a control link, the ones the control plane pushes.
    pub(super) secret_sources: Arc<Mutex<SecretSources>>,
}

impl Core {
    pub(super) fn new(config: &RelayConfig) -> Core {
        let controls = Controls::new(proto_secrets(config));
        Core {
            server: Arc::new(server_config(config)),
            secret_sources: Arc::new(Mutex::new(SecretSources::new(controls.secrets.clone(), proto_secrets(config)))),
            controls,
            quotas: Arc::new(SharedQuotas::new(config.user_quota, config.client_ip_quota, config.total_quota)),
        }
    }
}
