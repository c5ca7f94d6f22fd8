//! Issue 22 item 1, the control plane's half: the client's address behind trusted proxies
//! (rate limits, login throttle, audit), CORS for configured origins only, and the security
//! headers on every answer. Against the real binary, from several loopback source addresses
//! (the service listens on 127.0.0.1 and sees 127.0.0.x as the peer).

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::Engine;
use support::http::{ADMIN_EMAIL, ADMIN_PASSWORD, RELAXED_LIMITS, env_with};

const PROXY: [u8; 4] = [127, 0, 0, 9];
const STRANGER: [u8; 4] = [127, 0, 0, 66];

/// A login attempt from `source` with extra headers: the status.
async fn login_via(e: &support::http::Env, source: [u8; 4], headers: &[(&str, &str)], password: &str) -> StatusCode {
    let client = reqwest::Client::builder().local_address(std::net::IpAddr::from(source)).build().unwrap();
    let mut req =
        client.post(e.control.url("/v1/auth/login")).json(&json!({"email": ADMIN_EMAIL, "password": password}));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap().status()
}

/// The source addresses of the audited logins, oldest first.
async fn login_sources(e: &support::http::Env, admin: &str) -> Vec<String> {
    login_events(e, admin).await.into_iter().map(|(source, _)| source).collect()
}

/// The (source address, outcome) of the audited logins, oldest first.
async fn login_events(e: &support::http::Env, admin: &str) -> Vec<(String, String)> {
    let (_, audit) = e.get("/v1/audit?action=auth.login&limit=100", Some(admin)).await;
    let mut events: Vec<(i64, String, String)> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ev| {
            let source = ev["sourceIp"].as_str().unwrap_or("").to_string();
            (ev["seq"].as_i64().unwrap_or(0), source, ev["outcome"].as_str().unwrap_or("").to_string())
        })
        .collect();
    events.sort();
    events.into_iter().map(|(_, source, outcome)| (source, outcome)).collect()
}

/// Spoofed `X-Forwarded-For` and `Forwarded` from a peer that is no trusted proxy change
/// nothing: it still has one rate-limit bucket, and the audit records its own address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let e = env_with(
        Engine::Sqlite,
        "trusted-proxies = [\"127.0.0.9/32\"]\n[rate-limit]\nper-ip-per-second = 1\nper-ip-burst = 3\n",
    )
    .await;
    let mut statuses = Vec::new();
    for n in 1..=5 {
        let spoof = format!("198.51.100.{n}");
        let forwarded = format!("for=198.51.100.{}", n + 100);
        let headers = [("x-forwarded-for", spoof.as_str()), ("forwarded", forwarded.as_str())];
        statuses.push(login_via(&e, STRANGER, &headers, "wrong password entirely").await.as_u16());
    }
    assert_eq!(&statuses[..3], &[401, 401, 401], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "one bucket whatever the headers say: {statuses:?}");
    // The admin logs in from another address (its own bucket) and reads the trail.
    let admin_status = login_via(&e, [127, 0, 0, 10], &[], ADMIN_PASSWORD).await;
    assert_eq!(admin_status, StatusCode::OK);
    let (_, body) = e.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let admin = body["accessToken"].as_str().unwrap().to_string();
    let sources = login_sources(&e, &admin).await;
    let failed: Vec<&String> =
        sources.iter().filter(|s| s.as_str() != "127.0.0.10" && s.as_str() != "127.0.0.1").collect();
    assert!(!failed.is_empty() && failed.iter().all(|s| *s == "127.0.0.66"), "{sources:?}");
}

/// From a trusted proxy, the right-most address of `X-Forwarded-For` that is not a trusted
/// proxy (else `Forwarded: for=`) is the client: its own rate-limit bucket, its own login
/// throttle, its address in the audit trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_names_the_client() {
    let e = env_with(
        Engine::Sqlite,
        "trusted-proxies = [\"127.0.0.9/32\", \"10.0.0.0/8\"]\n[rate-limit]\nper-ip-per-second = 1\nper-ip-burst = 3\n\
         [auth]\nthrottle-after = 2\nthrottle-base-seconds = 60\n",
    )
    .await;
    let one = [("x-forwarded-for", "6.6.6.6, 203.0.113.5, 10.1.2.3")];
    let two = [("x-forwarded-for", "203.0.113.6")];
    let mut first = Vec::new();
    for _ in 0..4 {
        first.push(login_via(&e, PROXY, &one, "wrong password entirely").await.as_u16());
    }
    // Two failures are free and block the pair for 60 s; then 203.0.113.5 waits (its throttle,
    // or its rate-limit bucket of 3), while 203.0.113.6 behind the same proxy, after those four
    // requests, still has its own bucket and no throttle.
    assert_eq!(first, [401, 401, 429, 429]);
    assert_eq!(login_via(&e, PROXY, &two, ADMIN_PASSWORD).await, StatusCode::OK, "another client, another bucket");
    let forwarded = [("forwarded", r#"for="[2001:db8::7]:4711";proto=https"#)];
    assert_eq!(login_via(&e, PROXY, &forwarded, ADMIN_PASSWORD).await, StatusCode::OK);
    let (_, body) = e.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let admin = body["accessToken"].as_str().unwrap().to_string();
    let events = login_events(&e, &admin).await;
    let of_first: Vec<&str> = events.iter().filter(|(s, _)| s == "203.0.113.5").map(|(_, o)| o.as_str()).collect();
    assert_eq!(&of_first[..3], ["failure:wrong-password", "failure:wrong-password-throttled", "refused:throttled"]);
    assert!(of_first[3..].iter().all(|o| *o == "refused:throttled"), "{of_first:?}");
    let sources = login_sources(&e, &admin).await;
    assert!(sources.contains(&"203.0.113.6".to_string()), "{sources:?}");
    assert!(sources.contains(&"2001:db8::7".to_string()), "{sources:?}");
    assert!(!sources.iter().any(|s| s == "127.0.0.9" || s == "6.6.6.6" || s == "10.1.2.3"), "{sources:?}");
}

/// Every answer carries the security headers; API answers are not cached; HSTS only when a
/// trusted proxy says the request came over HTTPS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_on_every_answer() {
    let e = env_with(Engine::Sqlite, &format!("trusted-proxies = [\"127.0.0.1/32\"]\n{RELAXED_LIMITS}")).await;
    for path in ["/v1/me", "/healthz", "/openapi.json", "/nowhere", "/", "/room/some-appointment"] {
        let res = e.http.get(e.control.url(path)).send().await.unwrap();
        let h = res.headers();
        for name in [
            "content-security-policy",
            "x-content-type-options",
            "referrer-policy",
            "x-frame-options",
            "permissions-policy",
            "cache-control",
        ] {
            assert!(h.contains_key(name), "{path}: {name} missing: {h:?}");
        }
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(h["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"), "{path}");
        assert!(h["permissions-policy"].to_str().unwrap().contains("camera=(self)"), "{path}");
        assert!(!h.contains_key("strict-transport-security"), "{path}: plain HTTP, no HSTS");
    }
    let res = e.http.get(e.control.url("/v1/me")).send().await.unwrap();
    assert_eq!(res.headers()["cache-control"], "no-store");
    // The web client keeps its own policy, which lets its scripts run.
    let res = e.http.get(e.control.url("/")).send().await.unwrap();
    assert!(res.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    // The client's own routes answer its page; other unknown paths stay the API's JSON 404.
    let res = e.http.get(e.control.url("/appointments")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let res = e.http.get(e.control.url("/v1/nowhere")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/problem+json"));
    let res = e.http.get(e.control.url("/healthz")).header("x-forwarded-proto", "https").send().await.unwrap();
    assert!(res.headers()["strict-transport-security"].to_str().unwrap().starts_with("max-age="));
}

/// Without `cors-allowed-origins` there is no CORS answer (same origin only); with it, only
/// the listed origins get one, preflight included, and never with credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_only_the_allowed_origins() {
    let preflight = |e: &support::http::Env, origin: &str| {
        e.http
            .request(reqwest::Method::OPTIONS, e.control.url("/v1/auth/login"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let e = env_with(Engine::Sqlite, RELAXED_LIMITS).await;
    let res = preflight(&e, "https://app.example.org").await.unwrap();
    assert!(!res.headers().contains_key("access-control-allow-origin"), "same origin only by default");
    let res = e.http.get(e.control.url("/healthz")).header("origin", "https://app.example.org").send().await.unwrap();
    assert!(!res.headers().contains_key("access-control-allow-origin"));
    drop(e);

    let e =
        env_with(Engine::Sqlite, &format!("cors-allowed-origins = [\"https://app.example.org\"]\n{RELAXED_LIMITS}"))
            .await;
    let res = preflight(&e, "https://app.example.org").await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example.org");
    assert!(res.headers()["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    assert!(!res.headers().contains_key("access-control-allow-credentials"));
    let res = preflight(&e, "https://evil.example.net").await.unwrap();
    assert!(!res.headers().contains_key("access-control-allow-origin"));
    let res = e
        .http
        .post(e.control.url("/v1/auth/login"))
        .header("origin", "https://app.example.org")
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example.org");
    assert!(res.headers()["access-control-expose-headers"].to_str().unwrap().contains("x-request-id"));
    let body: Value = res.json().await.unwrap();
    assert!(body["accessToken"].is_string());
}

/// A bad setting is refused at start with a plain message.
#[test]
fn a_bad_origin_or_proxy_range_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (toml, says) in [
        ("cors-allowed-origins = [\"https://app.example.org/\"]", "cors-allowed-origins"),
        ("trusted-proxies = [\"10.0.0.0/33\"]", "trusted-proxies"),
    ] {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, format!("data-dir = \"{}\"\n{toml}\n", dir.path().display())).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_teletip-control"))
            .args(["--config", path.to_str().unwrap(), "migrate"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{toml}: {err}");
    }
}
