//! The control plane's log holds no personal data (issue 22): the real binary with JSON logs at
//! debug level serves a broad flow (failed and successful logins, users, patient records with
//! names, national ids, phones and e-mails, searches by them, consents, bookings, FHIR, ICE
//! credentials, refresh, a password change), and then no line of its log holds any name,
//! national id, e-mail, phone, password or token of the flow. Every line is JSON, and the lines
//! of a request carry the request id its response names.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::http::*;
use support::{Control, engines, fresh_database};

const PATIENT_NAME: &str = "Zeynep Çalışkan";
const NATIONAL_ID: &str = "98765432109";
const PHONE: &str = "+90 533 444 55 66";
const PATIENT_EMAIL: &str = "zeynep.caliskan@example.org";
const DOCTOR_NAME: &str = "Dr. Mehmet Öztürk";
const DOCTOR_EMAIL: &str = "m.ozturk@hospital.test";
const PASSWORD: &str = "a long enough passphrase";
const NEW_PASSWORD: &str = "another quite long passphrase";
const WRONG_PASSWORD: &str = "not the right passphrase at all";

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_holds_personal_data_or_secrets() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_database(engine, dir.path()).await;
        let log = dir.path().join("control.log");
        let extra = format!("log-format = \"json\"\n{RELAXED_LIMITS}");
        let control = Control::start_logging(dir.path(), &url, &extra, "debug", &log);
        let out = control.cli(
            &["user", "add", "--role", "admin", "--email", ADMIN_EMAIL, "--name", "Ada Admin"],
            &format!("{ADMIN_PASSWORD}\n"),
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let e = Env { control, http: reqwest::Client::new(), engine, _dir: dir };
        let mut secrets: Vec<String> =
            [PATIENT_NAME, NATIONAL_ID, PHONE, "5334445566", PATIENT_EMAIL, DOCTOR_NAME, DOCTOR_EMAIL, ADMIN_EMAIL]
                .iter()
                .chain(&[PASSWORD, NEW_PASSWORD, WRONG_PASSWORD, ADMIN_PASSWORD, "Ada Admin", "sulfa allergy"])
                .map(|s| s.to_string())
                .collect();

        // Failed logins: a wrong password, an unknown account.
        let (s, _) = e.login(ADMIN_EMAIL, WRONG_PASSWORD).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _) = e.login("nobody.here@example.org", WRONG_PASSWORD).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        secrets.push("nobody.here@example.org".into());
        let (s, login) = e.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        assert_eq!(s, StatusCode::OK);
        let admin = login["accessToken"].as_str().unwrap().to_string();
        secrets.push(admin.clone());
        secrets.push(login["refreshToken"].as_str().unwrap().into());

        let (s, doctor_user) = e
            .post("/v1/users", Some(&admin), json!({"email": DOCTOR_EMAIL, "displayName": DOCTOR_NAME, "role": "practitioner", "password": PASSWORD}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{doctor_user}");
        let (s, practitioner) = e
            .post("/v1/practitioners", Some(&admin), json!({"displayName": DOCTOR_NAME, "specialty": "cardiology", "timeZone": "Europe/Istanbul", "userId": doctor_user["id"]}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{practitioner}");
        support::clinic::open_all_hours(&e, &admin, practitioner["id"].as_str().unwrap()).await;
        let (s, patient_user) = e
            .post(
                "/v1/users",
                Some(&admin),
                json!({"email": PATIENT_EMAIL, "displayName": PATIENT_NAME, "role": "patient", "password": PASSWORD}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{patient_user}");
        let (s, login) = e.login(PATIENT_EMAIL, PASSWORD).await;
        assert_eq!(s, StatusCode::OK);
        let patient = login["accessToken"].as_str().unwrap().to_string();
        let refresh = login["refreshToken"].as_str().unwrap().to_string();
        secrets.extend([patient.clone(), refresh.clone()]);

        let (s, record) = e
            .post("/v1/patients", Some(&patient), json!({"displayName": PATIENT_NAME, "birthDate": "1975-05-17", "nationalId": NATIONAL_ID, "phone": PHONE, "email": PATIENT_EMAIL, "notes": "sulfa allergy", "userId": patient_user["id"]}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{record}");
        let record_id = record["id"].as_str().unwrap().to_string();
        // Searches put identifiers into query strings.
        secrets.extend([urlencode(PHONE), urlencode(PATIENT_EMAIL)]);
        for query in [
            format!("nationalId={NATIONAL_ID}"),
            format!("phone={}", urlencode(PHONE)),
            format!("email={}", urlencode(PATIENT_EMAIL)),
        ] {
            let (s, found) = e.get(&format!("/v1/patients?{query}"), Some(&admin)).await;
            assert_eq!(s, StatusCode::OK, "{found}");
        }
        let (s, _) = e.get(&format!("/v1/patients/{record_id}"), Some(&admin)).await;
        assert_eq!(s, StatusCode::OK);
        let res = e
            .http
            .get(e.control.url(&format!("/fhir/R4/Patient/{record_id}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);

        let (s, body) = e
            .post(
                "/v1/privacy-notices",
                Some(&admin),
                json!({"version": "v1", "language": "tr", "title": "Aydınlatma", "body": "Metin.",
                "purposes": [{"code": "health-data-processing", "required": true, "description": "Consultation"}]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        let (s, body) = e
            .post(
                "/v1/me/consents",
                Some(&patient),
                json!({"noticeVersion": "v1", "purpose": "health-data-processing", "decision": "given"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        let start = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap().replace_second(0).unwrap()
            + time::Duration::hours(30);
        let (s, booking) = e
            .post("/v1/appointments", Some(&patient), json!({"practitionerId": practitioner["id"], "patientId": record_id, "start": rfc3339(start), "end": rfc3339(start + time::Duration::minutes(30))}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{booking}");
        // A problem response: its request id must be in the log lines of that request.
        let res = e
            .http
            .get(e.control.url("/v1/patients/00000000-0000-4000-8000-000000000000"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        let header_id = res.headers()["x-request-id"].to_str().unwrap().to_string();
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["requestId"], header_id.as_str());

        let (s, ice) = e.post("/v1/ice/credentials", Some(&patient), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{ice}");
        for server in ice["iceServers"].as_array().unwrap() {
            if let Some(credential) = server["credential"].as_str() {
                secrets.push(credential.into());
            }
        }
        let (s, refreshed) = e.post("/v1/auth/refresh", None, json!({"refreshToken": refresh})).await;
        assert_eq!(s, StatusCode::OK, "{refreshed}");
        secrets.push(refreshed["accessToken"].as_str().unwrap().into());
        secrets.push(refreshed["refreshToken"].as_str().unwrap().into());
        let (s, body) = e
            .patch(
                &format!("/v1/users/{}", patient_user["id"].as_str().unwrap()),
                Some(&admin),
                json!({"password": NEW_PASSWORD}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let (s, _) = e.login(PATIENT_EMAIL, NEW_PASSWORD).await;
        assert_eq!(s, StatusCode::OK);

        let Env { control, .. } = e;
        control.stop();
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() > 50, "{engine:?}: a debug-level run logs more than {} lines", lines.len());
        let mut with_id = 0;
        for line in &lines {
            let parsed: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{engine:?}: not a JSON line ({e}): {line}"));
            if parsed["span"]["request_id"] == header_id.as_str() {
                with_id += 1;
            }
            for secret in &secrets {
                assert!(!line.contains(secret.as_str()), "{engine:?}: {secret:?} is in the log: {line}");
            }
        }
        assert!(with_id > 0, "{engine:?}: no log line carries the request id {header_id}");
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
