//! `teletip-relay import-coturn` on the turnserver.conf Debian's coturn 4.6.1 package ships
//! (a copy in fixtures/, and the host's own file when there is one), on that file with every
//! example option uncommented, and on the translated example of docs/relay-config.md. Every
//! file it writes is run through `check-config`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DEBIAN_CONF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/debian-coturn-4.6.1-turnserver.conf");
const SECRET: &str = "k1=0123456789abcdef0123456789abcdef";

fn relay(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_teletip-relay")).args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Imports `conf` into `dir`/relay.toml with a secret file; the written file, if any.
fn import(dir: &Path, conf: &Path, with_secret: bool) -> (Output, Option<PathBuf>) {
    let output = dir.join("relay.toml");
    let secrets = dir.join("secrets");
    std::fs::write(&secrets, format!("{SECRET}\n")).unwrap();
    let mut args = vec!["import-coturn".as_ref(), conf.as_os_str(), "--output".as_ref(), output.as_os_str()];
    if with_secret {
        args.extend(["--static-auth-secret-file".as_ref(), secrets.as_os_str()]);
    }
    let out = relay(&args);
    let written = output.exists().then_some(output);
    (out, written)
}

/// check-config on a file the importer wrote: it must accept it.
fn assert_check_config_accepts(path: &Path) -> String {
    let out = relay(&["-c".as_ref(), path.as_os_str(), "check-config".as_ref()]);
    assert!(out.status.success(), "check-config refuses what import-coturn wrote: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn assert_imports_the_shipped_file(conf: &Path) {
    let dir = tempfile::tempdir().unwrap();
    // The shipped file sets no secret: nothing is written, and the message says what to do.
    let (out, written) = import(dir.path(), conf, false);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(written.is_none(), "nothing written without a secret");
    assert!(stderr(&out).contains("with --static-auth-secret-file FILE"), "{}", stderr(&out));
    let (out, written) = import(dir.path(), conf, true);
    let report = stderr(&out);
    assert!(out.status.success(), "{report}");
    for line in [
        "syslog: not needed: logs go to stderr",
        "no-rfc5780: not needed",
        "no-stun-backward-compatibility: not needed",
        "response-origin-only-with-rfc5780: not needed",
        "note: no listening-ip: coturn listens on every address of the host",
    ] {
        assert!(report.contains(line), "{line:?} missing from the report:\n{report}");
    }
    let written = written.expect("a file is written");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&written).unwrap().permissions().mode() & 0o777, 0o600);
    let shown = assert_check_config_accepts(&written);
    assert!(shown.contains("static-auth-secret = [\"<redacted: key-id k1>\"]"), "{shown}");
    // An existing file is never replaced.
    let (again, _) = import(dir.path(), conf, true);
    assert!(!again.status.success() && stderr(&again).contains("cannot create"), "{}", stderr(&again));
}

#[test]
fn debians_shipped_turnserver_conf_is_imported_and_passes_check_config() {
    assert_imports_the_shipped_file(Path::new(DEBIAN_CONF));
}

#[test]
fn the_hosts_own_turnserver_conf_is_imported_when_there_is_one() {
    let host = Path::new("/etc/turnserver.conf");
    if !host.exists() {
        eprintln!("no /etc/turnserver.conf on this host: only the fixture is tested");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (out, written) = import(dir.path(), host, true);
    assert!(out.status.code() == Some(0) || out.status.code() == Some(1), "no crash: {out:?}");
    if let Some(written) = written {
        assert_check_config_accepts(&written);
    }
}

/// Every example option of the shipped file uncommented: contradictory on purpose (two
/// relay-ips of a family, users and no-auth, certificates that do not exist). Each line gets
/// its outcome and nothing is written that check-config would refuse.
#[test]
fn every_example_option_of_the_shipped_file_is_reported_and_nothing_refusable_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(DEBIAN_CONF).unwrap();
    let uncommented: String = shipped
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphabetic()) && !rest.contains(' ') => rest.to_owned(),
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let conf = dir.path().join("turnserver.conf");
    std::fs::write(&conf, &uncommented).unwrap();
    let (out, written) = import(dir.path(), &conf, true);
    let report = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(written.is_none(), "{report}");
    for line in [
        "line 60: listening-ip: mapped: listening-ip = \"172.17.19.101\"",
        "line 152: relay-threads: mapped: workers = 1",
        "line 178: lt-cred-mech: refused: static users",
        "line 187: no-auth: refused: authentication cannot be turned off",
        "line 626: allow-loopback-peers: refused: stays explicit-only",
        "line 716: cli-password: refused: there is no admin CLI",
        "line 681: allocation-default-address-family: not needed: replaced by line 682",
        "check-config would refuse the converted settings: nothing written",
    ] {
        assert!(report.contains(line), "{line:?} missing from the report:\n{report}");
    }
    assert!(!report.contains("north"), "secrets are never echoed:\n{report}");
    let options = uncommented.lines().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')).count();
    assert_eq!(report.lines().filter(|l| l.starts_with("line ")).count(), options, "one report line per option line");
}

#[test]
fn malformed_and_hostile_files_get_a_line_and_a_reason_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 4] = [
        (
            "bad-ip",
            b"static-auth-secret=0123456789abcdef0123\nlistening-ip=10.0.0.300\n",
            "line 2: listening-ip: malformed: \"10.0.0.300\" is not an IP address",
        ),
        ("bad-port", b"listening-port=3478x\n", "line 1: listening-port: malformed: \"3478x\" is not a whole number"),
        ("binary", b"realm=a\n\xff\xfe\x00\n", "line 2: not UTF-8 text"),
        ("bad-bool", b"no-tls=perhaps\n", "line 1: no-tls: malformed: \"perhaps\" is not a yes/no value"),
    ];
    for (name, text, expected) in cases {
        let conf = dir.path().join(name);
        std::fs::write(&conf, text).unwrap();
        let sub = dir.path().join(format!("{name}.d"));
        std::fs::create_dir(&sub).unwrap();
        let (out, written) = import(&sub, &conf, true);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{name}: {}", stderr(&out));
        assert!(written.is_none(), "{name}");
    }
}

/// The example in docs/relay-config.md ("A turnserver.conf translated"): its left column,
/// imported, gives the settings of its right column.
#[test]
fn the_documented_translation_is_what_the_importer_writes() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/relay-config.md")).unwrap();
    let block = doc.split("### A turnserver.conf translated").nth(1).unwrap();
    let block = block.split("```text\n").nth(1).unwrap().split("```").next().unwrap();
    let (mut coturn, mut ours) = (String::new(), String::new());
    for line in block.lines() {
        let (left, right) = line.split_once("  ").unwrap_or((line, ""));
        let left = left.replace("<secret>", "0123456789abcdef0123");
        coturn.push_str(&format!("{}\n", left.trim()));
        ours.push_str(&format!("{}\n", right.trim()));
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("turnserver.conf");
    std::fs::write(&conf, &coturn).unwrap();
    let (out, written) = import(dir.path(), &conf, false);
    assert!(out.status.success(), "{}", stderr(&out));
    let written = written.unwrap();
    assert_check_config_accepts(&written);
    // Both read as the relay reads its file (a single value is a list of one), secrets aside:
    // the documented column names a secret file, the imported one the input's secret.
    let as_table = |text: &str| {
        let settings = teletip_relay::config::Settings::from_toml(text.as_bytes()).unwrap();
        let mut table = toml::Table::try_from(&settings).unwrap();
        table.remove("static-auth-secret");
        table.remove("static-auth-secret-file");
        table.retain(|_, value| value.as_array().is_none_or(|a| !a.is_empty()));
        table
    };
    let imported = as_table(&std::fs::read_to_string(&written).unwrap());
    assert_eq!(imported, as_table(&ours));
    assert_eq!(imported.len(), 12, "every documented setting: {imported:?}");
    assert!(std::fs::read_to_string(&written).unwrap().contains("realm = \"hosp.example\""));
}
