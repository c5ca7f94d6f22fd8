//! Configuration: a TOML file, then `TELETIP_RELAY_*` environment variables, then command-line
//! flags, each overriding the one before. Where coturn has the same concept we use coturn's
//! name, so that `turnserver.conf` knowledge carries over (docs/relay-config.md maps them).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub mod check;
pub mod coturn;
mod file_error;
mod forms;

pub use file_error::FileError;
pub use forms::{BOOLEAN_WORDS, parse_bool};

/// Declares the settings struct, its field-by-field layering, its defaults and its resolved
/// values together, so that a setting is named once: its flag, `TELETIP_RELAY_*` variable and
/// TOML key (coturn's name) come from the field's attributes, its merge from its type
/// ([`Layer`]), its default from the `= value` after it. A small macro rather than figment or
/// config-rs: clap already reads flags and variables into this struct and serde the file, so
/// what is left is the merge and the defaults, which those crates do through serialized
/// copies of the struct and a second declaration of the defaults.
macro_rules! layered_settings {
    (@default $ty:ty) => { <$ty>::default() };
    (@default $ty:ty, $default:expr) => { <$ty as Layer>::given($default) };
    (@value_type $ty:ty) => { $ty };
    (@value_type $ty:ty, $default:expr) => { <$ty as Layer>::Given };
    (@value $setting:expr) => { $setting };
    (@value $setting:expr, $default:expr) => { Layer::take($setting) };
    ($(#[$meta:meta])* pub struct $name:ident => $values:ident {
        $($(#[$field_meta:meta])* pub $field:ident: $ty:ty $(= $default:expr)?,)*
    }) => {
        $(#[$meta])*
        pub struct $name { $($(#[$field_meta])* pub $field: $ty,)* }

        /// Every setting's value with the defaults filled in: a setting with a default is
        /// plain, one without stays optional (documented on [`Settings`]).
        #[derive(Clone)]
        pub struct $values { $(pub $field: layered_settings!(@value_type $ty $(, $default)?),)* }

        impl $name {
            /// `self` overrides `base` field by field (lists replace, they do not append).
            pub fn over(self, base: $name) -> $name {
                $name { $($field: Layer::over(self.$field, base.$field),)* }
            }

            /// The built-in defaults: every setting that has one, set to it. Defaults that
            /// follow from other settings (relay-ip, public-host, workers, control-server-name)
            /// are filled in by [`RelayConfig::from_settings`].
            pub fn defaults() -> $name {
                $name { $($field: layered_settings!(@default $ty $(, $default)?),)* }
            }

            /// Every setting's name: its TOML key and flag.
            pub fn keys() -> Vec<String> {
                vec![$(stringify!($field).replace('_', "-"),)*]
            }

            /// The values, the defaults filled in.
            pub fn values(self) -> $values {
                let s = self.over(Self::defaults());
                $values { $($field: layered_settings!(@value s.$field $(, $default)?),)* }
            }
        }
    };
}

/// How one source's value of a setting layers over another's: a value set wins, a list given
/// replaces the other (an empty list is not given).
pub trait Layer {
    /// What a default is written as: the value of an optional setting, a list for a list.
    type Given;
    fn over(self, base: Self) -> Self;
    fn given(value: Self::Given) -> Self;
    /// The value of a setting that has a default, once the defaults are layered under it.
    fn take(self) -> Self::Given;
}

impl<T> Layer for Option<T> {
    type Given = T;
    fn over(self, base: Self) -> Self {
        self.or(base)
    }
    fn given(value: T) -> Self {
        Some(value)
    }
    fn take(self) -> T {
        self.expect("layered over Settings::defaults, which sets it")
    }
}

impl<T> Layer for Vec<T> {
    type Given = Vec<T>;
    fn over(self, base: Self) -> Self {
        if self.is_empty() { base } else { self }
    }
    fn given(value: Vec<T>) -> Self {
        value
    }
    fn take(self) -> Vec<T> {
        self
    }
}

layered_settings! {
/// Every setting, all optional, as they come from one source. The same struct is parsed from
/// the TOML file and from flags/environment, then merged; with its defaults filled in it is
/// also what `check-config` prints.
#[derive(Debug, Clone, Default, Deserialize, Serialize, clap::Args)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings => Values {
    /// Addresses to listen on for STUN/TURN over UDP (repeatable). Default 127.0.0.1.
    #[arg(long = "listening-ip", env = "TELETIP_RELAY_LISTENING_IP", value_delimiter = ',')]
    #[serde(default, deserialize_with = "forms::one_or_many")]
    pub listening_ip: Vec<IpAddr> = vec![IpAddr::from([127, 0, 0, 1])],
    /// UDP port for STUN/TURN. Default 3478.
    #[arg(long = "listening-port", short = 'p', env = "TELETIP_RELAY_LISTENING_PORT")]
    pub listening_port: Option<u16> = 3478,
    /// Do not listen for TURN over TCP on listening-port (coturn's name). Default false: TCP is
    /// served, for networks that let no UDP out.
    #[arg(long = "no-tcp", env = "TELETIP_RELAY_NO_TCP", value_parser = forms::parse_bool, num_args = 0..=1, default_missing_value = "true")]
    #[serde(default, deserialize_with = "forms::boolean")]
    pub no_tcp: Option<bool> = false,
    /// TCP port for TURN over TLS (`turns:`), served when cert and pkey are set. Default 5349;
    /// 443 gets through most firewalls.
    #[arg(long = "tls-listening-port", env = "TELETIP_RELAY_TLS_LISTENING_PORT")]
    pub tls_listening_port: Option<u16> = 5349,
    /// PEM certificate chain for TURN over TLS, leaf first.
    #[arg(long, env = "TELETIP_RELAY_CERT")]
    pub cert: Option<PathBuf>,
    /// PEM private key of that certificate.
    #[arg(long, env = "TELETIP_RELAY_PKEY")]
    pub pkey: Option<PathBuf>,
    /// Do not serve TURN over TLS even though cert and pkey are set (coturn's name).
    #[arg(long = "no-tls", env = "TELETIP_RELAY_NO_TLS", value_parser = forms::parse_bool, num_args = 0..=1, default_missing_value = "true")]
    #[serde(default, deserialize_with = "forms::boolean")]
    pub no_tls: Option<bool> = false,
    /// Client connections over TCP and TLS held at once; more are closed as they arrive.
    /// Default 10000.
    #[arg(long = "max-tcp-connections", env = "TELETIP_RELAY_MAX_TCP_CONNECTIONS")]
    pub max_tcp_connections: Option<usize> = 10_000,
    /// Client connections over TCP and TLS from one IP address held at once; more are closed as
    /// they arrive, so that one source cannot take max-tcp-connections. Default 128; 0 =
    /// unlimited.
    #[arg(long = "max-tcp-connections-per-ip", env = "TELETIP_RELAY_MAX_TCP_CONNECTIONS_PER_IP")]
    pub max_tcp_connections_per_ip: Option<usize> = 128,
    /// Addresses relayed sockets bind to, at most one IPv4 and one IPv6 (repeatable): an
    /// allocation relays over the family its client asks for (REQUESTED-ADDRESS-FAMILY), or
    /// both (ADDITIONAL-ADDRESS-FAMILY). Default: the first listening IP of each family.
    #[arg(long = "relay-ip", env = "TELETIP_RELAY_RELAY_IP", value_delimiter = ',')]
    #[serde(default, deserialize_with = "forms::one_or_many")]
    pub relay_ip: Vec<IpAddr>,
    /// Address advertised in XOR-RELAYED-ADDRESS when the host sits behind 1:1 NAT, one per
    /// family (repeatable): `public` for the relay-ip of its family, or coturn's
    /// `public/private` naming the relay-ip it stands for.
    #[arg(long = "external-ip", short = 'X', env = "TELETIP_RELAY_EXTERNAL_IP", value_delimiter = ',')]
    #[serde(default, deserialize_with = "forms::one_or_many")]
    pub external_ip: Vec<String>,
    /// Lowest relay port. Default 49152.
    #[arg(long = "min-port", env = "TELETIP_RELAY_MIN_PORT")]
    pub min_port: Option<u16> = 49152,
    /// Highest relay port. Default 65535.
    #[arg(long = "max-port", env = "TELETIP_RELAY_MAX_PORT")]
    pub max_port: Option<u16> = 65535,
    /// Authentication realm. Default "teletip".
    #[arg(long, short = 'r', env = "TELETIP_RELAY_REALM")]
    pub realm: Option<String> = "teletip".into(),
    /// TURN REST API shared secret (repeatable: all are accepted, the first is current).
    #[arg(
        long = "static-auth-secret",
        env = "TELETIP_RELAY_STATIC_AUTH_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    #[serde(default, deserialize_with = "forms::one_or_many")]
    pub static_auth_secret: Vec<String>,
    /// Files holding secrets, one per line as `key-id=secret` or just `secret`.
    #[arg(long = "static-auth-secret-file", env = "TELETIP_RELAY_STATIC_AUTH_SECRET_FILE", value_delimiter = ',')]
    #[serde(default, deserialize_with = "forms::one_or_many")]
    pub static_auth_secret_file: Vec<PathBuf>,
    /// Peer ranges allowed even though the built-in policy denies them (CIDR, IP, or a-b).
    #[arg(long = "allowed-peer-ip", env = "TELETIP_RELAY_ALLOWED_PEER_IP", value_delimiter = ',')]
    #[serde(default, deserialize_with = "forms::one_or_many")]
    pub allowed_peer_ip: Vec<String>,
    /// Where a draining relay (SIGUSR1) sends new clients over UDP and TCP: 300 Try Alternate
    /// with ALTERNATE-SERVER, the first of the client's address family (ip:port, a list).
    /// Without one, a draining relay answers 508.
    #[arg(long = "alternate-server", env = "TELETIP_RELAY_ALTERNATE_SERVER", value_delimiter = ',')]
    #[serde(default, deserialize_with = "forms::one_or_many")]
    pub alternate_server: Vec<SocketAddr>,
    /// The same for clients over TLS (the alternate's TLS port).
    #[arg(long = "tls-alternate-server", env = "TELETIP_RELAY_TLS_ALTERNATE_SERVER", value_delimiter = ',')]
    #[serde(default, deserialize_with = "forms::one_or_many")]
    pub tls_alternate_server: Vec<SocketAddr>,
    /// A file whose contents (at least 32 characters) key the nonces, instead of a random key
    /// per start. Relays that send clients to each other (alternate-server) share it, so that a
    /// redirected client's nonce is valid at the alternate (browsers do not retry a 438 there).
    #[arg(long = "nonce-key-file", env = "TELETIP_RELAY_NONCE_KEY_FILE")]
    pub nonce_key_file: Option<PathBuf>,
    /// Peer ranges denied in addition to the built-in policy.
    #[arg(long = "denied-peer-ip", env = "TELETIP_RELAY_DENIED_PEER_IP", value_delimiter = ',')]
    #[serde(default, deserialize_with = "forms::one_or_many")]
    pub denied_peer_ip: Vec<String>,
    /// UNSAFE: let clients relay to 127.0.0.0/8 and ::1 (tests and single-host demos only).
    #[arg(long = "allow-loopback-peers", env = "TELETIP_RELAY_ALLOW_LOOPBACK_PEERS", value_parser = forms::parse_bool, num_args = 0..=1, default_missing_value = "true")]
    #[serde(default, deserialize_with = "forms::boolean")]
    pub allow_loopback_peers: Option<bool> = false,
    /// Accept only RFC 8656's channel numbers (0x4000-0x4FFF). Default false: RFC 5766's
    /// 0x4000-0x7FFF, which Chrome and coturn's client use.
    #[arg(long = "strict-channel-numbers", env = "TELETIP_RELAY_STRICT_CHANNEL_NUMBERS", value_parser = forms::parse_bool, num_args = 0..=1, default_missing_value = "true")]
    #[serde(default, deserialize_with = "forms::boolean")]
    pub strict_channel_numbers: Option<bool> = false,
    /// Allocations per user id (the id part of the REST username). Default 10; 0 = unlimited.
    #[arg(long = "user-quota", env = "TELETIP_RELAY_USER_QUOTA")]
    pub user_quota: Option<u32> = 10,
    /// Allocations per client IP. Default 0 = unlimited: a hospital's NAT puts thousands of
    /// clients behind one address, and every allocation is already bounded by its credential's
    /// user-quota and by total-quota.
    #[arg(long = "client-ip-quota", env = "TELETIP_RELAY_CLIENT_IP_QUOTA")]
    pub client_ip_quota: Option<u32> = 0,
    /// Allocations in total. Default 10000; 0 = unlimited.
    #[arg(long = "total-quota", env = "TELETIP_RELAY_TOTAL_QUOTA")]
    pub total_quota: Option<u32> = 10_000,
    /// Relayed bytes per second per allocation. Default 1250000 (10 Mbit/s); 0 = unlimited.
    #[arg(long = "max-bps", env = "TELETIP_RELAY_MAX_BPS")]
    pub max_bps: Option<u64> = 1_250_000,
    /// Permissions per allocation. Default 32.
    #[arg(long = "max-permissions", env = "TELETIP_RELAY_MAX_PERMISSIONS")]
    pub max_permissions: Option<usize> = 32,
    /// Longest allocation lifetime in seconds. Default 3600.
    #[arg(long = "max-allocate-lifetime", env = "TELETIP_RELAY_MAX_ALLOCATE_LIFETIME")]
    pub max_allocate_lifetime: Option<u32> = 3600,
    /// Nonce lifetime in seconds (coturn: stale-nonce). Default 600.
    #[arg(long = "stale-nonce", env = "TELETIP_RELAY_STALE_NONCE")]
    pub stale_nonce: Option<u64> = 600,
    /// Refuse credentials that expire further ahead than this many seconds. Default 86400.
    #[arg(long = "max-credential-lifetime", env = "TELETIP_RELAY_MAX_CREDENTIAL_LIFETIME")]
    pub max_credential_lifetime: Option<u64> = 86_400,
    /// Answers to unauthenticated requests per second per source IP. Default 50; 0 = UNSAFE,
    /// no limit.
    #[arg(long = "unauth-rate", env = "TELETIP_RELAY_UNAUTH_RATE")]
    pub unauth_rate: Option<u64> = 50,
    /// Burst for unauth-rate. Default 1024: the first wave of a crowd behind one address, each
    /// client with its 401, before any of them has earned more.
    #[arg(long = "unauth-burst", env = "TELETIP_RELAY_UNAUTH_BURST")]
    pub unauth_burst: Option<u64> = 1024,
    /// Unauthenticated answers a source address earns beyond unauth-burst, 4 for each of its
    /// requests that passes message integrity, held at most this many at a time and lapsing
    /// 300 s after its last one: a crowd behind one NAT allocates at full speed, a spoofed
    /// source earns nothing. Default 4096, at most 65535; 0 = nothing earned.
    #[arg(long = "unauth-earned-burst", env = "TELETIP_RELAY_UNAUTH_EARNED_BURST")]
    pub unauth_earned_burst: Option<u64> = 4096,
    /// Serve Prometheus metrics. Default true.
    #[arg(long, env = "TELETIP_RELAY_PROMETHEUS", value_parser = forms::parse_bool, num_args = 0..=1, default_missing_value = "true")]
    #[serde(default, deserialize_with = "forms::boolean")]
    pub prometheus: Option<bool> = true,
    /// Metrics listener address. Default 127.0.0.1.
    #[arg(long = "prometheus-address", env = "TELETIP_RELAY_PROMETHEUS_ADDRESS")]
    pub prometheus_address: Option<IpAddr> = IpAddr::from([127, 0, 0, 1]),
    /// Metrics listener port. Default 9641 (coturn's).
    #[arg(long = "prometheus-port", env = "TELETIP_RELAY_PROMETHEUS_PORT")]
    pub prometheus_port: Option<u16> = 9641,
    /// Networks (CIDR) besides loopback that may scrape the metrics port; used by the
    /// `firewall` subcommand. Default: none, loopback only.
    #[arg(long = "metrics-allowed-network", env = "TELETIP_RELAY_METRICS_ALLOWED_NETWORK", value_delimiter = ',')]
    #[serde(default, deserialize_with = "forms::one_or_many")]
    pub metrics_allowed_network: Vec<IpNet>,
    /// New flows per second per source (IPv4 address, IPv6 /64) the firewall lets through to
    /// the TURN listener. Default 10000: sized for a NAT of thousands of clients reconnecting
    /// at once; reflection is bounded by the relay's unauthenticated budget, not here.
    #[arg(long = "firewall-new-flow-rate", env = "TELETIP_RELAY_FIREWALL_NEW_FLOW_RATE")]
    pub firewall_new_flow_rate: Option<u32> = 10_000,
    /// Burst for firewall-new-flow-rate, in packets. Default 20000.
    #[arg(long = "firewall-new-flow-burst", env = "TELETIP_RELAY_FIREWALL_NEW_FLOW_BURST")]
    pub firewall_new_flow_burst: Option<u32> = 20_000,
    /// TCP ports on the relay's addresses that the firewall leaves open (e.g. 22 when SSH
    /// shares the relay address). Default: none.
    #[arg(long = "firewall-allowed-tcp-port", env = "TELETIP_RELAY_FIREWALL_ALLOWED_TCP_PORT", value_delimiter = ',')]
    #[serde(default, deserialize_with = "forms::one_or_many")]
    pub firewall_allowed_tcp_port: Vec<u16>,
    /// Worker threads, each owning its share of allocations (coturn: relay-threads, also
    /// accepted). Default: one per core.
    #[arg(long, alias = "relay-threads", env = "TELETIP_RELAY_WORKERS")]
    #[serde(alias = "relay-threads")]
    pub workers: Option<usize>,
    /// Socket receive/send buffer in bytes for every UDP socket. Default 4194304.
    #[arg(long = "udp-buffer", env = "TELETIP_RELAY_UDP_BUFFER")]
    pub udp_buffer: Option<usize> = 4 << 20,
    /// DSCP code point for relayed media (46 = EF). Default 46; set 0 to leave unmarked.
    #[arg(long, env = "TELETIP_RELAY_DSCP")]
    pub dscp: Option<u8> = 46,
    /// Relayed sockets each worker opens at start and keeps open when allocations end, so that
    /// an Allocate takes a ready socket instead of socket() + bind() + epoll registration.
    /// After a peak, released sockets beyond this are kept too (up to half the port range and
    /// a quarter of the open-file limit over all workers) and closed gradually, a 32nd of the
    /// surplus per second. Default 256; 0 opens a socket per allocation and closes it when the
    /// allocation ends.
    #[arg(long = "relay-socket-pool", env = "TELETIP_RELAY_RELAY_SOCKET_POOL")]
    pub relay_socket_pool: Option<usize> = 256,
    /// Relayed sockets all workers together open per family when the relay starts, before any
    /// client arrives: a relay that has just started (an upgrade, a crash, a reboot) is about
    /// to see every client of its calls come back at once. The surplus over
    /// `relay-socket-pool` is given back as after any peak (a 32nd per second, half in about
    /// 22 s), so a calm relay holds only `relay-socket-pool` a few minutes after start. Capped
    /// as the pool is. Default 4096; 0 (or anything below the pool) opens only the pool.
    #[arg(long = "relay-socket-pool-at-start", env = "TELETIP_RELAY_RELAY_SOCKET_POOL_AT_START")]
    pub relay_socket_pool_at_start: Option<usize> = 4096,
    /// Microseconds a worker keeps polling its sockets after its last datagram before it
    /// sleeps: lower latency (no wake-up of an idle core per packet) for a core that spins.
    /// For dedicated relay hosts. Default 0 (sleep at once).
    #[arg(long = "busy-poll-us", env = "TELETIP_RELAY_BUSY_POLL_US")]
    pub busy_poll_us: Option<u32> = 0,
    /// Deliver datagrams between two allocations of the same worker in memory (one receive and
    /// one send per packet instead of two and two). Default true; false only to measure or
    /// debug the kernel path.
    #[arg(long = "same-relay-delivery", env = "TELETIP_RELAY_SAME_RELAY_DELIVERY", value_parser = forms::parse_bool, num_args = 0..=1, default_missing_value = "true")]
    #[serde(default, deserialize_with = "forms::boolean")]
    pub same_relay_delivery: Option<bool> = true,
    /// Network interfaces to attach the XDP fast path to (repeatable): ChannelData over UDP of
    /// the allocations this relay admitted is then relayed inside the kernel, under the same
    /// permissions, channels, expiry and revocation (docs/relay-security.md, "The XDP
    /// offload"). Needs root (CAP_BPF and CAP_NET_ADMIN) and a relay built with clang; when the
    /// program cannot be loaded or attached the relay says why and relays in user space. Default
    /// none (off).
    #[arg(long = "xdp-offload", env = "TELETIP_RELAY_XDP_OFFLOAD", value_delimiter = ',')]
    #[serde(default, deserialize_with = "forms::one_or_many")]
    pub xdp_offload: Vec<String>,
    /// How the XDP program is attached: auto (the driver's native mode where it has one, else
    /// generic), generic (any device), or native (refused by drivers without XDP). Default auto.
    #[arg(long = "xdp-mode", env = "TELETIP_RELAY_XDP_MODE")]
    pub xdp_mode: Option<crate::xdp::XdpMode> = crate::xdp::XdpMode::Auto,
    /// The relayed address family of an Allocate that names none (coturn's name): ipv4 (RFC
    /// 8656), ipv6, or keep (the family the client reaches the relay over; Chromium asks an IPv6
    /// TURN server for no family). Default ipv4.
    #[arg(long = "allocation-default-address-family", env = "TELETIP_RELAY_ALLOCATION_DEFAULT_ADDRESS_FAMILY")]
    pub allocation_default_address_family: Option<AddressFamilySetting> = AddressFamilySetting::Ipv4,
    /// Overload control: once a listener's queue has held datagrams longer than this for
    /// `overload-grace-ms`, datagrams that waited longer are dropped (loss instead of a growing
    /// delay) until nothing has been late for 100 ms. Milliseconds; default 3; 0 turns it off.
    #[arg(long = "max-queue-delay-ms", env = "TELETIP_RELAY_MAX_QUEUE_DELAY_MS")]
    pub max_queue_delay_ms: Option<u32> = 3,
    /// Overload control: how long a listener's queue must stay above `max-queue-delay-ms`
    /// before late datagrams are dropped (shorter reacts sooner; longer rides out swings near
    /// capacity). Milliseconds; default 20.
    #[arg(long = "overload-grace-ms", env = "TELETIP_RELAY_OVERLOAD_GRACE_MS")]
    pub overload_grace_ms: Option<u32> = (crate::net::overload::DEFAULT_GRACE_NS / 1_000_000) as u32,
    /// Log format: text or json. Default text.
    #[arg(long = "log-format", env = "TELETIP_RELAY_LOG_FORMAT")]
    pub log_format: Option<LogFormat> = LogFormat::Text,
    /// The control plane's relay link (`host:port`, UDP, QUIC): the relay registers there,
    /// reports its load and takes drain orders. It keeps relaying when the control plane is
    /// down. Needs control-ca, control-cert and control-key.
    #[arg(long = "control-server", env = "TELETIP_RELAY_CONTROL_SERVER")]
    pub control_server: Option<String>,
    /// The name the control plane's certificate must carry. Default: control-server's host.
    #[arg(long = "control-server-name", env = "TELETIP_RELAY_CONTROL_SERVER_NAME")]
    pub control_server_name: Option<String>,
    /// PEM CA that signed the control plane's certificate.
    #[arg(long = "control-ca", env = "TELETIP_RELAY_CONTROL_CA")]
    pub control_ca: Option<PathBuf>,
    /// This node's client certificate (PEM), signed by the control plane's relay CA; its DNS
    /// name (else common name) is the node's name there.
    #[arg(long = "control-cert", env = "TELETIP_RELAY_CONTROL_CERT")]
    pub control_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long = "control-key", env = "TELETIP_RELAY_CONTROL_KEY")]
    pub control_key: Option<PathBuf>,
    /// The host name or address clients reach this relay by, as the control plane hands it
    /// out (the TLS certificate's name when TURN over TLS is served). Default: external-ip,
    /// else relay-ip.
    #[arg(long = "public-host", env = "TELETIP_RELAY_PUBLIC_HOST")]
    pub public_host: Option<String>,
    /// A region or site name reported to the control plane (for operators).
    #[arg(long, env = "TELETIP_RELAY_REGION")]
    pub region: Option<String>,
}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AddressFamilySetting {
    Ipv4,
    Ipv6,
    Keep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Settings {
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let bytes = std::fs::read(path).map_err(|e| ConfigError::Read(path.to_owned(), e))?;
        Settings::from_toml(&bytes).map_err(|error| ConfigError::File(path.to_owned(), error))
    }

    /// Parses a configuration file's contents; what is wrong is named with its line.
    pub fn from_toml(bytes: &[u8]) -> Result<Settings, FileError> {
        let text = std::str::from_utf8(bytes).map_err(|e| FileError {
            line: Some(bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1),
            key: None,
            reason: "not UTF-8 text".into(),
        })?;
        let keys = Settings::keys();
        toml::from_str(text).map_err(|e| FileError::explain(text, &e, |name| keys.iter().any(|k| k == name)))
    }
}

/// The certificate chain and key TURN over TLS is served with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The key nonces are made with when relays share one (nonce-key-file).
#[derive(Clone)]
pub struct NonceKey {
    pub path: PathBuf,
    pub key: [u8; 32],
}

impl NonceKey {
    fn read(path: &Path) -> Result<NonceKey, ConfigError> {
        use sha2::Digest;
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_owned(), e))?;
        let text = text.trim();
        if text.len() < 32 {
            return Err(ConfigError::WeakNonceKey(path.to_owned()));
        }
        Ok(NonceKey { path: path.to_owned(), key: sha2::Sha256::digest(text.as_bytes()).into() })
    }
}

/// How the relay reaches the control plane's relay link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlLink {
    /// `host:port`, resolved at every connection attempt.
    pub server: String,
    pub server_name: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A secret with its key id, as loaded.
#[derive(Clone)]
pub struct NamedSecret {
    pub key_id: String,
    pub value: String,
}

/// The validated, effective configuration: every setting's value (`Values`, reached through
/// `Deref`, so `config.listening_port` reads the setting), and what the daemon derives from
/// them. A derived field of the same name as a setting (`workers`, `public_host`,
/// `allowed_peer_ip`, `denied_peer_ip`) is its checked, resolved form.
#[derive(Clone)]
pub struct RelayConfig {
    /// listening-ip, at least one.
    pub listening_ips: Vec<IpAddr>,
    /// TURN over TCP on listening-port.
    pub tcp: bool,
    /// TURN over TLS on tls-listening-port, with these files.
    pub tls: Option<TlsFiles>,
    /// relay-ip with external-ip applied: one per family served, IPv4 first.
    pub relay_addresses: Vec<RelayAddress>,
    /// Where a draining relay sends new clients (UDP and TCP; TLS).
    pub alternate_servers: Vec<SocketAddr>,
    pub tls_alternate_servers: Vec<SocketAddr>,
    /// The nonce key from nonce-key-file (SHA-256 of its contents), or none: random per start.
    pub nonce_key: Option<NonceKey>,
    pub secrets: Vec<NamedSecret>,
    pub allowed_peer_ip: Vec<IpNet>,
    pub denied_peer_ip: Vec<IpNet>,
    pub prometheus: Option<SocketAddr>,
    pub workers: usize,
    pub control_link: Option<ControlLink>,
    /// Host name or address clients reach this relay by (reported on the control link).
    pub public_host: String,
    values: Values,
    /// The settings with every default filled in, as `check-config` shows them.
    effective: Settings,
}

impl std::ops::Deref for RelayConfig {
    type Target = Values;
    fn deref(&self) -> &Values {
        &self.values
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    File(PathBuf, FileError),
    #[error("no static-auth-secret: the relay would accept nobody (set one, or use --static-auth-secret-file)")]
    NoSecret,
    #[error("secret {0:?} is shorter than 16 bytes: REST credentials are only as strong as the secret")]
    WeakSecret(String),
    #[error("min-port {0} is above max-port {1}")]
    PortRange(u16, u16),
    #[error("relay-ip is unspecified (0.0.0.0 or ::): set relay-ip to the address peers reach")]
    UnspecifiedRelayIp,
    #[error("relay-ip {0} and {1} are both {2}: give at most one relay-ip per address family")]
    RelayIpFamilyTwice(IpAddr, IpAddr, &'static str),
    #[error("external-ip {0:?} is neither an address nor public/private (coturn's form)")]
    ExternalIpSyntax(String),
    #[error("external-ip {0:?}: public and private addresses must be of one family")]
    ExternalIpMixedFamily(String),
    #[error(
        "external-ip {0:?} stands for no relay-ip (relay-ip: {1}): name a relay-ip as its private part, or add one of its family"
    )]
    ExternalIpWithoutRelayIp(String, String),
    #[error("external-ip gives two public addresses for relay-ip {0}")]
    ExternalIpTwice(IpAddr),
    #[error(
        "listening-ip {0} is IPv4 but no relay-ip is: an Allocate gets an IPv4 relayed address unless it asks for another \
         family (RFC 8656), so most clients would get 440; add an IPv4 relay-ip"
    )]
    NoIpv4RelayIp(IpAddr),
    #[error("invalid peer range {0:?}: use CIDR (10.0.0.0/8), an address, or a range (a-b)")]
    PeerRange(String),
    #[error("dscp {0} is not a 6-bit code point")]
    Dscp(u8),
    #[error("{0} must be at least {1}")]
    TooSmall(&'static str, u64),
    #[error("nonce-key-file {0}: at least 32 characters are needed (openssl rand -hex 32)")]
    WeakNonceKey(PathBuf),
    #[error("cert and pkey go together: TURN over TLS needs both (or neither, with no TLS)")]
    TlsHalf,
    #[error(
        "control-server, control-ca, control-cert and control-key go together (the link is mutual TLS); missing: {0}"
    )]
    ControlLinkHalf(String),
    #[error("control-server {0:?} is not host:port")]
    ControlServer(String),
    #[error(
        "realm is {0} bytes: at most {max} fit in a 401 challenge within {bound} times the smallest Allocate (reflection \
         amplification, docs/relay-security.md §5)",
        max = teletip_turn_proto::server::MAX_REALM_LEN,
        bound = teletip_turn_proto::server::AMPLIFICATION_BOUND
    )]
    RealmTooLong(usize),
    #[error("tls-listening-port {0} is listening-port too, which serves plain TCP: pick another port, or set no-tcp")]
    TlsPortClash(u16),
}

/// The value of a setting that [`Settings::defaults`] gives one to.
fn value<T: Clone>(setting: &Option<T>) -> T {
    setting.clone().expect("Settings::defaults sets every setting read with value()")
}

/// The control link's settings: all four or none.
fn control_link(s: &Settings) -> Result<Option<ControlLink>, ConfigError> {
    let parts = [
        ("control-server", s.control_server.is_some()),
        ("control-ca", s.control_ca.is_some()),
        ("control-cert", s.control_cert.is_some()),
        ("control-key", s.control_key.is_some()),
    ];
    if parts.iter().all(|(_, set)| !set) {
        return Ok(None);
    }
    let missing: Vec<&str> = parts.iter().filter(|(_, set)| !set).map(|(name, _)| *name).collect();
    if !missing.is_empty() {
        return Err(ConfigError::ControlLinkHalf(missing.join(", ")));
    }
    let server = s.control_server.clone().expect("checked above");
    let host = match server.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0) => {
            host.trim_start_matches('[').trim_end_matches(']').to_owned()
        }
        _ => return Err(ConfigError::ControlServer(server)),
    };
    Ok(Some(ControlLink {
        server_name: s.control_server_name.clone().unwrap_or(host),
        server,
        ca: s.control_ca.clone().expect("checked above"),
        cert: s.control_cert.clone().expect("checked above"),
        key: s.control_key.clone().expect("checked above"),
    }))
}

impl RelayConfig {
    /// Validates `s` and fills in the defaults: the values used, and the settings as
    /// `check-config` shows them.
    pub fn from_settings(s: Settings) -> Result<RelayConfig, ConfigError> {
        let total_quota_given = s.total_quota.is_some();
        let mut s = s.over(Settings::defaults());
        let control_link = control_link(&s)?;
        if let Some(link) = &control_link {
            s.control_server_name = Some(link.server_name.clone());
        }
        let listening_ips = s.listening_ip.clone();
        if s.relay_ip.is_empty() {
            s.relay_ip = first_of_each_family(&listening_ips);
        }
        let relay_addresses = relay_addresses(&s.relay_ip, &s.external_ip)?;
        if let Some(v4) = listening_ips.iter().find(|ip| ip.is_ipv4())
            && !relay_addresses.iter().any(|a| a.ip.is_ipv4())
        {
            return Err(ConfigError::NoIpv4RelayIp(*v4));
        }
        let (min_port, max_port) = (value(&s.min_port), value(&s.max_port));
        if min_port > max_port {
            return Err(ConfigError::PortRange(min_port, max_port));
        }
        // The default is what the port range holds when that is less: a quota the ports cannot
        // reach would only be reported to the control plane as capacity the relay lacks.
        if !total_quota_given {
            s.total_quota = s.total_quota.map(|q| q.min(check::ports_per_relay_ip(min_port, max_port)));
        }
        let public_host = s.public_host.get_or_insert_with(|| relay_addresses[0].advertised.to_string()).clone();
        let mut secrets: Vec<NamedSecret> = s
            .static_auth_secret
            .iter()
            .enumerate()
            .map(|(i, v)| NamedSecret {
                key_id: if i == 0 { "default".into() } else { format!("static-{i}") },
                value: v.clone(),
            })
            .collect();
        for path in &s.static_auth_secret_file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.clone(), e))?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                secrets.push(parse_secret_line(line, &format!("{}:{}", path.display(), n + 1)));
            }
        }
        if secrets.is_empty() {
            return Err(ConfigError::NoSecret);
        }
        if let Some(weak) = secrets.iter().find(|s| s.value.len() < 16) {
            return Err(ConfigError::WeakSecret(weak.key_id.clone()));
        }
        let dscp = value(&s.dscp);
        if dscp > 63 {
            return Err(ConfigError::Dscp(dscp));
        }
        let stale_nonce = value(&s.stale_nonce);
        if stale_nonce < 30 {
            return Err(ConfigError::TooSmall("stale-nonce", 30));
        }
        let max_allocate_lifetime = value(&s.max_allocate_lifetime);
        if max_allocate_lifetime < 600 {
            return Err(ConfigError::TooSmall("max-allocate-lifetime", 600));
        }
        let unauth_rate = value(&s.unauth_rate);
        let unauth_burst = value(&s.unauth_burst);
        if unauth_burst == 0 && unauth_rate != 0 {
            return Err(ConfigError::TooSmall("unauth-burst (0 would refuse every client's first request)", 1));
        }
        let max_permissions = value(&s.max_permissions);
        if max_permissions == 0 {
            return Err(ConfigError::TooSmall("max-permissions", 1));
        }
        // A rate of 0 would drop every new flow once a source's burst is spent, a burst of 0
        // every new flow at once: both cut clients off, so refuse them like unauth-burst = 0.
        let firewall_new_flow_rate = value(&s.firewall_new_flow_rate);
        if firewall_new_flow_rate == 0 {
            return Err(ConfigError::TooSmall("firewall-new-flow-rate", 1));
        }
        let firewall_new_flow_burst = value(&s.firewall_new_flow_burst);
        if firewall_new_flow_burst == 0 {
            return Err(ConfigError::TooSmall("firewall-new-flow-burst", 1));
        }
        if s.firewall_allowed_tcp_port.contains(&0) {
            return Err(ConfigError::TooSmall("firewall-allowed-tcp-port", 1));
        }
        let listening_port = value(&s.listening_port);
        let tcp = !value(&s.no_tcp);
        let tls = match (&s.cert, &s.pkey) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.clone(), key: key.clone() }),
            (None, None) => None,
            _ => return Err(ConfigError::TlsHalf),
        }
        .filter(|_| s.no_tls != Some(true));
        // Shown as whether TLS is served, with or without a certificate.
        s.no_tls = Some(tls.is_none());
        let tls_listening_port = value(&s.tls_listening_port);
        if tls_listening_port == 0 {
            return Err(ConfigError::TooSmall("tls-listening-port", 1));
        }
        if tls.is_some() && tcp && tls_listening_port == listening_port {
            return Err(ConfigError::TlsPortClash(tls_listening_port));
        }
        let max_tcp_connections = value(&s.max_tcp_connections);
        if max_tcp_connections == 0 && (tcp || tls.is_some()) {
            return Err(ConfigError::TooSmall("max-tcp-connections (or set no-tcp and leave out cert)", 1));
        }
        // The realm goes into every 401: longer than MAX_REALM_LEN, the 401 to the smallest
        // Allocate would break the amplification bound, so the core would drop it (counted as
        // `amplification`) and a client sending that Allocate could never log in.
        let realm = value(&s.realm);
        if realm.len() > teletip_turn_proto::server::MAX_REALM_LEN {
            return Err(ConfigError::RealmTooLong(realm.len()));
        }
        let prometheus_address = value(&s.prometheus_address);
        let prometheus_port = value(&s.prometheus_port);
        let prometheus = value(&s.prometheus).then(|| SocketAddr::new(prometheus_address, prometheus_port));
        let allowed_peer_ip = parse_ranges(&s.allowed_peer_ip)?;
        let denied_peer_ip = parse_ranges(&s.denied_peer_ip)?;
        // Shown as the networks a range stands for.
        s.allowed_peer_ip = allowed_peer_ip.iter().map(IpNet::to_string).collect();
        s.denied_peer_ip = denied_peer_ip.iter().map(IpNet::to_string).collect();
        let workers = s.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
        s.workers = Some(workers);
        Ok(RelayConfig {
            listening_ips,
            tcp,
            tls,
            relay_addresses,
            alternate_servers: s.alternate_server.clone(),
            tls_alternate_servers: s.tls_alternate_server.clone(),
            nonce_key: match &s.nonce_key_file {
                Some(path) => Some(NonceKey::read(path)?),
                None => None,
            },
            secrets,
            allowed_peer_ip,
            denied_peer_ip,
            prometheus,
            workers,
            control_link,
            public_host,
            values: s.clone().values(),
            effective: s,
        })
    }

    /// The IPv6 address clients reach this relay by besides public-host, for the control link:
    /// the advertised IPv6 relay address when the relay listens on it (or on `::`) and
    /// public-host is an IPv4 address. None when public-host is a DNS name (its AAAA record
    /// serves IPv6 clients) or when the relay serves no IPv6.
    pub fn ipv6_host(&self) -> Option<std::net::Ipv6Addr> {
        if !self.public_host.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv4()) {
            return None;
        }
        let v6 = self.relay_addresses.iter().find(|a| a.ip.is_ipv6())?;
        let listens = self.listening_ips.iter().any(|ip| *ip == v6.ip || (ip.is_ipv6() && ip.is_unspecified()));
        match v6.advertised {
            IpAddr::V6(advertised) if listens => Some(advertised),
            _ => None,
        }
    }

    /// Peer ranges that override the built-in deny list, including loopback when the unsafe
    /// switch is on.
    pub fn effective_allowed_peers(&self) -> Vec<IpNet> {
        let mut allowed = self.allowed_peer_ip.clone();
        if self.allow_loopback_peers {
            allowed.push("127.0.0.0/8".parse().expect("literal"));
            allowed.push("::1/128".parse().expect("literal"));
        }
        allowed
    }

    /// Settings that weaken the defaults, for a loud warning at start.
    pub fn unsafe_settings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.allow_loopback_peers {
            warnings.push("allow-loopback-peers: clients may relay to this host's own loopback services".into());
        }
        for net in &self.allowed_peer_ip {
            warnings.push(format!("allowed-peer-ip {net}: overrides the built-in deny list"));
        }
        if self.unauth_rate == 0 {
            warnings.push("unauth-rate = 0: unauthenticated answers are not rate-limited (reflection risk)".into());
        }
        if self.max_credential_lifetime == 0 {
            warnings.push("max-credential-lifetime = 0: credentials valid for any length of time are accepted".into());
        }
        if self.max_tcp_connections_per_ip == 0 && (self.tcp || self.tls.is_some()) {
            warnings.push(format!(
                "max-tcp-connections-per-ip = 0: one address may hold all {} TCP/TLS connections",
                self.max_tcp_connections
            ));
        }
        if let Some(addr) = self.prometheus.filter(|a| !a.ip().is_loopback()) {
            warnings.push(format!("prometheus listens on {addr}: firewall it to the monitoring network"));
        }
        warnings
    }

    /// The effective configuration as TOML, every setting with its default filled in and
    /// secrets redacted (`check-config`).
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.effective.clone();
        shown.static_auth_secret = self.secrets.iter().map(|s| format!("<redacted: key-id {}>", s.key_id)).collect();
        // TOML has no integers above i64::MAX, which only a flag could have set.
        toml::to_string(&shown).unwrap_or_else(|e| format!("# the settings cannot be shown as TOML: {e}\n"))
    }
}

/// Whether `id` may be a key id: 1-64 letters, digits, `-`, `_` or `.` (key ids appear in logs
/// and metric labels).
pub fn is_plain_key_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// One line of a secret file: `key-id=secret`, or a bare secret whose key id becomes
/// `file:line`. Only a plausible key id before the first `=` with a full-length secret after it
/// counts as the first form, so that a bare base64 secret (which ends in `=` padding) is never
/// split and no part of a secret becomes a key id (key ids appear in logs and metric labels).
pub fn parse_secret_line(line: &str, location: &str) -> NamedSecret {
    if let Some((id, value)) = line.split_once('=') {
        let (id, value) = (id.trim(), value.trim());
        if is_plain_key_id(id) && value.len() >= 16 {
            return NamedSecret { key_id: id.to_owned(), value: value.to_owned() };
        }
    }
    NamedSecret { key_id: location.to_owned(), value: line.to_owned() }
}

/// A relay address: where relayed sockets bind, and the address advertised for them
/// (external-ip behind 1:1 NAT, else the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayAddress {
    pub ip: IpAddr,
    pub advertised: IpAddr,
}

fn family_name(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// The first specific (not wildcard) listening IP of each family, IPv4 first: the default
/// relay-ip.
fn first_of_each_family(listening: &[IpAddr]) -> Vec<IpAddr> {
    let v4 = listening.iter().find(|ip| ip.is_ipv4() && !ip.is_unspecified());
    let v6 = listening.iter().find(|ip| ip.is_ipv6() && !ip.is_unspecified());
    v4.into_iter().chain(v6).copied().collect()
}

/// relay-ip (at most one per family, none unspecified) with external-ip (`public` or
/// `public/private`, coturn's forms) applied, IPv4 first.
fn relay_addresses(relay_ips: &[IpAddr], external: &[String]) -> Result<Vec<RelayAddress>, ConfigError> {
    if relay_ips.iter().any(IpAddr::is_unspecified) || relay_ips.is_empty() {
        return Err(ConfigError::UnspecifiedRelayIp);
    }
    for (i, a) in relay_ips.iter().enumerate() {
        if let Some(b) = relay_ips[i + 1..].iter().find(|b| b.is_ipv4() == a.is_ipv4()) {
            return Err(ConfigError::RelayIpFamilyTwice(*a, *b, family_name(*a)));
        }
    }
    let mut addresses: Vec<RelayAddress> = relay_ips.iter().map(|&ip| RelayAddress { ip, advertised: ip }).collect();
    addresses.sort_by_key(|a| a.ip.is_ipv6());
    let mut mapped: Vec<IpAddr> = Vec::new();
    for item in external {
        let item = item.trim();
        let syntax = || ConfigError::ExternalIpSyntax(item.to_owned());
        let (public, private) = match item.split_once('/') {
            Some((public, private)) => {
                let private: IpAddr = private.trim().parse().map_err(|_| syntax())?;
                (public.trim().parse::<IpAddr>().map_err(|_| syntax())?, Some(private))
            }
            None => (item.parse::<IpAddr>().map_err(|_| syntax())?, None),
        };
        if private.is_some_and(|p| p.is_ipv4() != public.is_ipv4()) {
            return Err(ConfigError::ExternalIpMixedFamily(item.to_owned()));
        }
        let target = addresses.iter_mut().find(|a| match private {
            Some(private) => a.ip == private,
            None => a.ip.is_ipv4() == public.is_ipv4(),
        });
        let Some(target) = target else {
            let relay = relay_ips.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ");
            return Err(ConfigError::ExternalIpWithoutRelayIp(item.to_owned(), relay));
        };
        if mapped.contains(&target.ip) {
            return Err(ConfigError::ExternalIpTwice(target.ip));
        }
        mapped.push(target.ip);
        target.advertised = public;
    }
    Ok(addresses)
}

/// Parses coturn-style peer ranges: CIDR, a single address, or `first-last`.
pub fn parse_ranges(items: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    let mut nets = Vec::new();
    for item in items {
        let item = item.trim();
        if let Ok(net) = item.parse::<IpNet>() {
            nets.push(net);
        } else if let Ok(ip) = item.parse::<IpAddr>() {
            nets.push(IpNet::from(ip));
        } else if let Some((a, b)) = item.split_once('-') {
            match (a.trim().parse::<IpAddr>(), b.trim().parse::<IpAddr>()) {
                (Ok(IpAddr::V4(a)), Ok(IpAddr::V4(b))) if a <= b => {
                    nets.extend(ipnet::Ipv4Subnets::new(a, b, 0).map(IpNet::V4));
                }
                (Ok(IpAddr::V6(a)), Ok(IpAddr::V6(b))) if a <= b => {
                    nets.extend(ipnet::Ipv6Subnets::new(a, b, 0).map(IpNet::V6));
                }
                _ => return Err(ConfigError::PeerRange(item.to_owned())),
            }
        } else {
            return Err(ConfigError::PeerRange(item.to_owned()));
        }
    }
    Ok(nets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml_text: &str) -> Settings {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn coturn_names_parse_and_flags_override_the_file() {
        let file = settings(
            r#"
            listening-ip = ["127.0.0.1"]
            listening-port = 3479
            min-port = 20000
            max-port = 20999
            realm = "hospital.example"
            static-auth-secret = "0123456789abcdef0123"
            allowed-peer-ip = ["10.0.0.0/8", "192.168.1.1-192.168.1.6"]
            user-quota = 4
            "#,
        );
        let flags = Settings { listening_port: Some(3480), ..Default::default() };
        let c = RelayConfig::from_settings(flags.over(file)).unwrap();
        assert_eq!(c.listening_port, 3480);
        assert_eq!((c.min_port, c.max_port), (20000, 20999));
        assert_eq!(c.realm, "hospital.example");
        assert_eq!(c.user_quota, 4);
        assert_eq!(c.allowed_peer_ip.len(), 1 + 4, "192.168.1.1-6 is .1/32 .2/31 .4/31 .6/32");
        let shown = c.to_redacted_toml();
        assert!(!shown.contains("0123456789abcdef0123"), "{shown}");
        assert!(shown.contains("<redacted: key-id default>"));
    }

    #[test]
    fn a_realm_too_long_for_the_amplification_bound_is_refused() {
        let with_realm = |realm: &str| {
            let file = settings(&format!("realm = \"{realm}\"\nstatic-auth-secret = \"0123456789abcdef0123\"\n"));
            RelayConfig::from_settings(file)
        };
        let longest = "a".repeat(teletip_turn_proto::server::MAX_REALM_LEN);
        assert_eq!(with_realm(&longest).unwrap().realm, longest);
        let Err(err) = with_realm(&format!("{longest}b")) else { panic!("a 33-byte realm is accepted") };
        assert!(matches!(err, ConfigError::RealmTooLong(33)), "{err}");
        assert!(err.to_string().contains("at most 32"), "{err}");
    }

    #[test]
    fn secret_lines_never_split_a_bare_secret() {
        let keyed = parse_secret_line("2026-11=0123456789abcdef0123", "f:1");
        assert_eq!((keyed.key_id.as_str(), keyed.value.as_str()), ("2026-11", "0123456789abcdef0123"));
        let base64 = parse_secret_line("c2VjcmV0LXNlY3JldC1zZWNyZXQ=", "f:3");
        assert_eq!((base64.key_id.as_str(), base64.value.as_str()), ("f:3", "c2VjcmV0LXNlY3JldC1zZWNyZXQ="));
        let padded = parse_secret_line("QUJDREVGR0hJSktMTU5PUA==", "f:4");
        assert_eq!(padded.key_id, "f:4");
    }

    #[test]
    fn unsafe_or_broken_settings_are_refused_or_flagged() {
        assert!(matches!(RelayConfig::from_settings(Settings::default()), Err(ConfigError::NoSecret)));
        let weak = settings(r#"static-auth-secret = "short""#);
        assert!(matches!(RelayConfig::from_settings(weak), Err(ConfigError::WeakSecret(_))));
        let bad = settings("static-auth-secret = \"0123456789abcdef\"\nallowed-peer-ip = \"nonsense\"");
        assert!(matches!(RelayConfig::from_settings(bad), Err(ConfigError::PeerRange(_))));
        assert!(toml::from_str::<Settings>("no-such-knob = 1").is_err(), "typos are errors");
        assert_eq!(settings("listening-ip = \"127.0.0.2\"").listening_ip.len(), 1, "a single value is a list of one");
        let zero = settings("static-auth-secret = \"0123456789abcdef\"\nunauth-burst = 0");
        assert!(matches!(RelayConfig::from_settings(zero), Err(ConfigError::TooSmall(..))));
        let loud = settings("static-auth-secret = \"0123456789abcdef\"\nallow-loopback-peers = true\nunauth-rate = 0");
        let c = RelayConfig::from_settings(loud).unwrap();
        assert_eq!(c.unsafe_settings().len(), 2);
        assert!(c.effective_allowed_peers().iter().any(|n| n.contains(&"127.0.0.1".parse::<IpAddr>().unwrap())));
    }

    #[test]
    fn relay_ip_and_external_ip_are_per_family_as_coturn_writes_them() {
        const SECRET_LINE: &str = "static-auth-secret = \"0123456789abcdef\"\n";
        let resolve = |toml_text: &str| RelayConfig::from_settings(settings(&format!("{SECRET_LINE}{toml_text}")));
        let addr = |ip: &str, advertised: &str| RelayAddress {
            ip: ip.parse().unwrap(),
            advertised: advertised.parse().unwrap(),
        };
        // By default, the first specific listening IP of each family, IPv4 first.
        let c = resolve("listening-ip = [\"::\", \"::1\", \"0.0.0.0\", \"127.0.0.1\", \"127.0.0.2\"]").unwrap();
        assert_eq!(c.relay_addresses, [addr("127.0.0.1", "127.0.0.1"), addr("::1", "::1")]);
        // external-ip: a bare public address maps its family's relay-ip, public/private the one named.
        let c = resolve(
            "relay-ip = [\"2001:db8::5\", \"10.0.0.5\"]\nexternal-ip = [\"203.0.113.5\", \"2001:db8:ffff::5/2001:db8::5\"]",
        )
        .unwrap();
        assert_eq!(c.relay_addresses, [addr("10.0.0.5", "203.0.113.5"), addr("2001:db8::5", "2001:db8:ffff::5")]);
        assert_eq!(c.public_host, "203.0.113.5");
        let c = resolve("relay-ip = \"10.0.0.5\"\nexternal-ip = \"203.0.113.5/10.0.0.5\"").unwrap();
        assert_eq!(c.relay_addresses, [addr("10.0.0.5", "203.0.113.5")]);
        // What check-config refuses, each with its own message.
        let refused = |toml_text: &str| resolve(toml_text).err().unwrap_or_else(|| panic!("accepted: {toml_text}"));
        assert!(matches!(
            refused("relay-ip = [\"10.0.0.5\", \"10.0.0.6\"]"),
            ConfigError::RelayIpFamilyTwice(_, _, "IPv4")
        ));
        assert!(matches!(refused("relay-ip = [\"::1\", \"::2\"]"), ConfigError::RelayIpFamilyTwice(_, _, "IPv6")));
        assert!(matches!(refused("relay-ip = [\"10.0.0.5\", \"::\"]"), ConfigError::UnspecifiedRelayIp));
        assert!(matches!(refused("relay-ip = \"::1\""), ConfigError::NoIpv4RelayIp(_)), "listening on 127.0.0.1");
        assert!(resolve("listening-ip = \"::1\"").is_ok(), "an IPv6-only relay is consistent");
        assert!(matches!(refused("listening-ip = [\"0.0.0.0\", \"::\"]"), ConfigError::UnspecifiedRelayIp));
        assert!(matches!(
            refused("relay-ip = \"10.0.0.5\"\nexternal-ip = \"nonsense\""),
            ConfigError::ExternalIpSyntax(_)
        ));
        assert!(matches!(
            refused("relay-ip = \"10.0.0.5\"\nexternal-ip = \"2001:db8::5/10.0.0.5\""),
            ConfigError::ExternalIpMixedFamily(_)
        ));
        let Err(err) = resolve("relay-ip = \"10.0.0.5\"\nexternal-ip = \"2001:db8::5\"") else { panic!("accepted") };
        assert!(matches!(err, ConfigError::ExternalIpWithoutRelayIp(..)), "{err}");
        assert!(err.to_string().contains("relay-ip: 10.0.0.5"), "{err}");
        assert!(matches!(
            refused("relay-ip = \"10.0.0.5\"\nexternal-ip = [\"203.0.113.5\", \"203.0.113.6/10.0.0.5\"]"),
            ConfigError::ExternalIpTwice(_)
        ));
        assert!(matches!(
            refused("relay-ip = \"10.0.0.5\"\nexternal-ip = \"203.0.113.5/10.0.0.9\""),
            ConfigError::ExternalIpWithoutRelayIp(..)
        ));
    }

    #[test]
    fn a_nonce_key_file_keys_nonces_alike_on_every_relay_that_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nonce.key");
        let with = |text: &str| {
            std::fs::write(&path, text).unwrap();
            let toml =
                format!("static-auth-secret = \"0123456789abcdef\"\nnonce-key-file = {:?}", path.display().to_string());
            RelayConfig::from_settings(settings(&toml))
        };
        assert!(matches!(with("too-short\n"), Err(ConfigError::WeakNonceKey(_))));
        let a = with("0123456789abcdef0123456789abcdef\n").unwrap().nonce_key.unwrap().key;
        let b = with("  0123456789abcdef0123456789abcdef  ").unwrap().nonce_key.unwrap().key;
        assert_eq!(a, b, "surrounding whitespace does not change the key");
        assert_ne!(a, with("fedcba9876543210fedcba9876543210").unwrap().nonce_key.unwrap().key);
        let without = RelayConfig::from_settings(settings("static-auth-secret = \"0123456789abcdef\"")).unwrap();
        assert!(without.nonce_key.is_none(), "random per start unless configured");
    }

    #[test]
    fn tcp_is_on_tls_needs_both_files_and_its_own_port() {
        let base = "static-auth-secret = \"0123456789abcdef\"\n";
        let c = RelayConfig::from_settings(settings(base)).unwrap();
        assert!(c.tcp && c.tls.is_none(), "TCP by default, TLS only with a certificate");
        assert_eq!((c.tls_listening_port, c.max_tcp_connections, c.max_tcp_connections_per_ip), (5349, 10_000, 128));
        let half = settings(&format!("{base}cert = \"/etc/relay.crt\""));
        assert!(matches!(RelayConfig::from_settings(half), Err(ConfigError::TlsHalf)));
        let both = format!("{base}cert = \"/etc/relay.crt\"\npkey = \"/etc/relay.key\"\ntls-listening-port = 443\n");
        let c = RelayConfig::from_settings(settings(&both)).unwrap();
        assert_eq!(c.tls, Some(TlsFiles { cert: "/etc/relay.crt".into(), key: "/etc/relay.key".into() }));
        assert!(c.to_redacted_toml().contains("tls-listening-port = 443\ncert = \"/etc/relay.crt\"\n"));
        let off = RelayConfig::from_settings(settings(&format!("{both}no-tls = true\nno-tcp = true"))).unwrap();
        assert!(!off.tcp && off.tls.is_none());
        let clash = format!("{base}cert = \"a\"\npkey = \"b\"\ntls-listening-port = 3478\n");
        assert!(matches!(RelayConfig::from_settings(settings(&clash)), Err(ConfigError::TlsPortClash(3478))));
        let alone = RelayConfig::from_settings(settings(&format!("{clash}no-tcp = true"))).unwrap();
        assert!(alone.tls.is_some(), "without plain TCP the TLS listener may take the port");
    }

    #[test]
    fn firewall_settings_parse_default_and_refuse_zero() {
        let c = RelayConfig::from_settings(settings("static-auth-secret = \"0123456789abcdef\"")).unwrap();
        assert_eq!((c.firewall_new_flow_rate, c.firewall_new_flow_burst), (10_000, 20_000));
        assert!(c.metrics_allowed_network.is_empty() && c.firewall_allowed_tcp_port.is_empty());
        let file = settings(
            "static-auth-secret = \"0123456789abcdef\"\nmetrics-allowed-network = \"10.9.0.0/24\"\n\
             firewall-new-flow-rate = 5\nfirewall-allowed-tcp-port = [22]",
        );
        let flags = Settings { metrics_allowed_network: vec!["2001:db8::/64".parse().unwrap()], ..Default::default() };
        let c = RelayConfig::from_settings(flags.over(file)).unwrap();
        assert_eq!(c.metrics_allowed_network, vec!["2001:db8::/64".parse::<IpNet>().unwrap()], "flags replace lists");
        assert_eq!((c.firewall_new_flow_rate, c.firewall_allowed_tcp_port.as_slice()), (5, &[22][..]));
        let shown = c.to_redacted_toml();
        assert!(
            shown.contains("metrics-allowed-network = [\"2001:db8::/64\"]\nfirewall-new-flow-rate = 5\n"),
            "{shown}"
        );
        assert!(toml::from_str::<Settings>("metrics-allowed-network = \"not-a-net\"").is_err());
        for bad in ["firewall-new-flow-rate = 0", "firewall-new-flow-burst = 0", "firewall-allowed-tcp-port = 0"] {
            let s = settings(&format!("static-auth-secret = \"0123456789abcdef\"\n{bad}"));
            assert!(matches!(RelayConfig::from_settings(s), Err(ConfigError::TooSmall(..))), "{bad}");
        }
    }
    fn file_error(text: &str) -> String {
        Settings::from_toml(text.as_bytes()).map(|_| ()).expect_err(text).to_string()
    }

    #[test]
    fn a_bad_value_in_the_file_is_named_with_its_line_in_plain_words() {
        let text = "realm = \"hosp\"\n\nlistening-ip = [\"10.0.0.300\"]\n";
        assert_eq!(file_error(text), "line 3: listening-ip: \"10.0.0.300\" is not an IP address");
        let text = "listening-ip = [\n  \"10.0.0.5\",\n  \"::1\",\n  \"fe80::zz\",\n]\n";
        assert_eq!(file_error(text), "line 4: listening-ip: \"fe80::zz\" is not an IP address");
        assert_eq!(file_error("relay-ip = 5"), "line 1: relay-ip: 5 is not an IP address");
        assert_eq!(
            file_error("alternate-server = \"192.0.2.1\""),
            "line 1: alternate-server: \"192.0.2.1\" is not an address with a port (192.0.2.10:3478, [2001:db8::10]:3478)"
        );
        assert_eq!(
            file_error("firewall-allowed-tcp-port = [22, 70000]"),
            "line 1: firewall-allowed-tcp-port: 70000 is not a port number (0 to 65535, unquoted)"
        );
        assert!(file_error("listening-port = \"x\"").starts_with("line 1: listening-port: invalid type: string \"x\""));
        for text in [
            "listening-ip = [\"10.0.0.300\"]",
            "metrics-allowed-network = \"10.9.0.1\"",
            "no-tls = \"maybe\"",
            "listening-port = 70000",
        ] {
            let message = file_error(text);
            assert!(!message.contains("untagged") && !message.contains("variant"), "{message}");
        }
    }

    #[test]
    fn coturn_spellings_of_booleans_and_names_are_read() {
        for (word, value) in [("yes", true), ("ON", true), ("1", true), ("no", false), ("off", false), ("False", false)]
        {
            let s = settings(&format!("no-tls = \"{word}\"\nallow-loopback-peers = \"{word}\""));
            assert_eq!((s.no_tls, s.allow_loopback_peers), (Some(value), Some(value)), "{word}");
        }
        assert_eq!(settings("prometheus = 0").prometheus, Some(false));
        assert_eq!(settings("prometheus = true").prometheus, Some(true));
        assert_eq!(
            file_error("no-tcp = \"maybe\""),
            "line 1: no-tcp: \"maybe\" is not a yes/no value (true, false, yes, no, on, off, 1 or 0)"
        );
        assert_eq!(settings("relay-threads = 3").workers, Some(3), "coturn's name for workers");
        assert_eq!(parse_bool("Yes"), Ok(true));
        assert!(parse_bool("y").is_err(), "only the listed words");
    }

    #[test]
    fn coturn_syntax_and_unknown_names_are_explained() {
        let bare = file_error("realm = \"hosp\"\nno-tls\n");
        assert!(bare.starts_with("line 2: \"no-tls\" has no value"), "{bare}");
        assert!(bare.contains("`no-tls = true`") && bare.contains("import-coturn"), "{bare}");
        let unquoted = file_error("realm=hosp.example");
        assert!(unquoted.starts_with("line 1: ") && unquoted.contains("`realm = \"hosp.example\"`"), "{unquoted}");
        assert_eq!(
            file_error("\nrelay-ipp = \"10.0.0.5\""),
            "line 2: \"relay-ipp\" is not a setting; did you mean \"relay-ip\"?"
        );
        let coturn_only = file_error("lt-cred-mech = true");
        assert!(
            coturn_only.starts_with("line 1: \"lt-cred-mech\" is not a setting")
                && coturn_only.contains("import-coturn")
        );
        assert_eq!(file_error("realm = \"a\"\nrealm = \"b\"").lines().count(), 1);
        assert!(file_error("realm = \"a\"\nrealm = \"b\"").starts_with("line 2: "));
        let binary = Settings::from_toml(b"realm = \"a\"\nrealm = \"\xff\"\n").unwrap_err();
        assert_eq!(binary.to_string(), "line 2: not UTF-8 text");
        let deep = format!("listening-ip = {}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(file_error(&deep).starts_with("line 1: "), "deep nesting is an error, not a crash");
    }

    #[test]
    fn total_quota_defaults_to_what_the_port_range_holds_and_a_larger_one_is_refused_by_check() {
        let secret = "static-auth-secret = \"0123456789abcdef\"\n";
        let resolve = |text: &str| RelayConfig::from_settings(settings(&format!("{secret}{text}"))).unwrap();
        assert_eq!(resolve("").total_quota, 10_000, "49152-65535 holds the default");
        let narrow = resolve("min-port = 50000\nmax-port = 51999");
        assert_eq!(narrow.total_quota, 2000, "the default shrinks to the range");
        assert!(check::quota_beyond_ports(&narrow).is_none());
        let given = resolve("min-port = 50000\nmax-port = 51999\ntotal-quota = 2001");
        let problem = check::quota_beyond_ports(&given).expect("refused");
        assert!(problem.starts_with("total-quota 2001 is more than the relay port range holds: min-port 50000 to max-port 51999 is 2000 ports"), "{problem}");
        assert!(problem.contains("at most 2000"), "{problem}");
        assert!(
            check::quota_beyond_ports(&resolve("min-port = 50000\nmax-port = 51999\ntotal-quota = 2000")).is_none()
        );
        assert!(
            check::quota_beyond_ports(&resolve("min-port = 50000\nmax-port = 50000\ntotal-quota = 0")).is_none(),
            "0 = the ports are the limit"
        );
    }

    #[test]
    fn addresses_not_on_this_host_are_warned_about() {
        let secret = "static-auth-secret = \"0123456789abcdef\"\n";
        let resolve = |text: &str| RelayConfig::from_settings(settings(&format!("{secret}{text}"))).unwrap();
        let host: Vec<IpAddr> = ["127.0.0.1", "10.0.0.5", "::1"].iter().map(|ip| ip.parse().unwrap()).collect();
        assert!(
            check::host_address_warnings(
                &resolve("listening-ip = [\"10.0.0.5\", \"::\"]\nrelay-ip = \"10.0.0.5\""),
                &host
            )
            .is_empty()
        );
        let off = check::host_address_warnings(
            &resolve("listening-ip = [\"10.0.0.6\", \"0.0.0.0\"]\nrelay-ip = \"10.0.0.7\""),
            &host,
        );
        assert_eq!(off.len(), 2, "{off:?}");
        assert!(off[0].starts_with("listening-ip 10.0.0.6 is not an address of this host"), "{off:?}");
        assert!(off[1].starts_with("relay-ip 10.0.0.7 is not an address of this host"), "{off:?}");
        let nat =
            check::host_address_warnings(&resolve("listening-ip = \"10.0.0.5\"\nexternal-ip = \"203.0.113.5\""), &host);
        assert_eq!(nat.len(), 1, "{nat:?}");
        assert!(nat[0].starts_with("external-ip 203.0.113.5 is not an address of this host: right when a 1:1 NAT maps it to relay-ip 10.0.0.5"), "{nat:?}");
    }

    #[test]
    fn xdp_offload_is_off_by_default_and_check_config_says_what_would_fall_back() {
        let secret = "static-auth-secret = \"0123456789abcdef\"\n";
        let resolve = |text: &str| RelayConfig::from_settings(settings(&format!("{secret}{text}"))).unwrap();
        let default = resolve("");
        assert!(default.xdp_offload.is_empty(), "off unless asked for");
        assert_eq!(default.xdp_mode, crate::xdp::XdpMode::Auto);
        assert!(check::xdp_warnings(&default, &|_| false, Err("not built")).is_empty(), "nothing to say when off");

        let on = resolve(
            "xdp-offload = [\"eth0\", \"veth9\"]\nxdp-mode = \"generic\"\nlistening-ip = [\"10.0.0.5\", \"0.0.0.0\"]",
        );
        assert_eq!(on.xdp_offload, ["eth0", "veth9"]);
        assert_eq!(on.xdp_mode, crate::xdp::XdpMode::Generic);
        let warnings =
            check::xdp_warnings(&on, &|name| name == "eth0", Err("this relay was built without its XDP program"));
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(
            warnings[0].starts_with("xdp-offload is set but this relay was built without its XDP program"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].starts_with("xdp-offload names \"veth9\", which is not a network interface"),
            "{warnings:?}"
        );
        assert!(warnings[2].starts_with("listening-ip 0.0.0.0 is a wildcard"), "{warnings:?}");
        let one = resolve("xdp-offload = \"eth0\"\nlistening-ip = \"10.0.0.5\"");
        assert!(check::xdp_warnings(&one, &|name| name == "eth0", Ok(())).is_empty());
        assert!(toml::from_str::<Settings>("xdp-mode = \"turbo\"").is_err(), "a mode that does not exist");
    }
}
