//! Who the client is when the control plane stands behind reverse proxies. The TCP peer is a
//! proxy then, and every user would share its rate-limit bucket, its login throttle and its
//! address in the audit trail. A proxy names the client in `X-Forwarded-For` (or the standard
//! `Forwarded: for=`), but anybody can send those headers, so they count only when the peer is
//! one of the `trusted-proxies`: the client is then the right-most address in the header that is
//! not itself a trusted proxy (each proxy appends the address it saw; entries to the left of
//! that one were written by the client and prove nothing).
//!
//! `X-Forwarded-For` is read when present (what nginx and HAProxy append), else `Forwarded`.
//! An entry that is not an address (`unknown`, an obfuscated `_node` identifier) stops the
//! search: the client is then the last trusted hop that could name an address, i.e. the
//! address the proxies vouched for, never a guess.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

/// The trusted proxies' networks.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

/// The address of the TCP peer when it differs from the client's (the proxy), kept beside the
/// client address for whoever needs the hop itself.
#[derive(Debug, Clone, Copy)]
pub struct ProxyPeer(pub SocketAddr);

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies(networks)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client's address for a request from `peer` carrying `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops = forwarded_for(headers);
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) => {
                    client = canonical(*ip);
                    if !self.trusts(client) {
                        break;
                    }
                }
                None => break,
            }
        }
        client
    }

    /// Whether a request from `peer` came to the proxy over HTTPS (`X-Forwarded-Proto: https`
    /// or `Forwarded: proto=https` from a trusted proxy).
    pub fn forwarded_https(&self, peer: IpAddr, headers: &HeaderMap) -> bool {
        if !self.trusts(peer) {
            return false;
        }
        let xfp = headers.get_all("x-forwarded-proto").iter().filter_map(|v| v.to_str().ok()).next_back();
        if let Some(proto) = xfp {
            return proto.rsplit(',').next().is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
        }
        forwarded_pairs(headers, "proto").last().is_some_and(|p| p.eq_ignore_ascii_case("https"))
    }
}

/// IPv4-mapped IPv6 addresses as IPv4, so that one range covers both spellings of a peer.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The hops of `X-Forwarded-For` (every header line, in order), else of `Forwarded`'s `for=`;
/// `None` for an entry that is not an address.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let xff: Vec<&str> = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    if !xff.is_empty() {
        return xff.iter().flat_map(|line| line.split(',')).map(|entry| parse_node(entry.trim())).collect();
    }
    forwarded_pairs(headers, "for").iter().map(|node| parse_node(node)).collect()
}

/// The values of `key` in the `Forwarded` header (RFC 7239), element by element, unquoted.
fn forwarded_pairs(headers: &HeaderMap, key: &str) -> Vec<String> {
    headers
        .get_all(axum::http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case(key).then(|| v.trim().trim_matches('"').to_string())
            })
        })
        .collect()
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]:4711`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    node.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).and_then(|ip| ip.parse().ok())
}

/// Middleware, outermost: replaces the connection's peer address (`ConnectInfo`) by the
/// client's, so that everything after it (rate limits, the login throttle, the audit trail,
/// the signaling handshake) sees the client, and keeps the proxy's address as `ProxyPeer`.
pub async fn resolve(
    State(trusted): State<std::sync::Arc<TrustedProxies>>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let client = trusted.client(peer.ip(), request.headers());
        if client != peer.ip() {
            request.extensions_mut().insert(ProxyPeer(peer));
            request.extensions_mut().insert(ConnectInfo(SocketAddr::new(client, 0)));
        }
        if trusted.forwarded_https(peer.ip(), request.headers()) {
            request.extensions_mut().insert(super::headers::OverHttps);
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1/32".parse().unwrap()])
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let h = headers(&[("x-forwarded-for", "203.0.113.9"), ("forwarded", "for=203.0.113.8")]);
        assert_eq!(proxies().client(ip("198.51.100.7"), &h), ip("198.51.100.7"));
        assert!(!proxies().forwarded_https(ip("198.51.100.7"), &headers(&[("x-forwarded-proto", "https")])));
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.2.3")]);
        assert_eq!(proxies().client(ip("10.0.0.1"), &h), ip("203.0.113.9"));
        // Several header lines read as one list, in order.
        let h = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(proxies().client(ip("127.0.0.1"), &h), ip("203.0.113.9"));
        // Only trusted hops: the left-most of them.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.2.3")]);
        assert_eq!(proxies().client(ip("10.0.0.1"), &h), ip("10.9.9.9"));
    }

    #[test]
    fn forwarded_is_read_when_there_is_no_x_forwarded_for() {
        let h = headers(&[("forwarded", r#"for=6.6.6.6, for="[2001:db8::7]:4711";proto=https, for=10.0.0.2"#)]);
        assert_eq!(proxies().client(ip("10.0.0.1"), &h), ip("2001:db8::7"));
        let h = headers(&[("forwarded", "for=198.51.100.1:80;proto=https")]);
        assert!(proxies().forwarded_https(ip("10.0.0.1"), &h));
        assert_eq!(proxies().client(ip("10.0.0.1"), &h), ip("198.51.100.1"));
    }

    #[test]
    fn an_entry_that_is_no_address_stops_at_the_last_vouched_hop() {
        let h = headers(&[("x-forwarded-for", "203.0.113.9, unknown")]);
        assert_eq!(proxies().client(ip("10.0.0.1"), &h), ip("10.0.0.1"));
        let h = headers(&[("forwarded", "for=_hidden")]);
        assert_eq!(proxies().client(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }

    #[test]
    fn mapped_addresses_match_ipv4_ranges() {
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(proxies().client(ip("::ffff:10.0.0.1"), &h), ip("203.0.113.9"));
        assert_eq!(TrustedProxies::default().client(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }
}
