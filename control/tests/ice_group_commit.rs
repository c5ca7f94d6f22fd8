//! ICE credentials under load (issue 26 item 4): the group commit and the read cache that make
//! thousands of credentials a second possible must not weaken what an auditor relies on. Every
//! credential answered has its TURN session row and its `ice.credentials.issue` event in one
//! valid hash chain, on both engines and with two instances on one PostgreSQL database; a
//! revoked session or disabled account is refused at once despite the cache; a full write
//! queue answers 503 problem+json with Retry-After; a kill -9 under load loses no credential
//! that was answered. Real `teletip-control` processes, real databases.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sqlx::Connection;
use support::http::{Env, RELAXED_LIMITS, assert_problem, env, env_with};
use support::{Control, Engine, engines};

/// The session id a credential names: the part of its username after the ':'.
fn session_id(answer: &Value) -> String {
    let username = answer["iceServers"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|s| s["username"].as_str())
        .unwrap_or_else(|| panic!("a TURN server with a username: {answer}"));
    username.split_once(':').unwrap().1.to_string()
}

/// `n` credential requests at once on `base` with `token`: each answer's status and body.
async fn burst(http: &reqwest::Client, base: &str, token: &str, n: usize) -> Vec<(StatusCode, HeaderMap, Value)> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let req = http.post(format!("{base}/v1/ice/credentials")).bearer_auth(token).send();
            tokio::spawn(async move {
                let res = req.await.unwrap();
                let (status, headers) = (res.status(), res.headers().clone());
                let body: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap_or(Value::Null);
                (status, headers, body)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// The session ids recorded in `turn_sessions`, and the session ids named by
/// `ice.credentials.issue` events.
async fn recorded(engine: Engine, url: &str) -> (HashSet<String>, HashSet<String>) {
    let sessions = "SELECT id FROM turn_sessions";
    let events = "SELECT target FROM audit_events WHERE action = 'ice.credentials.issue'";
    let (ids, targets): (Vec<String>, Vec<String>) = match engine {
        Engine::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            (
                sqlx::query_scalar(sessions).fetch_all(&mut c).await.unwrap(),
                sqlx::query_scalar(events).fetch_all(&mut c).await.unwrap(),
            )
        }
        Engine::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            (
                sqlx::query_scalar(sessions).fetch_all(&mut c).await.unwrap(),
                sqlx::query_scalar(events).fetch_all(&mut c).await.unwrap(),
            )
        }
    };
    let named = targets
        .iter()
        .map(|t| t.split_whitespace().next().unwrap().strip_prefix("turn-session:").unwrap().to_string())
        .collect();
    (ids.into_iter().collect(), named)
}

/// A second instance on `e`'s database, with its keys (the data directory's generated JWT key
/// and relay secret), as a deployment shares them.
fn second_instance(e: &Env, dir: &std::path::Path) -> Control {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for f in std::fs::read_dir(e.control.dir.join("data")).unwrap() {
        let f = f.unwrap();
        if f.file_type().unwrap().is_file() {
            std::fs::copy(f.path(), data.join(f.file_name())).unwrap();
        }
    }
    Control::start(dir, &e.control.database_url, RELAXED_LIMITS)
}

/// The whole chain verified through `GET /v1/audit`: how many events it holds.
async fn chain_verified(e: &Env, admin: &str) -> i64 {
    let (s, page) = e.get("/v1/audit?limit=1", Some(admin)).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(page["chain"]["verified"], json!(true), "the audit hash chain must verify: {page}");
    page["chain"]["eventsChecked"].as_i64().unwrap()
}

#[tokio::test]
async fn concurrent_credentials_are_all_recorded_in_one_valid_chain() {
    for engine in engines() {
        let e = env(engine).await;
        let admin = e.admin().await;
        let (token, _) = e.user_token(&admin, "pat@example.test", "patient").await;
        let before = chain_verified(&e, &admin).await;
        // Other audited writes interleave with the batches (audit reads append `audit.read`).
        let base = e.control.base.clone();
        let reader = {
            let (http, admin) = (e.http.clone(), admin.clone());
            tokio::spawn(async move {
                for _ in 0..20 {
                    let s = http.get(format!("{base}/v1/audit?limit=1")).bearer_auth(&admin).send().await.unwrap();
                    assert_eq!(s.status(), StatusCode::OK);
                }
            })
        };
        let answers = burst(&e.http, &e.control.base, &token, 300).await;
        reader.await.unwrap();
        let mut issued = HashSet::new();
        for (status, _, body) in &answers {
            assert_eq!(*status, StatusCode::OK, "{engine:?}: {body}");
            issued.insert(session_id(body));
        }
        assert_eq!(issued.len(), 300, "{engine:?}: every credential is a new session");
        let (rows, events) = recorded(engine, &e.control.database_url).await;
        assert_eq!(rows, issued, "{engine:?}: every credential answered has its TURN session row");
        assert_eq!(events, issued, "{engine:?}: every credential answered has its audit event");
        // 300 credentials, 20 audit reads and the verifying read itself, in one valid chain.
        let after = chain_verified(&e, &admin).await;
        assert!(after > before + 300 + 20, "{engine:?}: {before} -> {after}");
    }
}

#[tokio::test]
async fn two_instances_on_one_postgresql_keep_one_chain() {
    if !engines().contains(&Engine::Postgres) {
        return;
    }
    let e = env(Engine::Postgres).await;
    let admin = e.admin().await;
    let (token, _) = e.user_token(&admin, "pat@example.test", "patient").await;
    let dir = tempfile::tempdir().unwrap();
    let other = second_instance(&e, dir.path());
    let (a, b) = tokio::join!(burst(&e.http, &e.control.base, &token, 200), burst(&e.http, &other.base, &token, 200));
    let issued: HashSet<String> = a
        .iter()
        .chain(&b)
        .map(|(s, _, body)| {
            assert_eq!(*s, StatusCode::OK, "{body}");
            session_id(body)
        })
        .collect();
    assert_eq!(issued.len(), 400);
    let (rows, events) = recorded(Engine::Postgres, &e.control.database_url).await;
    assert_eq!(rows, issued);
    assert_eq!(events, issued);
    chain_verified(&e, &admin).await;
}

#[tokio::test]
async fn a_revoked_session_or_disabled_account_is_refused_at_once_despite_the_cache() {
    for engine in engines() {
        let e = env(engine).await;
        let admin = e.admin().await;
        // Logout: the very next request with the same access token is refused.
        let (token, user) = e.user_token(&admin, "pat@example.test", "patient").await;
        for _ in 0..3 {
            let (s, body) = e.post("/v1/ice/credentials", Some(&token), json!({})).await;
            assert_eq!(s, StatusCode::OK, "{engine:?}: {body}");
        }
        let (s, _) = e.post("/v1/auth/logout", Some(&token), json!({})).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, body) = e.post("/v1/ice/credentials", Some(&token), json!({})).await;
        assert_problem(s, &body, StatusCode::UNAUTHORIZED, "a logged-out session, at once");
        // An admin disabling the account: refused at once.
        let (s, body) = e.login("pat@example.test", "a long enough passphrase").await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let token = body["accessToken"].as_str().unwrap().to_string();
        let (s, body) = e.post("/v1/ice/credentials", Some(&token), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{engine:?}: {body}");
        let (s, body) = e.patch(&format!("/v1/users/{user}"), Some(&admin), json!({"disabled": true})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let (s, body) = e.post("/v1/ice/credentials", Some(&token), json!({})).await;
        assert_problem(s, &body, StatusCode::UNAUTHORIZED, "a disabled account, at once");
    }
}

#[tokio::test]
async fn a_logout_on_one_instance_is_refused_by_the_other_within_the_cache_bound() {
    if !engines().contains(&Engine::Postgres) {
        return;
    }
    let e = env(Engine::Postgres).await;
    let admin = e.admin().await;
    let (token, _) = e.user_token(&admin, "pat@example.test", "patient").await;
    let dir = tempfile::tempdir().unwrap();
    let other = second_instance(&e, dir.path());
    let ice = |base: String| {
        let (http, token) = (e.http.clone(), token.clone());
        async move { http.post(format!("{base}/v1/ice/credentials")).bearer_auth(token).send().await.unwrap().status() }
    };
    assert_eq!(ice(other.base.clone()).await, StatusCode::OK, "the other instance has the session cached");
    let (s, _) = e.post("/v1/auth/logout", Some(&token), json!({})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let logged_out = Instant::now();
    // The bound documented (store::READ_CACHE_TTL, 1 s), with room for a slow machine.
    loop {
        if ice(other.base.clone()).await == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(logged_out.elapsed() < Duration::from_millis(1500), "the other instance still accepts the session");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The key of the advisory lock that serialises audit appends (store/engine.rs).
const AUDIT_LOCK_KEY: i64 = 0x7465_6c65_7469_7001;

#[tokio::test]
async fn a_full_write_queue_answers_503_problem_json_with_retry_after() {
    for engine in engines() {
        let e = env_with(engine, &format!("{RELAXED_LIMITS}\n[ice]\nwrite-queue = 2\n")).await;
        let admin = e.admin().await;
        let (token, _) = e.user_token(&admin, "pat@example.test", "patient").await;
        let (s, body) = e.post("/v1/ice/credentials", Some(&token), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        // Stall the writer: another connection holds the write lock (SQLite) or the chain's lock
        // (PostgreSQL), as a slow disk or a long audited transaction would.
        let url = e.control.database_url.clone();
        let (hold, held) = tokio::sync::oneshot::channel::<()>();
        let (locked, is_locked) = tokio::sync::oneshot::channel::<()>();
        let holder = tokio::spawn(async move {
            match engine {
                Engine::Sqlite => {
                    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
                    sqlx::query("BEGIN IMMEDIATE").execute(&mut c).await.unwrap();
                    locked.send(()).unwrap();
                    let _ = held.await;
                    sqlx::query("COMMIT").execute(&mut c).await.unwrap();
                }
                Engine::Postgres => {
                    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
                    sqlx::query("SELECT pg_advisory_lock($1)").bind(AUDIT_LOCK_KEY).execute(&mut c).await.unwrap();
                    locked.send(()).unwrap();
                    let _ = held.await;
                    sqlx::query("SELECT pg_advisory_unlock($1)").bind(AUDIT_LOCK_KEY).execute(&mut c).await.unwrap();
                }
            }
        });
        is_locked.await.unwrap();
        let requests = {
            let (http, base, token) = (e.http.clone(), e.control.base.clone(), token.clone());
            tokio::spawn(async move { burst(&http, &base, &token, 20).await })
        };
        tokio::time::sleep(Duration::from_millis(1500)).await;
        hold.send(()).unwrap();
        holder.await.unwrap();
        let answers = requests.await.unwrap();
        let mut issued = HashSet::new();
        let mut refused = 0;
        for (status, headers, body) in &answers {
            match *status {
                StatusCode::OK => {
                    issued.insert(session_id(body));
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert_problem(*status, body, StatusCode::SERVICE_UNAVAILABLE, "a full write queue");
                    assert_eq!(headers["retry-after"], "1", "Retry-After on a full queue: {body}");
                    assert_eq!(headers["content-type"], "application/problem+json");
                    refused += 1;
                }
                other => panic!("{engine:?}: {other} {body}"),
            }
        }
        // The writer holds one batch (at most the queue's 2) and the queue 2 more.
        assert!(refused >= 16, "{engine:?}: {refused} refused of 20 with a queue of 2");
        assert!(!issued.is_empty(), "{engine:?}: the queued requests are answered once the lock is released");
        let (rows, _) = recorded(engine, &e.control.database_url).await;
        assert!(issued.is_subset(&rows), "{engine:?}: every credential answered is recorded");
        chain_verified(&e, &admin).await;
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[tokio::test]
async fn a_kill_under_load_loses_no_credential_that_was_answered() {
    for engine in engines() {
        let mut e = env(engine).await;
        let admin = e.admin().await;
        let (token, _) = e.user_token(&admin, "pat@example.test", "patient").await;
        // 16 workers request credentials back to back; the control plane is killed (SIGKILL:
        // no shutdown, no flush) while they run.
        let workers: Vec<_> = (0..16)
            .map(|_| {
                let (http, base, token) = (e.http.clone(), e.control.base.clone(), token.clone());
                tokio::spawn(async move {
                    let mut answered = Vec::new();
                    loop {
                        let Ok(res) = http.post(format!("{base}/v1/ice/credentials")).bearer_auth(&token).send().await
                        else {
                            return answered;
                        };
                        if res.status() != StatusCode::OK {
                            continue;
                        }
                        // A body cut off by the kill was never received: it does not count.
                        let Ok(text) = res.text().await else { return answered };
                        answered.push(session_id(&serde_json::from_str(&text).unwrap()));
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // SAFETY: signalling our own child process.
        unsafe { libc_kill(e.control.pid() as i32, 9) };
        let mut answered = HashSet::new();
        for w in workers {
            answered.extend(w.await.unwrap());
        }
        assert!(answered.len() > 50, "{engine:?}: only {} credentials before the kill", answered.len());
        let (rows, events) = recorded(engine, &e.control.database_url).await;
        let lost: Vec<_> = answered.difference(&rows).collect();
        assert!(lost.is_empty(), "{engine:?}: answered credentials without a session row: {lost:?}");
        assert!(answered.is_subset(&events), "{engine:?}: answered credentials without an audit event");
        // The chain written up to the kill is whole: started again, the service verifies it.
        // (`restart` reaps the killed process; its SIGTERM finds nobody.)
        e.control = e.control.restart();
        let admin = e.admin().await;
        chain_verified(&e, &admin).await;
    }
}
