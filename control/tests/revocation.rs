//! Issue 20, the control plane's half of revocation, with the real `teletip-control` and a
//! relay's end of the control link (`support::link_peer`, through the `teletip-link` library
//! the relay uses): every trigger sends the right TURN sessions with their expiry to a relay
//! connected now; a relay that registers later, and one that registers after a control-plane
//! restart, is sent every revocation still in force; with Redis, a revocation made on one
//! instance reaches a relay connected to another. Bad input: malformed ids are 400 problems,
//! unknown ids are accepted, only admins may revoke; every revocation is audited with who and
//! why.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::clinic::{act, clinic_with};
use support::http::*;
use support::link_peer::LinkPeer;
use support::pki::{free_udp_port, link_config, link_pki, relay_link_table};
use support::redis_server::redis_server;
use support::{Engine, engines};

/// How long a revocation may take to reach a connected relay here (the target is 1 s from
/// the API call to the relay's last packet; the send itself is a few milliseconds).
const AT_ONCE: Duration = Duration::from_secs(1);

/// The session id and expiry of a username `<expiry>:<id>`.
fn session_of(username: &str) -> (String, u64) {
    let (expiry, id) = username.split_once(':').expect("a REST username");
    (id.to_owned(), expiry.parse().unwrap())
}

/// The session id and expiry of an ICE answer's credential (its last server is a TURN one).
fn session_in(ice: &Value) -> (String, u64) {
    session_of(ice["iceServers"].as_array().unwrap().last().unwrap()["username"].as_str().unwrap())
}

/// A fresh ICE credential of `token`'s account: its session id and expiry.
async fn credential(e: &Env, token: &str) -> (String, u64) {
    let (s, body) = e.post("/v1/ice/credentials", Some(token), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    session_in(&body)
}

/// The consultation credentials of appointment `id` for its patient and its practitioner
/// (`POST /v1/appointments/{id}/session`): session id and expiry of each.
async fn consultation_sessions(c: &support::clinic::Clinic, id: &str) -> Vec<(String, u64)> {
    let mut sessions = Vec::new();
    for token in [&c.patient, &c.doctor] {
        let (s, session) = c.e.post(&format!("/v1/appointments/{id}/session"), Some(token), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{session}");
        sessions.push(session_in(&session["ice"]));
    }
    sessions
}

async fn my_id(e: &Env, token: &str) -> String {
    e.get("/v1/me", Some(token)).await.1["id"].as_str().unwrap().to_owned()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_trigger_revokes_its_sessions_on_relays_connected_now_later_and_after_a_restart() {
    for engine in engines() {
        let pki = link_pki(&["relay-a.test", "relay-b.test", "relay-c.test"]);
        let link_port = free_udp_port();
        let extra = format!(
            "[scheduling]\nsweep-interval-seconds = 1\n[[ice.relays]]\nhost = \"static.invalid\"\nudp-port = 3478\n{}",
            relay_link_table(pki.path(), link_port)
        );
        let c = clinic_with(engine, &extra).await;
        let e = &c.e;
        let a = LinkPeer::register(pki.path(), "relay-a.test", link_port).await;
        let admin_id = my_id(e, &c.admin).await;
        let patient_id = my_id(e, &c.patient).await;

        // An admin revokes one session: the relay gets it with its credential's expiry.
        let (s1, expires1) = credential(e, &c.patient).await;
        let (s2, expires2) = credential(e, &c.patient).await;
        let (s, body) = e.post(&format!("/v1/ice/sessions/{s1}/revoke"), Some(&c.admin), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{engine:?}: {body}");
        assert_eq!(body["revoked"].as_array().unwrap().len(), 1, "{body}");
        assert_eq!(body["revoked"][0]["id"], s1.as_str());
        let got = a.await_revoked(&[&s1], AT_ONCE).await;
        assert_eq!(got[&s1], expires1, "{engine:?}: the credential's own expiry");
        assert!(!got.contains_key(&s2), "{engine:?}: only the session named");

        // Only admins; malformed ids are precise 400 problems; an unknown user is a 404.
        for (token, who) in [(&c.patient, "a patient"), (&c.doctor, "a practitioner")] {
            let (s, p) = e.post(&format!("/v1/ice/sessions/{s2}/revoke"), Some(token), json!({})).await;
            assert_problem(s, &p, StatusCode::FORBIDDEN, who);
            let (s, p) = e.post(&format!("/v1/users/{patient_id}/revoke-sessions"), Some(token), json!({})).await;
            assert_problem(s, &p, StatusCode::FORBIDDEN, who);
        }
        for bad in ["short", "AAAAAAAAAAAAAAAAAA", "AAAAAAAA%2BAAAAAAA", "1796000000:AAAAAAAAAAAAAAAA"] {
            let (s, p) = e.post(&format!("/v1/ice/sessions/{bad}/revoke"), Some(&c.admin), json!({})).await;
            assert_problem(s, &p, StatusCode::BAD_REQUEST, bad);
            assert!(p["detail"].as_str().unwrap().contains("16 URL-safe base64"), "{bad}: {p}");
        }
        let (s, p) = e.post("/v1/users/not-a-uuid/revoke-sessions", Some(&c.admin), json!({})).await;
        assert_problem(s, &p, StatusCode::BAD_REQUEST, "a malformed user id");
        let (s, p) =
            e.post(&format!("/v1/users/{}/revoke-sessions", uuid::Uuid::new_v4()), Some(&c.admin), json!({})).await;
        assert_problem(s, &p, StatusCode::NOT_FOUND, "an unknown user");
        assert!(!a.revoked().contains_key(&s2), "{engine:?}: refused requests revoke nothing");

        // An id no credential was issued with is accepted and expires harmlessly: revoked for
        // the longest credential lifetime (a 240-minute consultation and its window).
        let unknown = "AAAAAAAAAAAAAAAA";
        let (s, body) = e.post(&format!("/v1/ice/sessions/{unknown}/revoke"), Some(&c.admin), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let got = a.await_revoked(&[unknown], AT_ONCE).await;
        let longest = (240 + 15 + 30) * 60;
        assert!((unix_now() + longest - 5..=unix_now() + longest).contains(&got[unknown]), "{got:?}");

        // Every session of a user.
        let (s, body) = e.post(&format!("/v1/users/{patient_id}/revoke-sessions"), Some(&c.admin), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let ids: Vec<&str> = body["revoked"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert!(ids.contains(&s1.as_str()) && ids.contains(&s2.as_str()), "{ids:?}");
        assert_eq!(a.await_revoked(&[&s2], AT_ONCE).await[&s2], expires2);

        // Logout revokes the sessions issued under that login, and no other.
        let (other_kept, _) = credential(e, &c.other_patient).await;
        let (s, second_login) = e.login("john@example.org", "a long enough passphrase").await;
        assert_eq!(s, StatusCode::OK);
        let second = second_login["accessToken"].as_str().unwrap();
        let (s3, _) = credential(e, second).await;
        assert_eq!(e.post("/v1/auth/logout", Some(second), json!({})).await.0, StatusCode::NO_CONTENT);
        a.await_revoked(&[&s3], AT_ONCE).await;
        assert!(!a.revoked().contains_key(&other_kept), "{engine:?}: the other login's session stays");

        // A cancelled appointment revokes the consultation sessions issued for it (both sides).
        let f = &time::format_description::well_known::Rfc3339;
        let soon = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap().replace_second(0).unwrap()
            + time::Duration::minutes(5);
        let book = |start: time::OffsetDateTime| {
            json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record,
                   "start": start.format(f).unwrap(), "end": (start + time::Duration::minutes(20)).format(f).unwrap()})
        };
        let (s, appointment) = e.post("/v1/appointments", Some(&c.admin), book(soon)).await;
        assert_eq!(s, StatusCode::CREATED, "{appointment}");
        let id = appointment["id"].as_str().unwrap();
        let consultation = consultation_sessions(&c, id).await;
        let (unrelated, _) = credential(e, &c.patient).await;
        let (s, body) = act(&c, id, &c.doctor, "cancel", json!({"reason": "practitioner ill"})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let got = a.await_revoked(&[&consultation[0].0, &consultation[1].0], AT_ONCE).await;
        for (session, expires) in &consultation {
            assert_eq!(got[session], *expires, "{engine:?}: until the join window closes");
        }
        assert!(!got.contains_key(&unrelated), "{engine:?}: a credential not for the appointment stays");

        // Erasure revokes the account's sessions.
        let (erased, _) = e.user_token(&c.admin, "erase.me@example.org", "patient").await;
        let (s4, _) = credential(e, &erased).await;
        let (s, body) = e.post("/v1/me/erasure", Some(&erased), json!({"password": "a long enough passphrase"})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        a.await_revoked(&[&s4], AT_ONCE).await;

        // A relay that registers now is sent every revocation still in force.
        let mut in_force: Vec<&str> = vec![&s1, &s2, unknown, &s3, &consultation[0].0, &consultation[1].0, &s4];
        let b = LinkPeer::register(pki.path(), "relay-b.test", link_port).await;
        let on_b = b.await_revoked(&in_force, Duration::from_secs(5)).await;
        assert_eq!(on_b, a.revoked(), "{engine:?}: B learns what A was told");

        // Who and why are in the audit trail.
        let (_, audit) = e.get("/v1/audit?action=ice.sessions.revoke", Some(&c.admin)).await;
        let events = audit["events"].as_array().unwrap();
        let find = |why: &str| -> Value {
            events
                .iter()
                .find(|ev| ev["target"].as_str().unwrap().ends_with(&format!("why:{why}")))
                .unwrap_or_else(|| panic!("{engine:?}: no revocation audited why:{why}: {audit}"))
                .clone()
        };
        let by_admin = find("admin");
        assert_eq!(by_admin["actor"], admin_id.as_str());
        assert!(events.iter().any(|ev| ev["target"] == format!("turn-sessions:1 of:turn-session:{s1} why:admin")));
        assert_eq!(find("logout")["target"].as_str().unwrap().split(' ').next(), Some("turn-sessions:1"));
        assert_eq!(
            find("appointment-cancelled")["target"],
            format!("turn-sessions:2 of:appointment:{id} why:appointment-cancelled")
        );
        assert_eq!(find("erasure")["outcome"], "success");
        assert_eq!(audit["chain"]["verified"], true, "{audit}");

        // After a restart, the store still has them: a relay registering then gets them all.
        let Env { control, http, engine: kept_engine, _dir } = c.e;
        let control = control.restart();
        let e = Env { control, http, engine: kept_engine, _dir };
        let c_peer = LinkPeer::register(pki.path(), "relay-c.test", link_port).await;
        let after_restart = c_peer.await_revoked(&in_force, Duration::from_secs(5)).await;
        assert_eq!(after_restart.len(), in_force.len(), "{engine:?}: {after_restart:?}");

        // The no-show sweeper (the system) revokes a no-show's consultation sessions.
        let admin = e.admin().await;
        let (s, patient_login) = e.login("ayse@example.org", "a long enough passphrase").await;
        assert_eq!(s, StatusCode::OK);
        let patient = patient_login["accessToken"].as_str().unwrap();
        let later = soon + time::Duration::minutes(30);
        let (_, missed) = e.post("/v1/appointments", Some(&admin), book(later)).await;
        let missed = missed["id"].as_str().unwrap().to_owned();
        e.control.set_clock(time::Duration::minutes(25));
        let (s, session) = e.post(&format!("/v1/appointments/{missed}/session"), Some(patient), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{session}");
        let (noshow, _) = session_in(&session["ice"]);
        // Past its start and the 15-minute grace: the sweeper (every second here) marks it.
        e.control.set_clock(time::Duration::minutes(25 + 30));
        c_peer.await_revoked(&[&noshow], Duration::from_secs(5)).await;
        let (_, audit) = e.get("/v1/audit?action=ice.sessions.revoke", Some(&admin)).await;
        let system = audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|ev| ev["target"] == format!("turn-sessions:1 of:appointment:{missed} why:appointment-noshow"));
        let system = system.unwrap_or_else(|| panic!("{engine:?}: {audit}"));
        assert_eq!((system["actor"].clone(), system["outcome"].clone()), (Value::Null, json!("success:system")));
        in_force.push(&noshow);
        drop((a, b));
    }
}

/// Two control instances on one Redis: a revocation made on the second reaches, at once, a
/// relay connected to the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_a_revocation_on_one_instance_reaches_relays_connected_to_another() {
    let Some(redis) = redis_server() else { return };
    let pki = link_pki(&["relay-a.test"]);
    let (port_1, port_2) = (free_udp_port(), free_udp_port());
    let shared = format!("redis-url = \"{}\"\n", redis.url);
    let one = env_with(Engine::Sqlite, &format!("{shared}{}", link_config(pki.path(), port_1))).await;
    let two = env_with(Engine::Sqlite, &format!("{shared}{}", link_config(pki.path(), port_2))).await;
    let admin_2 = two.admin().await;
    let (patient_2, _) = two.user_token(&admin_2, "patient.two@example.org", "patient").await;
    let a = LinkPeer::register(pki.path(), "relay-a.test", port_1).await;
    let (session, expires) = credential(&two, &patient_2).await;
    let (s, body) = two.post(&format!("/v1/ice/sessions/{session}/revoke"), Some(&admin_2), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let got = a.await_revoked(&[&session], AT_ONCE).await;
    assert_eq!(got[&session], expires);
    assert_eq!(a.revoke_frames(), 1, "sent once, not echoed back by the first instance");
    drop(one);
}

/// The control plane's half of the burst benchmark: 10,000 sessions of one user (written
/// straight into the database, as 10,000 logins would), revoked by one admin call, reach a
/// connected relay in frames of `REVOKE_BATCH`, and a relay that registers then gets them
/// all. Prints the times; the bound is loose (a shared CI machine), the numbers are the point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sessions_revoked_in_one_burst_reach_the_relays_in_batches() {
    const N: usize = 10_000;
    for engine in engines() {
        let pki = link_pki(&["relay-a.test", "relay-b.test"]);
        let link_port = free_udp_port();
        let c = clinic_with(engine, &relay_link_table(pki.path(), link_port)).await;
        let user = my_id(&c.e, &c.patient).await;
        let login = uuid::Uuid::new_v4();
        let statement = match engine {
            Engine::Sqlite => {
                let hex = |u: &str| u.replace('-', "");
                let micros = |s: u64| s * 1_000_000;
                format!(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {N})
                     INSERT INTO turn_sessions (id, expires_at, user_id, login_session, appointment_id, issued_at)
                     SELECT printf('burst%011d', i), {}, X'{}', X'{}', NULL, {} FROM n",
                    micros(unix_now() + 3600),
                    hex(&user),
                    hex(&login.to_string()),
                    micros(unix_now())
                )
            }
            Engine::Postgres => format!(
                "INSERT INTO turn_sessions (id, expires_at, user_id, login_session, appointment_id, issued_at)
                 SELECT 'burst' || lpad(i::text, 11, '0'), now() + interval '1 hour', '{user}', '{login}', NULL, now()
                 FROM generate_series(1, {N}) AS i"
            ),
        };
        support::clinic::exec_sql(&c, &[&statement]).await;
        let a = LinkPeer::register(pki.path(), "relay-a.test", link_port).await;
        let ids: Vec<String> = (1..=N).map(|i| format!("burst{i:011}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();

        let started = std::time::Instant::now();
        let (s, body) = c.e.post(&format!("/v1/users/{user}/revoke-sessions"), Some(&c.admin), json!({})).await;
        let answered = started.elapsed();
        assert_eq!(s, StatusCode::OK);
        assert_eq!(body["revoked"].as_array().unwrap().len(), N);
        a.await_revoked(&refs, Duration::from_secs(10)).await;
        let delivered = started.elapsed();
        assert_eq!(a.revoke_frames(), N.div_ceil(teletip_link::REVOKE_BATCH), "{engine:?}: full batches");

        let registering = std::time::Instant::now();
        let b = LinkPeer::register(pki.path(), "relay-b.test", link_port).await;
        b.await_revoked(&refs, Duration::from_secs(10)).await;
        let on_registration = registering.elapsed();
        eprintln!(
            "{engine:?}: {N} sessions revoked: API answered in {answered:?}, a connected relay had them all after \
             {delivered:?} ({} frames); a registering relay had them all {on_registration:?} after dialling",
            a.revoke_frames()
        );
    }
}

/// The other ways a login ends revoke its relay credentials too: a reused refresh token (the
/// system revokes that login's sessions) and an admin disabling an account (all its sessions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_refresh_token_and_a_disabled_account_revoke_their_sessions() {
    for engine in engines() {
        let pki = link_pki(&["relay-a.test"]);
        let link_port = free_udp_port();
        let c = clinic_with(engine, &relay_link_table(pki.path(), link_port)).await;
        let e = &c.e;
        let a = LinkPeer::register(pki.path(), "relay-a.test", link_port).await;

        let (s, stolen) = e.login("ayse@example.org", "a long enough passphrase").await;
        assert_eq!(s, StatusCode::OK);
        let (of_stolen, _) = credential(e, stolen["accessToken"].as_str().unwrap()).await;
        let (of_other_login, _) = credential(e, &c.patient).await;
        let spent = stolen["refreshToken"].as_str().unwrap();
        let (s, _) = e.post("/v1/auth/refresh", None, json!({"refreshToken": spent})).await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = e.post("/v1/auth/refresh", None, json!({"refreshToken": spent})).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{engine:?}: reuse");
        a.await_revoked(&[&of_stolen], AT_ONCE).await;
        assert!(!a.revoked().contains_key(&of_other_login), "{engine:?}: only the reused login's sessions");

        let (doctor_session, _) = credential(e, &c.doctor).await;
        let doctor = my_id(e, &c.doctor).await;
        let (s, body) = e.patch(&format!("/v1/users/{doctor}"), Some(&c.admin), json!({"disabled": true})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        a.await_revoked(&[&doctor_session], AT_ONCE).await;

        let (_, audit) = e.get("/v1/audit?action=ice.sessions.revoke", Some(&c.admin)).await;
        let targets: Vec<(&str, &Value)> = audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ev| (ev["target"].as_str().unwrap(), &ev["actor"]))
            .collect();
        assert!(
            targets.iter().any(|(t, actor)| t.ends_with("why:refresh-token-reuse") && actor.is_null()),
            "{targets:?}"
        );
        assert!(
            targets.iter().any(|(t, _)| *t == format!("turn-sessions:1 of:user:{doctor} why:account-disabled")),
            "{targets:?}"
        );
    }
}

/// A rescheduled appointment's consultation credentials were issued for its old times: the
/// reschedule revokes them (both sides), audited under whoever rescheduled as
/// `why:appointment-rescheduled`; a credential of the same patient not for the appointment
/// stays, and joining again issues a credential that is not revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reschedule_revokes_the_consultation_sessions_issued_for_the_old_times() {
    for engine in engines() {
        let pki = link_pki(&["relay-a.test"]);
        let link_port = free_udp_port();
        let extra = format!(
            "[[ice.relays]]\nhost = \"static.invalid\"\nudp-port = 3478\n{}",
            relay_link_table(pki.path(), link_port)
        );
        let c = clinic_with(engine, &extra).await;
        let e = &c.e;
        let a = LinkPeer::register(pki.path(), "relay-a.test", link_port).await;
        let f = &time::format_description::well_known::Rfc3339;
        let soon = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap().replace_second(0).unwrap()
            + time::Duration::minutes(5);
        let times = |start: time::OffsetDateTime| {
            (start.format(f).unwrap(), (start + time::Duration::minutes(20)).format(f).unwrap())
        };
        let (start, end) = times(soon);
        let (s, appointment) = e
            .post(
                "/v1/appointments",
                Some(&c.admin),
                json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": start, "end": end}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{appointment}");
        let id = appointment["id"].as_str().unwrap();
        let consultation = consultation_sessions(&c, id).await;
        let (unrelated, _) = credential(e, &c.patient).await;

        // The practitioner moves it five minutes later (its join window is open at both times).
        let (start, end) = times(soon + time::Duration::minutes(5));
        let (s, body) = act(&c, id, &c.doctor, "reschedule", json!({"start": start, "end": end})).await;
        assert_eq!(s, StatusCode::OK, "{engine:?}: {body}");
        let got = a.await_revoked(&[&consultation[0].0, &consultation[1].0], AT_ONCE).await;
        for (session, expires) in &consultation {
            assert_eq!(got[session], *expires, "{engine:?}: until the old join window closes");
        }
        assert!(!got.contains_key(&unrelated), "{engine:?}: a credential not for the appointment stays");

        // Joining at the new times issues a credential that is not revoked.
        let (s, session) = e.post(&format!("/v1/appointments/{id}/session"), Some(&c.patient), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{session}");
        let (fresh, _) = session_in(&session["ice"]);
        assert!(!a.revoked().contains_key(&fresh), "{engine:?}: the new credential is not revoked");

        let doctor_id = my_id(e, &c.doctor).await;
        let (_, audit) = e.get("/v1/audit?action=ice.sessions.revoke", Some(&c.admin)).await;
        let event = audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|ev| ev["target"] == format!("turn-sessions:2 of:appointment:{id} why:appointment-rescheduled"))
            .unwrap_or_else(|| panic!("{engine:?}: the reschedule's revocation is audited: {audit}"))
            .clone();
        assert_eq!(event["actor"], doctor_id.as_str(), "{engine:?}: under who rescheduled");
        drop(a);
    }
}
