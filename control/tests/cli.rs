//! Issue 22 item 5, the command line: `user add` refuses a database that does not exist unless
//! `--init`; `user list`, `user disable`, `user reset-password`, audited; `check-config`. The
//! real binary as a process, on both engines where the database is involved.

mod support;

use std::path::Path;
use std::process::Output;

use reqwest::StatusCode;
use support::http::{ADMIN_EMAIL, ADMIN_PASSWORD, env};
use support::{cli as run, engines, fresh_database};

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

const ADD: &[&str] = &["user", "add", "--role", "admin", "--email", "first@hospital.test"];

/// A database that was never set up is refused with a plain message, nothing is created, and
/// `--init` creates it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_add_refuses_a_database_that_does_not_exist_unless_init() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_database(engine, dir.path()).await;
        let data = dir.path().join("data");
        let config = dir.path().join("control.toml");
        std::fs::write(&config, format!("database-url = \"{url}\"\ndata-dir = \"{}\"\n", data.display())).unwrap();
        let out = run(&config, ADD, &format!("{ADMIN_PASSWORD}\n"));
        assert!(!out.status.success(), "{engine:?}: {}", text(&out));
        let said = text(&out);
        assert!(
            said.contains("--init") && (said.contains("does not exist") || said.contains("no teletip tables")),
            "{said}"
        );
        assert!(!data.exists(), "{engine:?}: no keys were generated");
        if let Some(file) = url.strip_prefix("sqlite://") {
            assert!(!Path::new(file).exists(), "no SQLite file was created");
        }
        for other in [&["user", "list"][..], &["user", "disable", "x@hospital.test"]] {
            let out = run(&config, other, "");
            assert!(!out.status.success() && text(&out).contains("--init"), "{engine:?} {other:?}: {}", text(&out));
        }
        let mut init = ADD.to_vec();
        init.push("--init");
        let out = run(&config, &init, &format!("{ADMIN_PASSWORD}\n"));
        assert!(out.status.success(), "{engine:?}: {}", text(&out));
        // From now on the database exists: a second user needs no --init.
        let out = run(
            &config,
            &["user", "add", "--role", "practitioner", "--email", "dr@hospital.test"],
            &format!("{ADMIN_PASSWORD}\n"),
        );
        assert!(out.status.success(), "{engine:?}: {}", text(&out));
    }
}

/// `user list` shows every account; `user disable` ends the account's sessions and refuses the
/// last admin; `user reset-password` sets a password the policy accepts and ends the sessions.
/// Each is in the audit trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_list_disable_and_reset_password() {
    for engine in engines() {
        let e = env(engine).await;
        let admin = e.admin().await;
        let (doctor, _) = e.user_token(&admin, "doctor@hospital.test", "practitioner").await;
        let out = e.control.cli(&["user", "list"], "");
        assert!(out.status.success(), "{}", text(&out));
        let listed = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(listed.starts_with("EMAIL"), "{listed}");
        assert!(
            listed.lines().any(|l| l.starts_with(ADMIN_EMAIL) && l.contains("admin") && l.contains("enabled")),
            "{listed}"
        );
        assert!(
            listed.lines().any(|l| l.starts_with("doctor@hospital.test") && l.contains("practitioner")),
            "{listed}"
        );

        // A new password: the policy first, then the old password and session end.
        let out = e.control.cli(&["user", "reset-password", "Doctor@Hospital.test"], "short\n");
        assert!(!out.status.success() && text(&out).contains("at least 12 characters"), "{}", text(&out));
        let out = e.control.cli(&["user", "reset-password", "Doctor@Hospital.test"], "a brand new passphrase\n");
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(e.get("/v1/me", Some(&doctor)).await.0, StatusCode::UNAUTHORIZED, "{engine:?}: session ended");
        assert_eq!(e.login("doctor@hospital.test", "a long enough passphrase").await.0, StatusCode::UNAUTHORIZED);
        let (s, body) = e.login("doctor@hospital.test", "a brand new passphrase").await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let doctor = body["accessToken"].as_str().unwrap().to_string();

        let out = e.control.cli(&["user", "disable", "doctor@hospital.test"], "");
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(e.get("/v1/me", Some(&doctor)).await.0, StatusCode::UNAUTHORIZED, "{engine:?}: session ended");
        assert_eq!(e.login("doctor@hospital.test", "a brand new passphrase").await.0, StatusCode::UNAUTHORIZED);
        let out = e.control.cli(&["user", "list"], "");
        assert!(
            String::from_utf8_lossy(&out.stdout).lines().any(|l| l.starts_with("doctor@") && l.contains("disabled"))
        );

        let out = e.control.cli(&["user", "disable", ADMIN_EMAIL], "");
        assert!(!out.status.success() && text(&out).contains("last enabled admin"), "{}", text(&out));
        let out = e.control.cli(&["user", "disable", "nobody@hospital.test"], "");
        assert!(!out.status.success() && text(&out).contains("no user has the e-mail"), "{}", text(&out));

        let (_, audit) = e.get("/v1/audit?limit=200", Some(&admin)).await;
        let events = audit["events"].as_array().unwrap();
        let outcomes = |action: &str| -> Vec<String> {
            events
                .iter()
                .filter(|ev| ev["action"] == action)
                .map(|ev| ev["outcome"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(outcomes("user.list").iter().filter(|o| *o == "success:cli").count(), 2, "{engine:?}: {audit}");
        let updates = outcomes("user.update");
        for expected in ["success:cli-password-reset", "success:cli", "refused:last-admin"] {
            assert!(updates.iter().any(|o| o == expected), "{engine:?}: {expected} in {updates:?}");
        }
        assert_eq!(audit["chain"]["verified"], true);
    }
}

/// `check-config` passes a usable configuration and names, in plain words, what would stop
/// `serve`: an unreadable or world-readable key file, a database or Redis that does not answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_names_what_is_wrong() {
    use std::os::unix::fs::PermissionsExt;
    let e = env(support::Engine::Sqlite).await;
    let out = e.control.cli(&["check-config"], "");
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("ok: database: sqlite answers and is set up"), "{said}");
    assert!(said.contains("ok: auth.jwt-keys (generated)"), "{said}");
    assert!(said.trim_end().ends_with("the configuration is usable"), "{said}");

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("jwt.key");
    std::fs::write(&key, "k1=0123456789abcdef0123456789abcdef0123\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = dir.path().join("control.toml");
    let base = format!("database-url = \"{}\"\ndata-dir = \"{}\"\n", e.control.database_url, dir.path().display());
    let cases = [
        (
            format!("{base}[auth]\njwt-keys = [{{ key-id = \"k1\", secret-file = \"{}\" }}]\n", key.display()),
            "is readable by every user",
        ),
        (
            format!(
                "{base}[auth]\njwt-keys = [{{ key-id = \"k1\", secret-file = \"{}/absent.key\" }}]\n",
                dir.path().display()
            ),
            "absent.key",
        ),
        (
            format!("{base}[auth]\njwt-keys = [{{ key-id = \"k1\", secret = \"too short\" }}]\n"),
            "at least 32 are needed",
        ),
        (
            format!("database-url = \"postgres://nobody@127.0.0.1:1/none\"\ndata-dir = \"{}\"\n", dir.path().display()),
            "error: database",
        ),
        (format!("{base}redis-url = \"redis://127.0.0.1:1/\"\n"), "error: redis-url"),
    ];
    for (toml, says) in cases {
        std::fs::write(&config, &toml).unwrap();
        let out = run(&config, &["check-config"], "");
        assert!(!out.status.success(), "{toml}: {}", text(&out));
        assert!(text(&out).contains(says), "{toml}: expected {says:?} in {}", text(&out));
        assert!(text(&out).contains("error(s) in the configuration"), "{}", text(&out));
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        &config,
        format!("{base}[auth]\njwt-keys = [{{ key-id = \"k1\", secret-file = \"{}\" }}]\n", key.display()),
    )
    .unwrap();
    let out = run(&config, &["check-config"], "");
    assert!(out.status.success(), "{}", text(&out));
    // Nothing was created by checking.
    assert!(!dir.path().join("relay.secret").exists());
}
