//! The shipped systemd units: `systemd-analyze verify` is clean and `systemd-analyze security`
//! rates each at an exposure of 2.0 or better (the score is printed).

use std::process::Command;

mod support;

fn unit_with_built_binaries(name: &str) -> std::path::PathBuf {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(repo.join("systemd").join(name)).unwrap();
    // verify checks that ExecStart exists: point it at the binaries this build made.
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_teletip-relay")).parent().unwrap().to_path_buf();
    let binary = name.trim_end_matches(".service");
    let built = bin_dir.join(binary);
    // The other crate's binary may not be built when only this crate's tests run; verify only
    // needs an executable there.
    let exec = if built.exists() { built } else { std::path::PathBuf::from("/usr/bin/env") };
    let text = text.replace(&format!("/usr/local/bin/{binary}"), &exec.display().to_string());
    let dir = std::env::temp_dir().join(format!("teletip-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn units_verify_and_score_at_most_2() {
    if !support::have_tool("systemd-analyze", "units_verify_and_score_at_most_2") {
        return;
    }
    for name in ["teletip-relay.service", "teletip-control.service"] {
        let unit = unit_with_built_binaries(name);
        let verify = Command::new("systemd-analyze").arg("verify").arg(&unit).output().unwrap();
        let complaints = String::from_utf8_lossy(&verify.stderr);
        assert!(verify.status.success() && complaints.trim().is_empty(), "{name}: {complaints}");
        let security =
            Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(&unit).output().unwrap();
        let text = String::from_utf8_lossy(&security.stdout);
        let line =
            text.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| panic!("{name}: {text}"));
        let score: f64 =
            line.split(": ").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap();
        println!("{name}: systemd-analyze security exposure {score}");
        assert!(score <= 2.0, "{name}: exposure {score}\n{text}");
    }
}
