//! What `check-config` says beyond each setting's own validity: a total-quota the relay port
//! range cannot hold, and addresses that are not this host's. Both take the configuration and
//! the host's addresses as values, so they are tested without a host.

use std::net::IpAddr;

use super::RelayConfig;

/// The allocations one relay-ip can hold: one port each, from min-port to max-port.
pub fn ports_per_relay_ip(min_port: u16, max_port: u16) -> u32 {
    u32::from(max_port.saturating_sub(min_port)) + 1
}

/// A total-quota larger than the port range holds: its explanation, or none. `check-config`
/// refuses it; `run` starts with it as a warning, so that a relay whose file ran before an
/// upgrade still starts (its allocations beyond the range get 508, as they always did).
pub fn quota_beyond_ports(config: &RelayConfig) -> Option<String> {
    let ports = ports_per_relay_ip(config.min_port, config.max_port);
    let quota = config.total_quota;
    if quota == 0 || quota <= ports {
        return None;
    }
    let relay_ips = config.relay_addresses.iter().map(|a| a.ip.to_string()).collect::<Vec<_>>().join(" and ");
    Some(format!(
        "total-quota {quota} is more than the relay port range holds: min-port {} to max-port {} is {ports} ports, \
         each relay-ip ({relay_ips}) has those ports once, and every allocation holds one port of its family \
         (a dual allocation one of each), so after {ports} allocations of one family the next get 508; set \
         total-quota to at most {ports}, or widen min-port..max-port",
        config.min_port, config.max_port
    ))
}

/// Warnings for listening-ip and relay-ip addresses this host does not have (it cannot bind
/// them, unless they arrive later, as a floating address does), and for external-ip, which
/// is right off the host only behind 1:1 NAT.
pub fn host_address_warnings(config: &RelayConfig, host: &[IpAddr]) -> Vec<String> {
    let on_host = |ip: &IpAddr| ip.is_unspecified() || host.contains(ip);
    let mut warnings = Vec::new();
    for ip in config.listening_ips.iter().filter(|ip| !on_host(ip)) {
        warnings.push(format!(
            "listening-ip {ip} is not an address of this host: run cannot listen on it (cannot assign requested \
             address) unless it is added before the relay starts, as a floating address is"
        ));
    }
    for relay in &config.relay_addresses {
        if !on_host(&relay.ip) {
            warnings.push(format!(
                "relay-ip {} is not an address of this host: allocations cannot bind their relayed ports on it unless \
                 it is added before the relay starts",
                relay.ip
            ));
        }
        if relay.advertised != relay.ip && !on_host(&relay.advertised) {
            warnings.push(format!(
                "external-ip {} is not an address of this host: right when a 1:1 NAT maps it to relay-ip {} keeping \
                 port numbers (min-port..max-port); without that NAT, clients are given a relayed address that does \
                 not reach this relay",
                relay.advertised, relay.ip
            ));
        }
    }
    warnings
}

/// Why `check-config` refuses a configuration that parsed and validated.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The daemon loads the certificate at start: a bad one must fail here, not there.
    #[error(transparent)]
    Tls(#[from] crate::net::tls::TlsError),
    #[error("control link: cannot build the TLS configuration: {0}")]
    ControlLink(#[from] teletip_link::tls::TlsError),
    #[error("{0}")]
    QuotaBeyondPorts(String),
}

/// What `check-config` refuses beyond [`RelayConfig::from_settings`]: files the daemon reads at
/// start, and a quota beyond the port range. `import-coturn` checks what it writes with it too.
pub fn refusal(config: &RelayConfig) -> Result<(), Refusal> {
    if let Some(files) = &config.tls {
        crate::net::tls::server_config(&files.cert, &files.key)?;
    }
    if let Some(link) = &config.control_link {
        teletip_link::tls::client_config(&link.cert, &link.key, &link.ca)?;
    }
    match quota_beyond_ports(config) {
        Some(problem) => Err(Refusal::QuotaBeyondPorts(problem)),
        None => Ok(()),
    }
}

/// This host's addresses, from its interfaces.
pub fn host_addresses() -> std::io::Result<Vec<IpAddr>> {
    Ok(if_addrs::get_if_addrs()?.into_iter().map(|interface| interface.ip()).collect())
}

/// What `check-config` says about `xdp-offload`: interfaces this host does not have, a relay
/// built without the program, and UDP listeners whose clients the program cannot serve. Each
/// of these makes the running relay fall back to user space (all of it or those clients), as
/// it then logs; none is an error. `interface_exists` and `built` are the host's and the
/// build's answers, passed in so that this is tested without either.
pub fn xdp_warnings(
    config: &RelayConfig,
    interface_exists: &dyn Fn(&str) -> bool,
    built: Result<(), &str>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if config.xdp_offload.is_empty() {
        return warnings;
    }
    if let Err(reason) = built {
        warnings.push(format!("xdp-offload is set but {reason}: the relay will relay in user space"));
    }
    for name in config.xdp_offload.iter().filter(|n| !interface_exists(n)) {
        warnings.push(format!(
            "xdp-offload names {name:?}, which is not a network interface of this host: the relay will relay in \
             user space unless it exists when the relay starts"
        ));
    }
    for ip in config.listening_ips.iter().filter(|ip| ip.is_unspecified()) {
        warnings.push(format!(
            "listening-ip {ip} is a wildcard: the XDP program answers clients from the address they sent to, which \
             a wildcard listener does not name, so its UDP clients are relayed in user space; listen on the \
             interfaces' addresses instead"
        ));
    }
    warnings
}

/// Whether the host has a network interface of that name.
pub fn interface_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists() && !name.contains('/') && !name.is_empty()
}
