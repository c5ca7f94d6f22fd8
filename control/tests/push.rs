//! Web Push subscriptions (issue 25 item 2) against the real binary, on both engines: the
//! VAPID public key, strict validation with precise problems, who may subscribe, each user
//! seeing and removing only their own, the per-user limit, the audit trail, and everything
//! answering 404 while Web Push is off. Delivery itself (encryption, VAPID, 410, retries) is
//! proven against an independent implementation in tests/signaling/push.test.js.

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::clinic::{Clinic, clinic, clinic_with, query_i64};
use support::engines;
use support::http::assert_problem;

/// RFC 8291 Appendix A's browser key and auth secret: a valid P-256 point and 16 bytes.
const P256DH: &str = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

const WEB_PUSH: &str = "[notifications]\nweb-push = true\nvapid-subject = \"mailto:ops@hospital.test\"\n\
    web-push-hosts = [\"127.0.0.1\"]\nweb-push-allow-http = true\nweb-push-max-subscriptions = 2\n";

fn subscription(endpoint: &str) -> Value {
    json!({"endpoint": endpoint, "expirationTime": null, "keys": {"p256dh": P256DH, "auth": AUTH}})
}

fn fields_named(body: &Value) -> Vec<String> {
    body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap().to_string()).collect()
}

async fn delete(c: &Clinic, path: &str, token: &str) -> StatusCode {
    c.e.http.delete(c.e.control.url(path)).bearer_auth(token).send().await.unwrap().status()
}

#[tokio::test]
async fn subscriptions_are_validated_strictly_and_each_user_holds_only_their_own() {
    for engine in engines() {
        let c = clinic_with(engine, WEB_PUSH).await;
        let (s, key) = c.e.get("/v1/push/vapid-public-key", None).await;
        assert_eq!(s, StatusCode::OK, "{key}");
        let raw = URL_SAFE_NO_PAD.decode(key["publicKey"].as_str().unwrap()).unwrap();
        assert_eq!((raw.len(), raw[0]), (65, 0x04), "an uncompressed P-256 point");

        // Precise problems: the endpoint, each key, unknown fields, malformed JSON.
        let path = "/v1/me/push-subscriptions";
        for (body, fields) in [
            (subscription("https://push.example.net/x"), vec!["endpoint"]),
            (subscription("ftp://127.0.0.1/x"), vec!["endpoint"]),
            (
                json!({"endpoint": "http://127.0.0.1:9/p", "keys": {"p256dh": &P256DH[..43], "auth": AUTH}}),
                vec!["keys.p256dh"],
            ),
            (
                json!({"endpoint": "http://127.0.0.1:9/p", "keys": {"p256dh": P256DH, "auth": "AAAAAAAA"}}),
                vec!["keys.auth"],
            ),
            (
                json!({"endpoint": "http://u:p@127.0.0.1:9/p", "keys": {"p256dh": "***", "auth": ""}}),
                vec!["endpoint", "keys.p256dh", "keys.auth"],
            ),
        ] {
            let (s, p) = c.e.post(path, Some(&c.doctor), body.clone()).await;
            assert_problem(s, &p, StatusCode::UNPROCESSABLE_ENTITY, &body.to_string());
            assert_eq!(fields_named(&p), fields, "{p}");
        }
        let mut off_curve = URL_SAFE_NO_PAD.decode(P256DH).unwrap();
        off_curve[64] ^= 1;
        let body = json!({"endpoint": "http://127.0.0.1:9/p", "keys": {"p256dh": URL_SAFE_NO_PAD.encode(off_curve), "auth": AUTH}});
        let (s, p) = c.e.post(path, Some(&c.doctor), body).await;
        assert_problem(s, &p, StatusCode::UNPROCESSABLE_ENTITY, "a key off the curve");
        assert!(p["detail"].as_str().unwrap().contains("P-256"), "{p}");
        let (s, p) =
            c.e.post(
                path,
                Some(&c.doctor),
                json!({"endpoint": "http://127.0.0.1:9/p", "keys": {"p256dh": P256DH, "auth": AUTH}, "extra": 1}),
            )
            .await;
        assert_problem(s, &p, StatusCode::UNPROCESSABLE_ENTITY, "an unknown field");
        let res =
            c.e.http
                .post(c.e.control.url(path))
                .bearer_auth(&c.doctor)
                .header("content-type", "application/json")
                .body("{\"endpoint\":")
                .send()
                .await
                .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);

        // Only practitioners subscribe: the events pushed are about their appointments.
        for (who, token) in [("a patient", &c.patient), ("an admin", &c.admin)] {
            let (s, p) = c.e.post(path, Some(token), subscription("http://127.0.0.1:9/p")).await;
            assert_problem(s, &p, StatusCode::FORBIDDEN, who);
        }
        let (s, _) = c.e.post(path, None, subscription("http://127.0.0.1:9/p")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);

        // Subscribing the same browser again keeps one subscription.
        let (s, first) = c.e.post(path, Some(&c.doctor), subscription("http://127.0.0.1:9/push/a")).await;
        assert_eq!(s, StatusCode::CREATED, "{first}");
        assert_eq!(first["pushService"], "http://127.0.0.1:9");
        assert!(first.get("endpoint").is_none(), "the endpoint is not shown again: {first}");
        let (s, again) = c.e.post(path, Some(&c.doctor), subscription("http://127.0.0.1:9/push/a")).await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(again["id"], first["id"]);
        let (s, second) = c.e.post(path, Some(&c.doctor), subscription("http://127.0.0.1:9/push/b")).await;
        assert_eq!(s, StatusCode::CREATED, "{second}");
        let (s, p) = c.e.post(path, Some(&c.doctor), subscription("http://127.0.0.1:9/push/c")).await;
        assert_problem(s, &p, StatusCode::UNPROCESSABLE_ENTITY, "past the limit");
        assert_eq!(p["type"], "/problems/push-subscription-limit");
        let (_, mine) = c.e.get(path, Some(&c.doctor)).await;
        assert_eq!(mine.as_array().unwrap().len(), 2, "{mine}");

        // Another practitioner sees none of them and cannot remove one.
        let (other, _) = c.e.user_token(&c.admin, "dr.demir@hospital.test", "practitioner").await;
        let (s, theirs) = c.e.get(path, Some(&other)).await;
        assert_eq!((s, theirs), (StatusCode::OK, json!([])));
        let first_path = format!("{path}/{}", first["id"].as_str().unwrap());
        assert_eq!(delete(&c, &first_path, &other).await, StatusCode::NOT_FOUND);
        assert_eq!(delete(&c, &first_path, &c.doctor).await, StatusCode::NO_CONTENT);
        assert_eq!(delete(&c, &first_path, &c.doctor).await, StatusCode::NOT_FOUND);
        let (_, mine) = c.e.get(path, Some(&c.doctor)).await;
        assert_eq!(mine.as_array().unwrap().len(), 1);

        // Stored encrypted, audited.
        let clear =
            query_i64(&c, "SELECT COUNT(*) FROM push_subscriptions WHERE subscription LIKE '%127.0.0.1%'").await;
        assert_eq!(clear, 0, "the endpoint is not stored in clear");
        assert_eq!(
            query_i64(&c, "SELECT COUNT(*) FROM audit_events WHERE action = 'push.subscribe' AND outcome = 'success'")
                .await,
            3
        );
        assert_eq!(
            query_i64(
                &c,
                "SELECT COUNT(*) FROM audit_events WHERE action = 'push.subscribe' AND outcome = 'refused:limit'"
            )
            .await,
            1
        );
        assert_eq!(query_i64(&c, "SELECT COUNT(*) FROM audit_events WHERE action = 'push.unsubscribe'").await, 1);
    }
}

#[tokio::test]
async fn with_web_push_off_the_routes_answer_404() {
    for engine in engines() {
        let c = clinic(engine).await;
        let (s, p) = c.e.get("/v1/push/vapid-public-key", None).await;
        assert_problem(s, &p, StatusCode::NOT_FOUND, "no key while off");
        let (s, p) =
            c.e.post("/v1/me/push-subscriptions", Some(&c.doctor), subscription("https://fcm.googleapis.com/x")).await;
        assert_problem(s, &p, StatusCode::NOT_FOUND, "no subscription while off");
    }
}
