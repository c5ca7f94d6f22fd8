//! The `firewall` subcommand's ruleset: one nftables table of our own, `inet teletip_relay`,
//! derived from the relay's configuration (docs/relay-security.md, "Firewall").
//!
//! The design, in short:
//! - **Our table only.** The batch is `add table; delete table; add table, chain, rules`, which
//!   nft runs as one transaction: re-applying replaces our table atomically (there is never a
//!   moment without it) and never touches another table.
//! - **Policy accept.** The chain must not break the host's other services, so it drops only
//!   traffic addressed to the relay: its ports, and its own non-loopback addresses. An
//!   `accept` here cannot open anything another table drops (every base chain on the hook must
//!   accept), so the host's own firewall stays in charge of everything else.
//! - Building is a pure function of [`RelayConfig`] (unit-tested without nft); only
//!   [`Firewall::apply`] runs `nft`.

mod expr;

use std::net::IpAddr;

use ipnet::IpNet;
use nftables::batch::Batch;
use nftables::expr::{Expression, MetaKey};
use nftables::schema::{Chain, NfListObject, Nftables, Rule, Table};
use nftables::stmt::Statement;
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use thiserror::Error;

use crate::config::RelayConfig;
use expr::Family;

/// Our table, in the `inet` family so one chain sees IPv4 and IPv6.
pub const TABLE: &str = "teletip_relay";
/// Our only chain, hooked at input.
pub const CHAIN: &str = "input";
/// Seconds an idle source stays in a new-flow meter.
const METER_TIMEOUT_S: u32 = 60;

#[derive(Debug, Error)]
pub enum FirewallError {
    #[error(
        "metrics-allowed-network {net} can never reach the metrics port: prometheus-address {addr} is another IP family"
    )]
    MetricsNetworkFamily { net: IpNet, addr: IpAddr },
    #[error("nft could not load the ruleset (it needs the nftables package, and root or CAP_NET_ADMIN)")]
    Apply(#[source] nftables::helper::NftablesError),
}

/// The ruleset for one configuration, with a one-line description of each rule (also the
/// rule's nft comment, so `nft list table inet teletip_relay` explains itself).
pub struct Firewall {
    pub ruleset: Nftables<'static>,
    pub rules: Vec<String>,
    /// Things the operator should know about this configuration's ruleset.
    pub warnings: Vec<String>,
}

impl Firewall {
    pub fn build(config: &RelayConfig) -> Result<Firewall, FirewallError> {
        let mut rules = Rules::default();
        let mut warnings = Vec::new();

        rules.add(
            "loopback: the host's own traffic, including local metrics scrapes",
            vec![expr::eq(expr::meta(MetaKey::Iif), Expression::String("lo".into())), expr::accept()],
        );
        // Replies to what the relay sent (peers answering relayed packets, ICMP errors about
        // them) and flows a rule below already let in.
        rules.add(
            "replies and flows already accepted",
            vec![expr::ct_state(&["established", "related"]), expr::accept()],
        );
        // The catch-all drop below would otherwise cut ping, path MTU discovery and, for IPv6,
        // neighbour discovery (which would make an IPv6 relay address unreachable).
        rules.add(
            "ICMP errors and ping",
            vec![
                icmp_types("icmp", &["echo-request", "destination-unreachable", "time-exceeded", "parameter-problem"]),
                expr::accept(),
            ],
        );
        rules.add(
            "ICMPv6 errors, ping and neighbour discovery",
            vec![
                icmp_types(
                    "icmpv6",
                    &[
                        "echo-request",
                        "destination-unreachable",
                        "packet-too-big",
                        "time-exceeded",
                        "parameter-problem",
                        "nd-router-advert",
                        "nd-neighbor-solicit",
                        "nd-neighbor-advert",
                    ],
                ),
                expr::accept(),
            ],
        );

        listener_rules(&mut rules, config);

        // Relayed sockets bind relay-ip only (one per family), so the range is open on those
        // addresses only. Peers are not rate-limited here: the relay drops whatever no
        // permission covers, at no cost.
        for relay in &config.relay_addresses {
            let family = Family::of(relay.ip);
            rules.add(
                &format!("relayed ports udp/{}-{} ({})", config.min_port, config.max_port, family.label()),
                vec![
                    expr::eq(family.daddr(), expr::addr(relay.ip)),
                    expr::eq(expr::payload("udp", "dport"), expr::port_range(config.min_port, config.max_port)),
                    expr::accept(),
                ],
            );
        }

        if let Some(metrics) = config.prometheus {
            metrics_rules(&mut rules, &mut warnings, metrics.ip(), metrics.port(), &config.metrics_allowed_network)?;
        }

        let mut dropped_any = false;
        for family in [Family::V4, Family::V6] {
            let addrs = own_addresses(config, family);
            if addrs.is_empty() {
                continue;
            }
            dropped_any = true;
            let daddr = || expr::one_of(family.daddr(), addrs.iter().copied().map(expr::addr).collect());
            if !config.firewall_allowed_tcp_port.is_empty() {
                let ports = config.firewall_allowed_tcp_port.iter().copied().map(expr::port).collect();
                rules.add(
                    &format!("firewall-allowed-tcp-port ({})", family.label()),
                    vec![daddr(), expr::one_of(expr::payload("tcp", "dport"), ports), expr::accept()],
                );
            }
            rules.add(
                &format!("anything else to the relay's own addresses ({})", family.label()),
                vec![daddr(), expr::counter(), expr::drop()],
            );
        }
        if !dropped_any {
            warnings.push(
                "the relay has no non-loopback address of its own (listening-ip and relay-ip are loopback or \
                 wildcards): only the relay's ports are filtered, nothing else is dropped"
                    .into(),
            );
        }

        Ok(Firewall { ruleset: rules.to_ruleset(), rules: rules.comments, warnings })
    }

    /// The ruleset as nft JSON, indented for review (`nft -j -c -f FILE` reads it).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.ruleset).expect("the nftables types always serialise")
    }

    /// Loads the ruleset with `nft -j -f -` (the crate's helper). nft's own error message goes
    /// straight to stderr.
    pub fn apply(&self) -> Result<(), FirewallError> {
        nftables::helper::apply_ruleset(&self.ruleset).map_err(FirewallError::Apply)
    }
}

/// The TURN listeners (UDP, and TCP and TLS when served), per family: new flows over the rate
/// are dropped, the rest accepted. A wildcard listener (0.0.0.0 or ::) receives on every local
/// address of its family, so its rules name no address. IPv6 listeners are IPV6_V6ONLY, so `::`
/// means IPv6 only.
fn listener_rules(rules: &mut Rules, config: &RelayConfig) {
    let (rate, burst) = (config.firewall_new_flow_rate, config.firewall_new_flow_burst);
    let mut listeners = vec![("udp", config.listening_port, "TURN listener")];
    if config.tcp {
        listeners.push(("tcp", config.listening_port, "TURN listener"));
    }
    if config.tls.is_some() {
        listeners.push(("tcp", config.tls_listening_port, "TURN over TLS listener"));
    }
    for family in [Family::V4, Family::V6] {
        let mut ips: Vec<IpAddr> =
            config.listening_ips.iter().copied().filter(|ip| Family::of(*ip) == family).collect();
        ips.sort();
        ips.dedup();
        if ips.is_empty() {
            continue;
        }
        let scope = if ips.iter().any(IpAddr::is_unspecified) {
            family.only()
        } else {
            expr::one_of(family.daddr(), ips.into_iter().map(expr::addr).collect())
        };
        for &(protocol, port, name) in &listeners {
            let dport = || expr::eq(expr::payload(protocol, "dport"), expr::port(port));
            // A UDP flow stays "new" until the relay answers it, so a source spraying unanswered
            // datagrams or fresh source ports is counted packet by packet; a TCP flow is new for
            // its SYN, so the same meter counts connection attempts. UDP flows and TCP
            // connections each have their own meter.
            let v = if family == Family::V4 { "v4" } else { "v6" };
            let (kind, meter) = match protocol {
                "udp" => ("flows", format!("new_flows_{v}")),
                _ => ("connections", format!("new_connections_{port}_{v}")),
            };
            let (key, unit) = match family {
                Family::V4 => (family.saddr(), "address"),
                Family::V6 => (expr::ipv6_slash64(family.saddr()), "/64"),
            };
            rules.add(
                &format!(
                    "{name} {protocol}/{port}: new {kind} over {rate}/s burst {burst} per source {unit} ({})",
                    family.label()
                ),
                vec![
                    scope.clone(),
                    dport(),
                    expr::ct_state(&["new"]),
                    expr::meter_over(meter, key, METER_TIMEOUT_S, rate, burst),
                    expr::counter(),
                    expr::drop(),
                ],
            );
            rules.add(
                &format!("{name} {protocol}/{port} ({})", family.label()),
                vec![scope.clone(), dport(), expr::accept()],
            );
        }
    }
}

/// The metrics port: open to `metrics-allowed-network` (loopback is accepted by the first
/// rule), dropped for everyone else, on the address it listens on.
fn metrics_rules(
    rules: &mut Rules,
    warnings: &mut Vec<String>,
    ip: IpAddr,
    port: u16,
    allowed: &[IpNet],
) -> Result<(), FirewallError> {
    // The exporter's listener is a plain dual-stack socket: `::` also accepts IPv4.
    let families: &[Family] = match ip {
        IpAddr::V4(_) => &[Family::V4],
        IpAddr::V6(v6) if v6.is_unspecified() => &[Family::V4, Family::V6],
        IpAddr::V6(_) => &[Family::V6],
    };
    if let Some(net) = allowed.iter().find(|n| !families.contains(&Family::of(n.addr()))) {
        return Err(FirewallError::MetricsNetworkFamily { net: *net, addr: ip });
    }
    if ip.is_loopback() && !allowed.is_empty() {
        warnings.push(format!(
            "metrics-allowed-network is set but prometheus-address is {ip}: only this host can reach the \
             metrics port; set prometheus-address to an address the monitoring network reaches"
        ));
    }
    let dport = || expr::eq(expr::payload("tcp", "dport"), expr::port(port));
    for &family in families {
        let scope = || if ip.is_unspecified() { family.only() } else { expr::eq(family.daddr(), expr::addr(ip)) };
        // Merged (10.0.0.0/8 swallows 10.1.0.0/16), so the listing shows what is really open.
        let nets: Vec<IpNet> = allowed.iter().copied().filter(|n| Family::of(n.addr()) == family).collect();
        let nets: Vec<Expression<'static>> = IpNet::aggregate(&nets).into_iter().map(expr::net).collect();
        if !nets.is_empty() {
            rules.add(
                &format!("metrics tcp/{port} from metrics-allowed-network ({})", family.label()),
                vec![scope(), dport(), expr::one_of(family.saddr(), nets), expr::accept()],
            );
        }
        rules.add(
            &format!("metrics tcp/{port} from anywhere else ({})", family.label()),
            vec![scope(), dport(), expr::counter(), expr::drop()],
        );
    }
    Ok(())
}

/// The relay's own addresses of one family, for the catch-all drop: specific non-loopback
/// listening addresses and relay-ip. Loopback needs no rule (the kernel never routes outside
/// traffic to it), and a wildcard listener is left out on purpose: it would make the catch-all
/// drop everything to every address of the host, which is the host firewall's decision.
fn own_addresses(config: &RelayConfig, family: Family) -> Vec<IpAddr> {
    let mut addrs: Vec<IpAddr> = config
        .listening_ips
        .iter()
        .copied()
        .chain(config.relay_addresses.iter().map(|a| a.ip))
        .filter(|ip| Family::of(*ip) == family && !ip.is_loopback() && !ip.is_unspecified())
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs
}

fn icmp_types(protocol: &'static str, types: &[&'static str]) -> Statement<'static> {
    expr::one_of(expr::payload(protocol, "type"), types.iter().map(|t| Expression::String((*t).into())).collect())
}

/// Rules in chain order, each with its comment.
#[derive(Default)]
struct Rules {
    comments: Vec<String>,
    exprs: Vec<Vec<Statement<'static>>>,
}

impl Rules {
    fn add(&mut self, comment: &str, expr: Vec<Statement<'static>>) {
        self.comments.push(comment.to_owned());
        self.exprs.push(expr);
    }

    fn to_ruleset(&self) -> Nftables<'static> {
        let table = || Table { family: NfFamily::INet, name: TABLE.into(), handle: None };
        let mut batch = Batch::new();
        // `add` first so that `delete` cannot fail on a host that never had our table; all of
        // it is one nft transaction, so the old table is replaced atomically.
        batch.add(NfListObject::Table(table()));
        batch.delete(NfListObject::Table(table()));
        batch.add(NfListObject::Table(table()));
        batch.add(NfListObject::Chain(Chain {
            family: NfFamily::INet,
            table: TABLE.into(),
            name: CHAIN.into(),
            _type: Some(NfChainType::Filter),
            hook: Some(NfHook::Input),
            prio: Some(0), // "filter"
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        }));
        for (comment, expr) in self.comments.iter().zip(&self.exprs) {
            batch.add(NfListObject::Rule(Rule {
                family: NfFamily::INet,
                table: TABLE.into(),
                chain: CHAIN.into(),
                expr: expr.clone().into(),
                handle: None,
                index: None,
                comment: Some(comment.clone().into()),
            }));
        }
        batch.to_nftables()
    }
}

#[cfg(test)]
mod tests;
