//! Issue 22 item 5: TOTP MFA (RFC 6238) with recovery codes. Enrollment, confirmation, login
//! with a code, a replayed code refused, a recovery code once, wrong codes in the login
//! throttle, roles that must enroll before they may do anything else, the admin reset (CLI and
//! API), the secret encrypted at rest and refused start-up without its key, all audited. On
//! both engines, against the real binary; codes computed here with HMAC-SHA-1 as an
//! authenticator app would.

mod support;

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::Engine;
use support::engines;
use support::http::{Env, RELAXED_LIMITS, assert_problem, env_with};

const PASSWORD: &str = "a long enough passphrase";

/// The TOTP code (RFC 6238: HMAC-SHA-1, 6 digits, 30 s) of the base32 `secret` at the real
/// time plus `offset` seconds (the service's test clock is moved by the same offset).
fn totp(secret: &str, offset: i64) -> String {
    let key = data_encoding::BASE32_NOPAD.decode(secret.as_bytes()).expect("a base32 secret");
    let now = time::OffsetDateTime::now_utc().unix_timestamp() + offset;
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&key).unwrap();
    mac.update(&((now / 30) as u64).to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let at = (digest[19] & 0x0f) as usize;
    let n = u32::from_be_bytes([digest[at] & 0x7f, digest[at + 1], digest[at + 2], digest[at + 3]]) % 1_000_000;
    format!("{n:06}")
}

/// Waits until at least 3 s remain in the current 30-s step, so that a code computed here is
/// checked by the service in the same step.
async fn not_at_a_step_edge() {
    while time::OffsetDateTime::now_utc().unix_timestamp() % 30 >= 27 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sets the service's clock to `offset` seconds ahead, and gives the code for then.
async fn code_at(e: &Env, secret: &str, offset: i64) -> String {
    e.control.set_clock(time::Duration::seconds(offset));
    not_at_a_step_edge().await;
    totp(secret, offset)
}

async fn login_with(e: &Env, email: &str, extra: Value) -> (StatusCode, Value) {
    let mut body = json!({"email": email, "password": PASSWORD});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    e.post("/v1/auth/login", None, body).await
}

/// Enrolls the holder of `token`: the secret, and the recovery codes of the confirmation.
async fn enroll(e: &Env, token: &str, offset: i64) -> (String, Vec<String>) {
    let (s, enrollment) = e.post("/v1/auth/mfa/enroll", Some(token), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{enrollment}");
    let secret = enrollment["secret"].as_str().unwrap().to_string();
    let code = code_at(e, &secret, offset).await;
    let (s, confirmed) = e.post("/v1/auth/mfa/confirm", Some(token), json!({"code": code})).await;
    assert_eq!(s, StatusCode::OK, "{confirmed}");
    let codes = confirmed["recoveryCodes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string());
    (secret, codes.collect())
}

async fn query_strings(e: &Env, query: &str) -> Vec<String> {
    use sqlx::Connection;
    let url = &e.control.database_url;
    match e.engine {
        Engine::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_scalar(query).fetch_all(&mut conn).await.unwrap()
        }
        Engine::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_scalar(query).fetch_all(&mut conn).await.unwrap()
        }
    }
}

/// (action, outcome) of every audit event about `target`.
async fn audit_of(e: &Env, admin: &str, target: &str) -> Vec<(String, String)> {
    let (s, audit) = e.get("/v1/audit?limit=500", Some(admin)).await;
    assert_eq!(s, StatusCode::OK, "{audit}");
    assert_eq!(audit["chain"]["verified"], true);
    audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|ev| ev["target"] == target)
        .map(|ev| (ev["action"].as_str().unwrap().to_string(), ev["outcome"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_login_replay_recovery_codes_and_the_throttle() {
    for engine in engines() {
        let e = env_with(engine, RELAXED_LIMITS).await;
        let admin = e.admin().await;
        let email = "doctor@hospital.test";
        let (token, id) = e.user_token(&admin, email, "practitioner").await;

        let (s, status) = e.get("/v1/auth/mfa", Some(&token)).await;
        assert_eq!(
            (s, status["enabled"].clone(), status["required"].clone()),
            (StatusCode::OK, json!(false), json!(false))
        );
        // Nothing to confirm before an enrollment.
        let (s, body) = e.post("/v1/auth/mfa/confirm", Some(&token), json!({"code": "123456"})).await;
        assert_problem(s, &body, StatusCode::CONFLICT, "confirm without enrollment");

        let (s, enrollment) = e.post("/v1/auth/mfa/enroll", Some(&token), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{enrollment}");
        let secret = enrollment["secret"].as_str().unwrap().to_string();
        let uri = enrollment["otpauthUri"].as_str().unwrap();
        assert!(uri.starts_with("otpauth://totp/teletip-control:doctor%40hospital.test?"), "{uri}");
        assert!(uri.contains(&format!("secret={secret}")) && uri.contains("period=30") && uri.contains("digits=6"));
        // Pending: a login still needs the password alone.
        assert_eq!(e.login(email, PASSWORD).await.0, StatusCode::OK);

        // At rest the secret is AES-256-GCM under the field key, never the plaintext.
        let stored = query_strings(&e, "SELECT secret FROM user_mfa").await;
        assert_eq!(stored.len(), 1);
        assert!(stored[0].starts_with("v1:local:") && !stored[0].contains(&secret), "{engine:?}: {}", stored[0]);
        assert!(!stored[0].to_uppercase().contains(&secret[..16]));

        // A wrong confirming code is refused; the right one turns MFA on with 10 codes.
        let right = code_at(&e, &secret, 0).await;
        let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 500_000) % 1_000_000);
        let (s, body) = e.post("/v1/auth/mfa/confirm", Some(&token), json!({"code": wrong})).await;
        assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "a wrong confirming code");
        let (s, confirmed) = e.post("/v1/auth/mfa/confirm", Some(&token), json!({"code": right})).await;
        assert_eq!(s, StatusCode::OK, "{confirmed}");
        let codes: Vec<String> =
            confirmed["recoveryCodes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().into()).collect();
        assert_eq!(codes.len(), 10);
        assert_eq!(codes.iter().collect::<std::collections::HashSet<_>>().len(), 10);
        // Only hashes are kept.
        let unused = "SELECT CAST(COUNT(*) AS TEXT) FROM mfa_recovery_codes WHERE used_at IS NULL";
        assert_eq!(query_strings(&e, unused).await, ["10"]);

        // The password alone no longer logs in: the problem says a code is needed.
        let (s, body) = e.login(email, PASSWORD).await;
        assert_problem(s, &body, StatusCode::UNAUTHORIZED, "password without code");
        assert_eq!(body["type"], "/problems/mfa-required", "{body}");
        // A wrong password with it is the plain failure, not mfa-required.
        let (s, body) = e.login(email, "not the right passphrase").await;
        assert_eq!((s, body["type"].as_str()), (StatusCode::UNAUTHORIZED, Some("/problems/unauthorized")));

        // The confirming code is spent; the next step's code logs in, once.
        let (s, body) = login_with(&e, email, json!({"otp": right})).await;
        assert_problem(s, &body, StatusCode::UNAUTHORIZED, "the confirming code replayed");
        let next = code_at(&e, &secret, 30).await;
        let (s, body) = login_with(&e, email, json!({"otp": next})).await;
        assert_eq!(s, StatusCode::OK, "{engine:?}: {body}");
        assert_eq!(body["mfaEnrollmentRequired"], false);
        let (s, body) = login_with(&e, email, json!({"otp": next})).await;
        assert_problem(s, &body, StatusCode::UNAUTHORIZED, "a replayed code");

        // A recovery code works once, in any case and with or without dashes.
        let (s, body) = login_with(&e, email, json!({"recoveryCode": codes[0].to_uppercase()})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let (s, body) = login_with(&e, email, json!({"recoveryCode": codes[0].replace('-', "")})).await;
        assert_problem(s, &body, StatusCode::UNAUTHORIZED, "a spent recovery code");

        // New recovery codes need a code; the old ones stop working.
        let (s, body) = e.post("/v1/auth/mfa/recovery-codes", Some(&token), json!({"code": "000000"})).await;
        assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "regenerate with a wrong code");
        let code = code_at(&e, &secret, 60).await;
        let (s, fresh) = e.post("/v1/auth/mfa/recovery-codes", Some(&token), json!({"code": code})).await;
        assert_eq!(s, StatusCode::OK, "{fresh}");
        let fresh = fresh["recoveryCodes"][0].as_str().unwrap().to_string();
        assert_eq!(login_with(&e, email, json!({"recoveryCode": codes[1]})).await.0, StatusCode::UNAUTHORIZED);

        // Wrong codes count in the per-(account, source) login throttle: with the right
        // password, the pair is soon answered 429, even with a right code.
        let mut throttled = false;
        for _ in 0..8 {
            let (s, body) = login_with(&e, email, json!({"otp": "000000"})).await;
            if s == StatusCode::TOO_MANY_REQUESTS {
                throttled = true;
                break;
            }
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
        }
        assert!(throttled, "{engine:?}: wrong codes never throttled the login");
        // A right, unused code (the next step's) is refused too while the pair waits, at login
        // and at the other endpoints that take a code.
        let code = totp(&secret, 90);
        assert_eq!(login_with(&e, email, json!({"otp": code})).await.0, StatusCode::TOO_MANY_REQUESTS);
        let (s, body) = e.post("/v1/auth/mfa/recovery-codes", Some(&token), json!({"code": code})).await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{body}");
        // Past the delay (at most throttle-max-seconds, 900), the right code logs in.
        let code = code_at(&e, &secret, 1800).await;
        assert_eq!(login_with(&e, email, json!({"otp": code})).await.0, StatusCode::OK);

        // Disable with a recovery code; then the password alone logs in again.
        let (s, body) = e.post("/v1/auth/mfa/disable", Some(&token), json!({"recoveryCode": "nope-nope"})).await;
        assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "disable with a wrong recovery code");
        let (s, body) = e.post("/v1/auth/mfa/disable", Some(&token), json!({"recoveryCode": fresh})).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
        assert_eq!(e.login(email, PASSWORD).await.0, StatusCode::OK);
        assert!(query_strings(&e, "SELECT secret FROM user_mfa").await.is_empty());
        e.control.set_clock(time::Duration::ZERO);

        let events = audit_of(&e, &admin, &id).await;
        for expected in [
            ("auth.mfa.enroll", "success"),
            ("auth.mfa.confirm", "failure:wrong-code"),
            ("auth.mfa.confirm", "success"),
            ("auth.login", "refused:mfa-required"),
            ("auth.login", "failure:wrong-second-factor"),
            ("auth.mfa.verify", "failure:wrong-code"),
            ("auth.mfa.verify", "failure:replayed-code"),
            ("auth.mfa.verify", "success:recovery-code"),
            ("auth.mfa.verify", "failure:wrong-recovery-code"),
            ("auth.mfa.verify", "refused:throttled"),
            ("auth.mfa.regenerate-recovery-codes", "failure:wrong-code"),
            ("auth.mfa.regenerate-recovery-codes", "success"),
            ("auth.mfa.disable", "success"),
        ] {
            assert!(
                events.iter().any(|(a, o)| (a.as_str(), o.as_str()) == expected),
                "{engine:?}: no {expected:?} in {events:?}"
            );
        }
        // No secret and no recovery code in the audit trail.
        let (_, audit) = e.get("/v1/audit?limit=500", Some(&admin)).await;
        assert!(!audit.to_string().contains(&secret) && !audit.to_string().contains(&codes[2]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_role_can_only_enroll_until_it_has_mfa_and_an_admin_resets_a_lost_device() {
    for engine in engines() {
        let e = env_with(engine, &format!("{RELAXED_LIMITS}\n[auth]\nmfa-required-roles = [\"practitioner\"]\n")).await;
        let admin = e.admin().await;
        let email = "doctor@hospital.test";
        let user = e.create_user(&admin, email, "practitioner").await;
        let id = user["id"].as_str().unwrap().to_string();
        let (s, login) = e.login(email, PASSWORD).await;
        assert_eq!((s, login["mfaEnrollmentRequired"].clone()), (StatusCode::OK, json!(true)), "{login}");
        let token = login["accessToken"].as_str().unwrap().to_string();

        // Everything but enrollment, /v1/me and logout answers a precise 403.
        for (what, (s, body)) in [
            ("own account", e.get(&format!("/v1/users/{id}"), Some(&token)).await),
            ("ICE credentials", e.post("/v1/ice/credentials", Some(&token), json!({})).await),
            ("appointments", e.get("/v1/appointments", Some(&token)).await),
        ] {
            assert_problem(s, &body, StatusCode::FORBIDDEN, what);
            assert_eq!(body["type"], "/problems/mfa-enrollment-required", "{what}: {body}");
        }
        assert_eq!(e.get("/v1/me", Some(&token)).await.0, StatusCode::OK);
        let (_, status) = e.get("/v1/auth/mfa", Some(&token)).await;
        assert_eq!((status["required"].clone(), status["enabled"].clone()), (json!(true), json!(false)));

        // Enrolled, the same session may do what the role may.
        let (secret, _) = enroll(&e, &token, 0).await;
        assert_eq!(e.get(&format!("/v1/users/{id}"), Some(&token)).await.0, StatusCode::OK);
        let (s, body) = e.post("/v1/ice/credentials", Some(&token), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        // The role requires it: the user cannot turn it off.
        let code = code_at(&e, &secret, 30).await;
        let (s, body) = e.post("/v1/auth/mfa/disable", Some(&token), json!({"code": code})).await;
        assert_problem(s, &body, StatusCode::CONFLICT, "disable required MFA");

        // Lost device: the operator resets it on the host. The sessions end; the password
        // alone logs in again, into a session that must enroll anew.
        let out = e.control.cli(&["user", "reset-mfa", email], "");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("two-factor authentication removed"));
        assert_eq!(e.get("/v1/me", Some(&token)).await.0, StatusCode::UNAUTHORIZED, "the session ended");
        let (s, login) = e.login(email, PASSWORD).await;
        assert_eq!((s, login["mfaEnrollmentRequired"].clone()), (StatusCode::OK, json!(true)));
        let token = login["accessToken"].as_str().unwrap().to_string();

        // The same through the admin API.
        enroll(&e, &token, 60).await;
        let res =
            e.http.delete(e.control.url(&format!("/v1/users/{id}/mfa"))).bearer_auth(&token).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "admins only");
        let res =
            e.http.delete(e.control.url(&format!("/v1/users/{id}/mfa"))).bearer_auth(&admin).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert_eq!(e.get("/v1/me", Some(&token)).await.0, StatusCode::UNAUTHORIZED, "the session ended");
        assert_eq!(e.login(email, PASSWORD).await.1["mfaEnrollmentRequired"], true);
        // An unknown e-mail is a clear CLI error.
        let out = e.control.cli(&["user", "reset-mfa", "nobody@hospital.test"], "");
        assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no user has the e-mail"));
        e.control.set_clock(time::Duration::ZERO);

        let events = audit_of(&e, &admin, &id).await;
        for expected in [
            ("auth.login", "success:mfa-enrollment-required"),
            ("auth.mfa.enroll", "success"),
            ("auth.mfa.confirm", "success"),
            ("auth.mfa.disable", "refused:required-by-role"),
            ("user.reset-mfa", "success:cli"),
            ("user.reset-mfa", "success"),
        ] {
            assert!(
                events.iter().any(|(a, o)| (a.as_str(), o.as_str()) == expected),
                "{engine:?}: no {expected:?} in {events:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_key_of_the_stored_secrets_the_service_refuses_to_start() {
    let engine = engines()[0];
    let e = env_with(engine, RELAXED_LIMITS).await;
    let admin = e.admin().await;
    let (token, _) = e.user_token(&admin, "doctor@hospital.test", "practitioner").await;
    enroll(&e, &token, 0).await;
    e.control.set_clock(time::Duration::ZERO);
    let Env { control, _dir, .. } = e;
    let config = control.config_path.clone();
    control.stop();
    // The generated field key is lost (a new one is generated in its place).
    std::fs::remove_file(_dir.path().join("data/field.key")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_teletip-control"))
        .args(["--config", config.to_str().unwrap(), "serve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("the service started although the TOTP secrets cannot be decrypted");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("TOTP secret(s) cannot be decrypted"), "{stderr}");
    assert!(stderr.contains("user reset-mfa"), "{stderr}");
}
