//! Issue 22 item 5: password reset by a single-use, short-lived token delivered through the
//! operator's hook. The same answer whether the e-mail has an account or not; the token works
//! once, not after it expires, and ends every session of the account. On both engines, against
//! the real binary, with a real hook program.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::engines;
use support::http::{RELAXED_LIMITS, env_with};

/// A hook that writes what it was given (e-mail, token, link, its argument count) to `out`.
fn hook(dir: &Path, out: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("send-reset");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nprintf '%s\\n%s\\n%s\\n%s\\n' \"$TELETIP_RESET_EMAIL\" \"$TELETIP_RESET_TOKEN\" \"$TELETIP_RESET_LINK\" \"$#\" > {0}.tmp && mv {0}.tmp {0}\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// What the hook was given, once it has run.
async fn delivered(out: &Path) -> Vec<String> {
    for _ in 0..500 {
        if let Ok(text) = std::fs::read_to_string(out) {
            return text.lines().map(str::to_string).collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the hook did not run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_token_works_once_and_ends_every_session() {
    for engine in engines() {
        let hooks = tempfile::tempdir().unwrap();
        let out = hooks.path().join("delivered");
        let hook = hook(hooks.path(), &out);
        let e = env_with(
            engine,
            &format!(
                "public-url = \"https://tele.example.org\"\n{RELAXED_LIMITS}\n[auth]\npassword-reset-hook = \"{}\"\n",
                hook.display()
            ),
        )
        .await;
        let admin = e.admin().await;
        let (doctor, doctor_id) = e.user_token(&admin, "doctor@hospital.test", "practitioner").await;

        // No account enumeration: the same answer for an unknown address, and nothing sent.
        let ask =
            |email: &str| e.http.post(e.control.url("/v1/auth/password-reset")).json(&json!({"email": email})).send();
        let unknown = ask("nobody@hospital.test").await.unwrap();
        let (unknown_status, unknown_body) = (unknown.status(), unknown.text().await.unwrap());
        let known = ask("Doctor@Hospital.test").await.unwrap();
        assert_eq!((known.status(), known.text().await.unwrap()), (unknown_status, unknown_body.clone()));
        assert_eq!(unknown_status, StatusCode::ACCEPTED);
        let given = delivered(&out).await;
        assert_eq!(given[0], "doctor@hospital.test", "{engine:?}: only the known account got a link: {given:?}");
        let token = given[1].clone();
        assert_eq!(given[2], format!("https://tele.example.org/#reset-token={token}"));
        assert_eq!(given[3], "0", "nothing in the hook's arguments");

        let confirm = |token: &str, password: &str| {
            e.post("/v1/auth/password-reset/confirm", None, json!({"token": token, "password": password}))
        };
        // A refused password does not spend the token.
        let (s, body) = confirm(&token, "short").await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let (s, body) = confirm(&token, "a fresh long passphrase").await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{engine:?}: {body}");
        assert_eq!(e.get("/v1/me", Some(&doctor)).await.0, StatusCode::UNAUTHORIZED, "the old session ended");
        assert_eq!(e.login("doctor@hospital.test", "a long enough passphrase").await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(e.login("doctor@hospital.test", "a fresh long passphrase").await.0, StatusCode::OK);
        // Once only.
        let (s, body) = confirm(&token, "another long passphrase").await;
        support::http::assert_problem(s, &body, StatusCode::UNAUTHORIZED, "a spent token");

        // A newer request makes the older token useless; a token ends with its lifetime.
        std::fs::remove_file(&out).unwrap();
        assert_eq!(ask("doctor@hospital.test").await.unwrap().status(), StatusCode::ACCEPTED);
        let first = delivered(&out).await[1].clone();
        std::fs::remove_file(&out).unwrap();
        assert_eq!(ask("doctor@hospital.test").await.unwrap().status(), StatusCode::ACCEPTED);
        let second = delivered(&out).await[1].clone();
        assert_eq!(confirm(&first, "another long passphrase").await.0, StatusCode::UNAUTHORIZED);
        e.control.set_clock(time::Duration::minutes(31));
        assert_eq!(confirm(&second, "another long passphrase").await.0, StatusCode::UNAUTHORIZED, "expired");
        e.control.set_clock(time::Duration::ZERO);
        let (s, _) = confirm("not-a-token", "another long passphrase").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);

        let (_, audit) = e.get("/v1/audit?limit=200", Some(&admin)).await;
        let events = audit["events"].as_array().unwrap();
        let outcomes = |action: &str| -> Vec<(String, Value)> {
            events
                .iter()
                .filter(|ev| ev["action"] == action)
                .map(|ev| (ev["outcome"].as_str().unwrap().to_string(), ev["target"].clone()))
                .collect()
        };
        let requests = outcomes("auth.password-reset.request");
        assert!(requests.iter().any(|(o, _)| o == "ignored:unknown-account"), "{requests:?}");
        assert_eq!(
            requests.iter().filter(|(o, t)| o == "success" && *t == json!(doctor_id)).count(),
            3,
            "{requests:?}"
        );
        let resets = outcomes("auth.password-reset");
        assert_eq!(resets.iter().filter(|(o, _)| o == "success").count(), 1, "{resets:?}");
        assert_eq!(resets.iter().filter(|(o, _)| o == "failure:invalid-token").count(), 4, "{resets:?}");
        assert_eq!(audit["chain"]["verified"], true);
        // Neither the token nor the e-mail is in the audit trail.
        assert!(!audit.to_string().contains(&token) && !audit.to_string().contains("nobody@hospital.test"));
    }
}
