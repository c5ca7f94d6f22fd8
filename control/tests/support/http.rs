//! Talking to a running control plane over HTTP, as the API tests do.

#![allow(dead_code)]

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Control, Engine, fresh_database};

pub const ADMIN_EMAIL: &str = "admin@hospital.test";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";
pub const RELAXED_LIMITS: &str = "[rate-limit]\nper-ip-per-second = 1000\nper-ip-burst = 1000\nper-account-per-second = 1000\nper-account-burst = 1000\n";

pub struct Env {
    pub control: Control,
    pub http: reqwest::Client,
    pub engine: Engine,
    pub _dir: tempfile::TempDir,
}

pub async fn env_with(engine: Engine, extra: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(engine, dir.path()).await;
    let control = Control::start(dir.path(), &url, extra);
    let out = control.cli(
        &["user", "add", "--role", "admin", "--email", ADMIN_EMAIL, "--name", "Ada Admin"],
        &format!("{ADMIN_PASSWORD}\n"),
    );
    assert!(out.status.success(), "user add: {}", String::from_utf8_lossy(&out.stderr));
    Env { control, http: reqwest::Client::new(), engine, _dir: dir }
}

pub async fn env(engine: Engine) -> Env {
    env_with(engine, RELAXED_LIMITS).await
}

impl Env {
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut req = self.http.post(self.control.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.send(self.http.patch(self.control.url(path)), token, body).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.send(self.http.put(self.control.url(path)), token, body).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> StatusCode {
        let mut req = self.http.delete(self.control.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap().status()
    }

    async fn send(&self, req: reqwest::RequestBuilder, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut req = req.json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.get(self.control.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn login(&self, email: &str, password: &str) -> (StatusCode, Value) {
        self.post("/v1/auth/login", None, json!({"email": email, "password": password})).await
    }

    pub async fn admin(&self) -> String {
        let (s, body) = self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        body["accessToken"].as_str().unwrap().to_string()
    }

    pub async fn create_user(&self, admin: &str, email: &str, role: &str) -> Value {
        let (s, body) = self
            .post("/v1/users", Some(admin), json!({"email": email, "displayName": "Test Person", "role": role, "password": "a long enough passphrase"}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        body
    }

    pub async fn user_token(&self, admin: &str, email: &str, role: &str) -> (String, String) {
        let user = self.create_user(admin, email, role).await;
        let (s, body) = self.login(email, "a long enough passphrase").await;
        assert_eq!(s, StatusCode::OK);
        (body["accessToken"].as_str().unwrap().into(), user["id"].as_str().unwrap().into())
    }
}

pub fn assert_problem(status: StatusCode, body: &Value, expected: StatusCode, context: &str) {
    assert_eq!(status, expected, "{context}: {body}");
    assert_eq!(body["status"], expected.as_u16(), "{context}: {body}");
    assert!(body["type"].as_str().is_some_and(|t| t.starts_with("/problems/")), "{context}: {body}");
    assert!(body["title"].is_string(), "{context}: {body}");
    assert!(body["requestId"].is_string(), "{context}: every problem carries the request id: {body}");
}
