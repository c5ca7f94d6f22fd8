//! `check-config` as an operator runs it: a bad value named with its line in plain words,
//! addresses not on this host warned about, a total-quota the port range cannot hold refused.

use std::process::{Command, Output};

const SECRET_LINE: &str = "static-auth-secret = \"0123456789abcdef0123\"\n";

fn check_config(toml_text: &str, flags: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, toml_text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_teletip-relay"))
        .arg("-c")
        .arg(&path)
        .args(flags)
        .arg("check-config")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bad_address_is_refused_with_its_line_and_in_plain_words() {
    let out = check_config(&format!("{SECRET_LINE}realm = \"hosp\"\nlisting = 1\n"), &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("line 3: \"listing\" is not a setting"), "{}", stderr(&out));
    let out = check_config(&format!("{SECRET_LINE}\nlistening-ip = [\"10.0.0.300\"]\n"), &[]);
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.trim_end().ends_with("relay.toml: line 3: listening-ip: \"10.0.0.300\" is not an IP address"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "one line, no serde internals: {text}");
    let out = check_config(&format!("{SECRET_LINE}no-tls\n"), &[]);
    assert!(stderr(&out).contains("line 2: \"no-tls\" has no value"), "{}", stderr(&out));
}

#[test]
fn listening_and_relay_addresses_not_on_this_host_are_warned_about() {
    // 192.0.2.0/24 is documentation space: no host has it.
    let out =
        check_config(&format!("{SECRET_LINE}listening-ip = \"192.0.2.77\"\nexternal-ip = \"198.51.100.7\"\n"), &[]);
    let text = stderr(&out);
    assert!(out.status.success(), "warnings, not errors: {text}");
    assert!(text.contains("warning: listening-ip 192.0.2.77 is not an address of this host"), "{text}");
    assert!(text.contains("warning: relay-ip 192.0.2.77 is not an address of this host"), "{text}");
    assert!(
        text.contains("warning: external-ip 198.51.100.7 is not an address of this host: right when a 1:1 NAT"),
        "{text}"
    );
    let here = check_config(&format!("{SECRET_LINE}listening-ip = [\"127.0.0.1\", \"::\"]\n"), &[]);
    assert!(here.status.success());
    assert!(!stderr(&here).contains("not an address of this host"), "{}", stderr(&here));
}

#[test]
fn a_total_quota_beyond_the_port_range_is_refused_and_the_default_fits_the_range() {
    let range = format!("{SECRET_LINE}min-port = 50000\nmax-port = 50999\n");
    let out = check_config(&format!("{range}total-quota = 1001\n"), &[]);
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains(
            "total-quota 1001 is more than the relay port range holds: min-port 50000 to max-port 50999 is 1000 ports"
        ),
        "{text}"
    );
    assert!(text.contains("set total-quota to at most 1000"), "{text}");
    let fits = check_config(&range, &["--total-quota", "1000"]);
    assert!(fits.status.success(), "{}", stderr(&fits));
    let default = check_config(&range, &[]);
    assert!(
        String::from_utf8_lossy(&default.stdout).contains("total-quota = 1000\n"),
        "the default shrinks to the range"
    );
}

#[test]
fn booleans_take_coturn_spellings_and_bare_flags_on_the_command_line_and_relay_threads_is_workers() {
    let out = check_config(SECRET_LINE, &["--no-tcp", "yes", "--prometheus", "off", "--relay-threads", "3"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout.contains("no-tcp = true\n") && stdout.contains("prometheus = false\n"), "{stdout}");
    assert!(stdout.contains("workers = 3\n"), "{stdout}");
    // coturn's bare flags: true, up to the next flag.
    let out = check_config(SECRET_LINE, &["--no-tcp", "--allow-loopback-peers", "--realm", "hosp"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("no-tcp = true\n") && stdout.contains("allow-loopback-peers = true\n"), "{stdout}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("relay.toml"), SECRET_LINE).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_teletip-relay"))
        .arg("-c")
        .arg(dir.path().join("relay.toml"))
        .env("TELETIP_RELAY_NO_TLS", "On")
        .arg("check-config")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("no-tls = true\n"), "{}", stderr(&out));
    let out = check_config(SECRET_LINE, &["--no-tcp", "maybe"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("\"maybe\" is not a yes/no value"), "{}", stderr(&out));
}
