//! Issue 20, data residency, with real processes: the real `teletip-control` with
//! `deployment-region = "tr"` and two real `teletip-relay`s registered over the control link in
//! the regions `tr` and `us`; consultation credentials fetched over HTTP and used by the `turn`
//! crate (a TURN client we did not write). A Turkish patient's consultation names only the `tr`
//! relay; a legal transfer basis to `us` adds the `us` relay, its withdrawal takes it away
//! again, as does the patient's consent to `cross-border-transfer-us` and its withdrawal; with
//! the `tr` relay stopped the credentials are refused with a 503 naming the reason, audited.
//! Beside it, the API's own checks (region labels, practices, who sets a region) and a
//! deployment without regions, unchanged. On SQLite and PostgreSQL.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::clinic::{Clinic, clinic_with};
use support::http::*;
use support::pki::{free_udp_port, make_ca, make_cert, relay_link_table};
use support::relay::{LinkedRelay, eventually, turn_allocate};
use support::{Engine, engines};

/// The healthy relays the admin list shows: (node, region).
async fn healthy_relays(e: &Env, admin: &str) -> Vec<(String, Option<String>)> {
    let (s, body) = e.get("/v1/relays", Some(admin)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .filter(|n| n["healthy"] == true)
        .map(|n| (n["node"].as_str().unwrap().to_owned(), n["region"].as_str().map(str::to_owned)))
        .collect()
}

/// The first TURN URL of each relay an ICE answer names, in order.
fn turn_urls(ice: &Value) -> Vec<&str> {
    let servers = ice["iceServers"].as_array().unwrap();
    servers.iter().filter(|s| s["username"].is_string()).map(|s| s["urls"][0].as_str().unwrap()).collect()
}

/// The relay ports an ICE answer names, in order, and its TURN username and password.
fn named(ice: &Value) -> (Vec<u16>, String, String) {
    let ports = turn_urls(ice)
        .iter()
        .map(|url| url.rsplit(':').next().unwrap().split('?').next().unwrap().parse().unwrap())
        .collect();
    let turn = ice["iceServers"].as_array().unwrap().last().unwrap();
    (ports, turn["username"].as_str().unwrap().to_owned(), turn["credential"].as_str().unwrap().to_owned())
}

/// The consultation's credentials for `token`: the relay ports named, username, password.
async fn consultation(c: &Clinic, appointment: &str, token: &str) -> (Vec<u16>, String, String) {
    let (s, session) = c.e.post(&format!("/v1/appointments/{appointment}/session"), Some(token), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{session}");
    named(&session["ice"])
}

fn sorted(mut ports: Vec<u16>) -> Vec<u16> {
    ports.sort_unstable();
    ports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consultation_names_only_relays_in_a_region_its_patient_permits() {
    for engine in engines() {
        consultation_in_two_regions(engine).await;
    }
}

async fn consultation_in_two_regions(engine: Engine) {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = pki_dir.path();
    make_ca(pki, "ca");
    make_cert(pki, "ca", "control.test", "serverAuth");
    for node in ["relay-tr.test", "relay-us.test"] {
        make_cert(pki, "ca", node, "clientAuth");
    }
    let link_port = free_udp_port();
    let extra = format!(
        "deployment-region = \"tr\"\n[[ice.relays]]\nhost = \"static.invalid\"\nudp-port = 3478\n{}",
        relay_link_table(pki, link_port)
    );
    let c = clinic_with(engine, &extra).await;
    let e = &c.e;
    // The patient registered themselves: the deployment's region.
    let (_, record) = e.get(&format!("/v1/patients/{}", c.patient_record), Some(&c.patient)).await;
    assert_eq!(record["dataRegion"], "tr", "{engine:?}: {record}");

    let secret = e.control.dir.join("data/relay.secret");
    let tr = LinkedRelay::start_in_region(pki, "relay-tr.test", "tr", link_port, &secret, (25100, 25139));
    let us = LinkedRelay::start_in_region(pki, "relay-us.test", "us", link_port, &secret, (25140, 25179));
    eventually(Duration::from_secs(20), "both relays registered and healthy", || async {
        healthy_relays(e, &c.admin).await.len() == 2
    })
    .await;
    // The admin relay list shows each relay's region.
    let regions = healthy_relays(e, &c.admin).await;
    assert_eq!(
        regions,
        [("relay-tr.test".to_owned(), Some("tr".to_owned())), ("relay-us.test".to_owned(), Some("us".to_owned()))],
        "{engine:?}"
    );

    let f = &time::format_description::well_known::Rfc3339;
    let soon = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap().replace_second(0).unwrap()
        + time::Duration::minutes(5);
    let (s, appointment) = e
        .post(
            "/v1/appointments",
            Some(&c.admin),
            json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record,
            "start": soon.format(f).unwrap(), "end": (soon + time::Duration::minutes(20)).format(f).unwrap()}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{appointment}");
    let id = appointment["id"].as_str().unwrap();

    // Both sides of the Turkish patient's consultation get the tr relay only, and the turn
    // crate allocates on it with the credential.
    for token in [&c.patient, &c.doctor] {
        let (ports, username, password) = consultation(&c, id, token).await;
        assert_eq!(ports, [tr.port], "{engine:?}: only the tr relay is named");
        turn_allocate(tr.addr(), &username, &password).await.expect("the turn crate allocates on the named relay");
    }
    // The patient's own credentials without an appointment follow their region too; staff's
    // carry no patient's media and are not restricted.
    let (s, ice) = e.post("/v1/ice/credentials", Some(&c.patient), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{ice}");
    assert_eq!(named(&ice).0, [tr.port], "{engine:?}");
    let (s, ice) = e.post("/v1/ice/credentials", Some(&c.doctor), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{ice}");
    assert_eq!(sorted(named(&ice).0), sorted(vec![tr.port, us.port]), "{engine:?}");

    // A documented legal basis to us: the us relay is named as well, and usable.
    let bases = format!("/v1/patients/{}/transfer-bases", c.patient_record);
    let (s, basis) = e
        .post(
            &bases,
            Some(&c.admin),
            json!({"reference": "Kurul permission 2026/17, second opinion at the US partner", "destinations": ["us"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{basis}");
    assert_eq!(basis["inForce"], true);
    let (ports, username, password) = consultation(&c, id, &c.patient).await;
    assert_eq!(sorted(ports), sorted(vec![tr.port, us.port]), "{engine:?}: with a basis to us");
    turn_allocate(us.addr(), &username, &password).await.expect("the turn crate allocates on the us relay");
    // Withdrawn: the us relay is not named any more.
    let (s, withdrawn) =
        e.post(&format!("{bases}/{}/withdraw", basis["id"].as_str().unwrap()), Some(&c.admin), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{withdrawn}");
    assert_eq!(withdrawn["inForce"], false);
    assert_eq!(consultation(&c, id, &c.patient).await.0, [tr.port], "{engine:?}: basis withdrawn");

    // The patient's explicit consent to a transfer to us (a purpose of the current notice)
    // works the same way, and so does its withdrawal.
    let (s, body) = e
        .post(
            "/v1/privacy-notices",
            Some(&c.admin),
            json!({"version": "2026-12", "language": "tr", "title": "Aydınlatma metni",
            "body": "Verileriniz ...", "purposes": [
                {"code": "consultation", "required": true, "description": "Görüntülü görüşme"},
                {"code": "cross-border-transfer-us", "required": false, "description": "Yurt dışına aktarım (ABD)"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let consent =
        |purpose: &str, decision: &str| json!({"noticeVersion": "2026-12", "purpose": purpose, "decision": decision});
    for purpose in ["consultation", "cross-border-transfer-us"] {
        let (s, body) = e.post("/v1/me/consents", Some(&c.patient), consent(purpose, "given")).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    assert_eq!(sorted(consultation(&c, id, &c.patient).await.0), sorted(vec![tr.port, us.port]), "{engine:?}: consent");
    let (s, body) = e.post("/v1/me/consents", Some(&c.patient), consent("cross-border-transfer-us", "withdrawn")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(consultation(&c, id, &c.patient).await.0, [tr.port], "{engine:?}: consent withdrawn");

    // What an auditor checks: the region, what is permitted now, the bases' and consents' history.
    let (s, residency) = e.get(&bases, Some(&c.admin)).await;
    assert_eq!(s, StatusCode::OK, "{residency}");
    assert_eq!(residency["dataRegion"], "tr");
    assert_eq!(residency["permittedRegions"], json!(["tr"]));
    assert_eq!(residency["legalBases"].as_array().unwrap().len(), 1);
    assert_eq!(residency["transferConsents"].as_array().unwrap().len(), 2, "{residency}");

    // The tr relay stops: no relay in a permitted region, a 503 that says so, audited.
    drop(tr);
    eventually(Duration::from_secs(20), "the tr relay is no longer healthy", || async {
        healthy_relays(e, &c.admin).await.len() == 1
    })
    .await;
    let (s, body) = e.post(&format!("/v1/appointments/{id}/session"), Some(&c.patient), json!({})).await;
    assert_problem(s, &body, StatusCode::SERVICE_UNAVAILABLE, "no relay in tr");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("permitted tr") && detail.contains("usable relays are in us"), "{engine:?}: {detail}");
    let (_, audit) = e.get("/v1/audit?action=ice.credentials.refuse", Some(&c.admin)).await;
    let rows = audit["events"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{engine:?}: {audit}");
    assert_eq!(rows[0]["outcome"], "refused:region");
    assert!(rows[0]["target"].as_str().unwrap().starts_with(&format!("appointment:{id} ")), "{audit}");
    // Staff without an appointment still get the us relay.
    let (s, ice) = e.post("/v1/ice/credentials", Some(&c.doctor), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{ice}");
    assert_eq!(named(&ice).0, [us.port], "{engine:?}");
    drop(us);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_without_regions_names_every_relay() {
    for engine in engines() {
        let relays = "[[ice.relays]]\nhost = \"relay-a.test\"\nudp-port = 3478\n[[ice.relays]]\nhost = \"relay-b.test\"\nudp-port = 3478\n";
        let c = clinic_with(engine, relays).await;
        let (_, record) = c.e.get(&format!("/v1/patients/{}", c.patient_record), Some(&c.patient)).await;
        assert!(record["dataRegion"].is_null(), "{engine:?}: {record}");
        for token in [&c.patient, &c.doctor] {
            let (s, ice) = c.e.post("/v1/ice/credentials", Some(token), json!({})).await;
            assert_eq!(s, StatusCode::OK, "{ice}");
            let urls = turn_urls(&ice);
            assert_eq!(urls.len(), 2, "{engine:?}: {urls:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_are_set_by_staff_checked_and_default_to_the_practice() {
    for engine in engines() {
        // Static relays with regions: the rule applies to them as to registered ones.
        let relays = "deployment-region = \"tr\"\n[[ice.relays]]\nhost = \"relay-tr.test\"\nudp-port = 3478\n\
                      [[ice.relays]]\nhost = \"relay-de.test\"\nudp-port = 3478\nregion = \"eu-de\"\n";
        let c = clinic_with(engine, relays).await;
        let e = &c.e;
        // Practices: created with a region or the deployment's, listed, changed; bad labels 422.
        let (s, berlin) =
            e.post("/v1/practices", Some(&c.admin), json!({"name": "Berlin Klinik", "dataRegion": "eu-de"})).await;
        assert_eq!(s, StatusCode::CREATED, "{berlin}");
        let (s, ankara) = e.post("/v1/practices", Some(&c.admin), json!({"name": "Ankara Poliklinik"})).await;
        assert_eq!(s, StatusCode::CREATED, "{ankara}");
        assert_eq!(ankara["dataRegion"], "tr", "{engine:?}: the deployment's region");
        for bad in ["TR", "", "eu_de", "a-very-long-region-label-of-more-than-32"] {
            let (s, body) = e.post("/v1/practices", Some(&c.admin), json!({"name": "X", "dataRegion": bad})).await;
            assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, bad);
            assert_eq!(body["errors"][0]["field"], "dataRegion");
        }
        let (s, body) = e.post("/v1/practices", Some(&c.doctor), json!({"name": "Mine"})).await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "a practitioner creating a practice");
        let (s, list) = e.get("/v1/practices", Some(&c.admin)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
        let unknown = uuid::Uuid::new_v4();
        let (s, body) = e.patch(&format!("/v1/practices/{unknown}"), Some(&c.admin), json!({"name": "Y"})).await;
        assert_problem(s, &body, StatusCode::NOT_FOUND, "unknown practice");
        let (s, body) = e
            .patch(
                &format!("/v1/practices/{}", ankara["id"].as_str().unwrap()),
                Some(&c.admin),
                json!({"dataRegion": "tr"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        // A JSON array is not an object, even where serde could read the fields from it.
        let ankara_path = format!("/v1/practices/{}", ankara["id"].as_str().unwrap());
        let (s, body) = e.patch(&ankara_path, Some(&c.admin), json!([null, null])).await;
        assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "an array body");
        assert_eq!(body["detail"], "body: must be a JSON object");

        // A practitioner of the Berlin practice registers a patient: the practice's region.
        let (s, body) = e
            .post(
                "/v1/practitioners",
                Some(&c.admin),
                json!({"displayName": "Dr. X", "specialty": "gp", "timeZone": "Europe/Berlin", "practiceId": unknown}),
            )
            .await;
        assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "unknown practice");
        assert_eq!(body["errors"][0]["field"], "practiceId");
        let (berlin_doctor, user) = e.user_token(&c.admin, "dr.weber@klinik.test", "practitioner").await;
        let (s, p) = e
            .post("/v1/practitioners", Some(&c.admin), json!({"displayName": "Dr. Weber", "specialty": "gp", "timeZone": "Europe/Berlin", "userId": user, "practiceId": berlin["id"]}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
        assert_eq!(p["practiceId"], berlin["id"]);
        let (s, hans) = e.post("/v1/patients", Some(&berlin_doctor), json!({"displayName": "Hans Muster"})).await;
        assert_eq!(s, StatusCode::CREATED, "{hans}");
        assert_eq!(hans["dataRegion"], "eu-de", "{engine:?}: the practice's region");
        let (s, admins) =
            e.post("/v1/patients", Some(&c.admin), json!({"displayName": "Zeynep Demir", "dataRegion": "us"})).await;
        assert_eq!(s, StatusCode::CREATED, "{admins}");
        assert_eq!(admins["dataRegion"], "us");

        // Only staff set a region: the patient's own request is refused and audited; a bad
        // label is a 422; an admin's change is audited with the old and new region.
        let me = format!("/v1/patients/{}", c.patient_record);
        let (s, body) = e.patch(&me, Some(&c.patient), json!({"dataRegion": "us"})).await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "a patient moving their own region");
        let (_, other) = e.get(&format!("/v1/patients/{}", c.other_record), Some(&c.other_patient)).await;
        let (s, body) = e
            .post(
                "/v1/patients",
                Some(&c.other_patient),
                json!({"displayName": "Again", "userId": other["userId"], "dataRegion": "us"}),
            )
            .await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "a patient registering with a region");
        let (s, body) = e.patch(&me, Some(&c.admin), json!({"dataRegion": "Türkiye"})).await;
        assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "bad label");
        let (_, record) = e.get(&me, Some(&c.admin)).await;
        assert_eq!(record["dataRegion"], "tr", "{engine:?}: nothing changed");
        let (s, body) = e.patch(&me, Some(&c.admin), json!({"dataRegion": "eu-de"})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["dataRegion"], "eu-de");
        let (_, audit) = e.get("/v1/audit?action=patient.region.change", Some(&c.admin)).await;
        let rows: Vec<(&str, &str)> = audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["outcome"].as_str().unwrap(), r["target"].as_str().unwrap()))
            .collect();
        assert!(rows.contains(&("success", &format!("{} tr->eu-de", c.patient_record))), "{engine:?}: {rows:?}");
        assert_eq!(rows.iter().filter(|(o, _)| *o == "denied").count(), 2, "{engine:?}: {rows:?}");

        // Now in eu-de, the patient's credentials name the eu-de relay only.
        let (s, ice) = e.post("/v1/ice/credentials", Some(&c.patient), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{ice}");
        assert_eq!(turn_urls(&ice), ["turn:relay-de.test:3478?transport=udp"], "{engine:?}");

        // Legal bases: checked input, unknown patient 404, patients and practitioners 403.
        let bases = format!("/v1/patients/{}/transfer-bases", c.patient_record);
        for (bad, field) in [
            (json!({"reference": " "}), "reference"),
            (json!({"reference": "ok", "destinations": []}), "destinations"),
            (json!({"reference": "ok", "destinations": ["US"]}), "destinations[0]"),
        ] {
            let (s, body) = e.post(&bases, Some(&c.admin), bad.clone()).await;
            assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, &bad.to_string());
            assert_eq!(body["errors"][0]["field"], field, "{body}");
        }
        let (s, body) =
            e.post(&format!("/v1/patients/{unknown}/transfer-bases"), Some(&c.admin), json!({"reference": "ok"})).await;
        assert_problem(s, &body, StatusCode::NOT_FOUND, "unknown patient");
        for token in [&c.patient, &c.doctor] {
            let (s, body) = e.post(&bases, Some(token), json!({"reference": "ok"})).await;
            assert_problem(s, &body, StatusCode::FORBIDDEN, "not an admin");
        }
        // A basis to any region lifts the restriction; withdrawing twice is a conflict.
        let (s, any) = e.post(&bases, Some(&c.admin), json!({"reference": "Contract 12/2026"})).await;
        assert_eq!(s, StatusCode::CREATED, "{any}");
        let (s, ice) = e.post("/v1/ice/credentials", Some(&c.patient), json!({})).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(turn_urls(&ice).len(), 2, "{engine:?}: a basis to any region");
        let withdraw = format!("{bases}/{}/withdraw", any["id"].as_str().unwrap());
        assert_eq!(e.post(&withdraw, Some(&c.admin), json!({})).await.0, StatusCode::OK);
        let (s, body) = e.post(&withdraw, Some(&c.admin), json!({})).await;
        assert_problem(s, &body, StatusCode::CONFLICT, "withdrawn twice");
        let (_, audit) = e.get("/v1/audit?action=transfer-basis.withdraw", Some(&c.admin)).await;
        assert_eq!(audit["events"].as_array().unwrap().len(), 1, "{audit}");
    }
}
