//! The ruleset's shape, checked on its JSON without nft (relay/tests/firewall.rs loads it into
//! a real kernel).

use serde_json::Value;

use super::*;
use crate::config::Settings;

fn config(extra: &str) -> RelayConfig {
    let text = format!("static-auth-secret = \"0123456789abcdef0123\"\n{extra}");
    RelayConfig::from_settings(toml::from_str::<Settings>(&text).unwrap()).unwrap()
}

fn commands(fw: &Firewall) -> Vec<Value> {
    let json: Value = serde_json::from_str(&fw.to_json()).unwrap();
    json["nftables"].as_array().unwrap().clone()
}

/// (comment, the rule's statements as compact JSON with keys sorted), in chain order.
fn rules(fw: &Firewall) -> Vec<(String, String)> {
    commands(fw)
        .iter()
        .filter_map(|c| c["add"].get("rule"))
        .map(|r| (r["comment"].as_str().unwrap().to_owned(), r["expr"].to_string()))
        .collect()
}

fn rule<'a>(rules: &'a [(String, String)], comment_start: &str) -> Option<&'a str> {
    rules.iter().find(|(c, _)| c.starts_with(comment_start)).map(|(_, e)| e.as_str())
}

fn position(rules: &[(String, String)], comment_start: &str) -> usize {
    rules.iter().position(|(c, _)| c.starts_with(comment_start)).unwrap_or_else(|| panic!("no rule {comment_start:?}"))
}

const EDGE: &str = r#"
listening-ip = ["10.20.30.40"]
listening-port = 3479
relay-ip = "10.20.30.40"
min-port = 50000
max-port = 51999
prometheus-address = "10.20.30.40"
prometheus-port = 9641
firewall-new-flow-rate = 7
firewall-new-flow-burst = 30
"#;

#[test]
fn replaces_only_its_own_table_in_one_batch() {
    let fw = Firewall::build(&config(EDGE)).unwrap();
    let cmds = commands(&fw);
    let table = serde_json::json!({"family": "inet", "name": "teletip_relay"});
    assert_eq!(cmds[0], serde_json::json!({"add": {"table": table}}));
    assert_eq!(cmds[1], serde_json::json!({"delete": {"table": table}}));
    assert_eq!(cmds[2], serde_json::json!({"add": {"table": table}}));
    let chain = &cmds[3]["add"]["chain"];
    assert_eq!(
        (&chain["name"], &chain["type"], &chain["hook"], &chain["prio"], &chain["policy"]),
        (&Value::from("input"), &Value::from("filter"), &Value::from("input"), &Value::from(0), &Value::from("accept"))
    );
    for cmd in &cmds {
        let (verb, body) = cmd.as_object().unwrap().iter().next().unwrap();
        assert!(verb == "add" || verb == "delete", "only add/delete, never flush: {cmd}");
        let (_, obj) = body.as_object().unwrap().iter().next().unwrap();
        let table = obj.get("table").unwrap_or(&obj["name"]);
        assert_eq!((&obj["family"], table), (&Value::from("inet"), &Value::from("teletip_relay")), "{cmd}");
    }
    assert_eq!(fw.rules.len(), cmds.len() - 4, "one description per rule");
    assert!(fw.rules.iter().all(|c| c.len() <= 128), "nft rule comments are at most 128 bytes");
}

#[test]
fn listener_and_relay_range_follow_the_config() {
    let fw = Firewall::build(&config(EDGE)).unwrap();
    let rules = rules(&fw);
    let limit = rule(&rules, "TURN listener udp/3479: new flows over 7/s burst 30 per source address (IPv4)").unwrap();
    assert!(limit.contains(r#""right":"10.20.30.40""#) && limit.contains(r#""right":3479"#), "{limit}");
    assert!(limit.contains(r#""rate":7"#) && limit.contains(r#""burst":30"#) && limit.contains(r#""inv":true"#));
    assert!(limit.contains(r#""right":"new""#) && limit.ends_with(r#"{"counter":null},{"drop":null}]"#), "{limit}");
    assert!(position(&rules, "TURN listener udp/3479: new") < position(&rules, "TURN listener udp/3479 (IPv4)"));
    assert!(rule(&rules, "TURN listener udp/3479: new flows over 7/s burst 30 per source /64").is_none(), "no IPv6");
    let relayed = rule(&rules, "relayed ports udp/50000-51999").unwrap();
    assert!(relayed.contains(r#""right":{"range":[50000,51999]}"#), "{relayed}");
    assert!(relayed.contains(r#""right":"10.20.30.40""#), "{relayed}");

    let one_port = Firewall::build(&config("min-port = 40000\nmax-port = 40000")).unwrap();
    let one_port = self::rules(&one_port);
    let relayed = rule(&one_port, "relayed ports udp/40000-40000").unwrap();
    assert!(relayed.contains(r#""right":40000"#) && !relayed.contains("range"), "{relayed}");
}

#[test]
fn metrics_are_open_to_loopback_and_the_allowed_networks_only() {
    let closed = rules(&Firewall::build(&config(EDGE)).unwrap());
    assert!(rule(&closed, "metrics tcp/9641 from metrics-allowed-network").is_none());
    let drop = rule(&closed, "metrics tcp/9641 from anywhere else (IPv4)").unwrap();
    assert!(drop.contains(r#""right":"10.20.30.40""#) && drop.ends_with(r#"{"drop":null}]"#), "{drop}");
    assert_eq!(position(&closed, "loopback"), 0, "loopback is accepted before anything is dropped");

    let open = rules(
        &Firewall::build(&config(&format!("{EDGE}metrics-allowed-network = [\"10.9.0.0/24\", \"192.0.2.7/32\"]")))
            .unwrap(),
    );
    let accept = rule(&open, "metrics tcp/9641 from metrics-allowed-network (IPv4)").unwrap();
    assert!(
        accept
            .contains(r#"{"set":[{"prefix":{"addr":"10.9.0.0","len":24}},{"prefix":{"addr":"192.0.2.7","len":32}}]}"#),
        "{accept}"
    );
    assert!(position(&open, "metrics tcp/9641 from metrics") < position(&open, "metrics tcp/9641 from anywhere"));

    let merged = rules(
        &Firewall::build(&config(&format!("{EDGE}metrics-allowed-network = [\"10.1.0.0/16\", \"10.0.0.0/8\"]")))
            .unwrap(),
    );
    let accept = rule(&merged, "metrics tcp/9641 from metrics-allowed-network (IPv4)").unwrap();
    assert!(accept.contains(r#""right":{"prefix":{"addr":"10.0.0.0","len":8}}"#), "overlaps are merged: {accept}");

    let off = rules(&Firewall::build(&config(&format!("{EDGE}prometheus = false"))).unwrap());
    assert!(!off.iter().any(|(c, _)| c.starts_with("metrics")), "no metrics listener, no metrics rule");
}

#[test]
fn metrics_on_a_dual_stack_wildcard_get_both_families_and_mismatches_are_refused() {
    let both = rules(
        &Firewall::build(&config(
            "listening-ip = \"10.0.0.5\"\nprometheus-address = \"::\"\nmetrics-allowed-network = [\"10.9.0.0/24\", \"2001:db8::/64\"]",
        ))
        .unwrap(),
    );
    for family in ["IPv4", "IPv6"] {
        let accept = rule(&both, &format!("metrics tcp/9641 from metrics-allowed-network ({family})")).unwrap();
        assert!(accept.contains("nfproto"), "a wildcard names no address: {accept}");
        assert!(rule(&both, &format!("metrics tcp/9641 from anywhere else ({family})")).is_some());
    }
    let mismatch = config(
        "listening-ip = \"10.0.0.5\"\nprometheus-address = \"10.0.0.5\"\nmetrics-allowed-network = \"2001:db8::/64\"",
    );
    assert!(matches!(Firewall::build(&mismatch), Err(FirewallError::MetricsNetworkFamily { .. })));
}

#[test]
fn wildcard_listeners_name_no_address_and_only_own_addresses_are_dropped() {
    let fw = Firewall::build(&config(
        "listening-ip = [\"0.0.0.0\", \"::\"]\nrelay-ip = \"10.0.0.5\"\nfirewall-allowed-tcp-port = [22, 2222]",
    ))
    .unwrap();
    let rules = rules(&fw);
    let v4 = rule(&rules, "TURN listener udp/3478 (IPv4)").unwrap();
    assert!(v4.contains(r#""right":"ipv4""#) && !v4.contains("daddr"), "{v4}");
    let v6 = rule(&rules, "TURN listener udp/3478: new flows over 10000/s burst 20000 per source /64 (IPv6)").unwrap();
    assert!(v6.contains(r#"{"&":[{"payload":{"field":"saddr","protocol":"ip6"}},"ffff:ffff:ffff:ffff::"]}"#), "{v6}");
    assert!(v6.contains(r#""timeout":60"#), "idle sources leave the meter: {v6}");
    let rest = rule(&rules, "anything else to the relay's own addresses (IPv4)").unwrap();
    assert!(rest.contains(r#""right":"10.0.0.5""#), "{rest}");
    assert!(rule(&rules, "anything else to the relay's own addresses (IPv6)").is_none(), ":: is not an own address");
    let ssh = rule(&rules, "firewall-allowed-tcp-port (IPv4)").unwrap();
    assert!(ssh.contains(r#"{"set":[22,2222]}"#), "{ssh}");
    assert!(position(&rules, "firewall-allowed-tcp-port") < position(&rules, "anything else"));
    assert!(fw.warnings.is_empty(), "{:?}", fw.warnings);
}

#[test]
fn a_loopback_relay_drops_nothing_else_and_says_so() {
    let fw = Firewall::build(&config("metrics-allowed-network = \"10.9.0.0/24\"")).unwrap();
    let rules = rules(&fw);
    assert!(!rules.iter().any(|(c, _)| c.starts_with("anything else")));
    assert_eq!(fw.warnings.len(), 2, "{:?}", fw.warnings);
    assert!(fw.warnings.iter().any(|w| w.contains("no non-loopback address")));
    assert!(fw.warnings.iter().any(|w| w.contains("only this host can reach the metrics port")));
}

#[test]
fn ipv6_relay_addresses_keep_neighbour_discovery() {
    let fw = Firewall::build(&config("listening-ip = \"2001:db8::1\"\nprometheus = false")).unwrap();
    let rules = rules(&fw);
    let nd = position(&rules, "ICMPv6 errors, ping and neighbour discovery");
    assert!(rules[nd].1.contains("nd-neighbor-solicit") && rules[nd].1.contains("nd-neighbor-advert"));
    assert!(nd < position(&rules, "anything else to the relay's own addresses (IPv6)"));
    let listener = rule(&rules, "TURN listener udp/3478 (IPv6)").unwrap();
    assert!(
        listener.contains(r#"{"left":{"payload":{"field":"daddr","protocol":"ip6"}},"op":"==","right":"2001:db8::1"}"#),
        "{listener}"
    );
}
