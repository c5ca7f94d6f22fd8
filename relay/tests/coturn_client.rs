//! coturn's own test client, `turnutils_uclient`, against teletip-relay with the TURN REST
//! secret: client-to-client, ten clients, in channel mode and with Send indications. The test
//! reads uclient's own summary and requires zero lost packets.

mod support;

use std::process::Command;
use support::*;

fn run_uclient(relay: &Relay, extra: &[&str]) -> String {
    let port = relay.addr.port().to_string();
    let mut args = vec![
        "-y",
        "-W",
        SECRET,
        "-u",
        "uclient-session",
        "-p",
        &port,
        "-n",
        "50",
        "-m",
        "10",
        "-l",
        "160",
        "-z",
        "5",
        "-L",
        "127.0.0.1",
        "-e",
        "127.0.0.1",
    ];
    args.extend_from_slice(extra);
    args.push("127.0.0.1");
    let out = Command::new("timeout")
        .arg("120")
        .arg("turnutils_uclient")
        .args(&args)
        .output()
        .expect("run turnutils_uclient");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "uclient failed:\n{text}");
    text
}

fn check(extra: &[&str], mode: &str) {
    let relay = Relay::start("127.0.0.1", &["--allow-loopback-peers", "true", "--user-quota", "0", "--max-bps", "0"]);
    let text = run_uclient(&relay, extra);
    let (sent, received, lost) = uclient_summary(&text);
    println!("uclient {mode}: sent {sent}, received {received}, lost {lost}");
    assert!(sent >= 500, "at least 10 clients x 50 messages, got {sent}");
    assert_eq!(received, sent);
    assert_eq!(lost, 0);
    assert!(!text.contains("error"), "{text}");
    let relayed = relay.wait_metric("teletip_relayed_packets_total", "client_to_peer", sent as f64);
    assert!(relayed >= sent as f64, "the relay counted {relayed}");
}

#[test]
fn uclient_channel_mode_ten_clients_lose_nothing() {
    if have_tool("turnutils_uclient", "uclient_channel_mode") {
        check(&[], "channel");
    }
}

#[test]
fn uclient_send_indications_ten_clients_lose_nothing() {
    if have_tool("turnutils_uclient", "uclient_send_indications") {
        check(&["-s"], "send");
    }
}
