//! A small clinic for API tests: an admin, a practitioner with an account, and two patients
//! with accounts and records (one with every identifying field filled in).

#![allow(dead_code)]

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::http::*;

pub struct Clinic {
    pub e: Env,
    pub admin: String,
    pub doctor: String,
    pub doctor_practitioner: String,
    pub patient: String,
    pub patient_record: String,
    pub other_patient: String,
    pub other_record: String,
}

pub async fn clinic(engine: super::Engine) -> Clinic {
    clinic_with(engine, "").await
}

pub async fn clinic_with(engine: super::Engine, extra: &str) -> Clinic {
    let e = env_with(engine, &format!("{RELAXED_LIMITS}\n{extra}")).await;
    let admin = e.admin().await;
    let (doctor, doctor_user) = e.user_token(&admin, "dr.kaya@hospital.test", "practitioner").await;
    let (s, p) = e.post("/v1/practitioners", Some(&admin), json!({"displayName": "Dr. Elif Kaya", "specialty": "cardiology", "timeZone": "Europe/Istanbul", "userId": doctor_user})).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let (patient, patient_user) = e.user_token(&admin, "ayse@example.org", "patient").await;
    let (s, rec) = e
        .post("/v1/patients", Some(&patient), json!({"displayName": "Ayşe Yılmaz", "birthDate": "1980-02-29", "nationalId": "12345678901", "phone": "+90 532 111 22 33", "email": "ayse@example.org", "notes": "penicillin allergy", "userId": patient_user}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rec}");
    let (other_patient, other_user) = e.user_token(&admin, "john@example.org", "patient").await;
    let (_, other) =
        e.post("/v1/patients", Some(&other_patient), json!({"displayName": "John Doe", "userId": other_user})).await;
    Clinic {
        admin,
        doctor,
        doctor_practitioner: p["id"].as_str().unwrap().into(),
        patient,
        patient_record: rec["id"].as_str().unwrap().into(),
        other_patient,
        other_record: other["id"].as_str().unwrap().into(),
        e,
    }
}

pub async fn act(c: &Clinic, id: &str, token: &str, action: &str, body: Value) -> (StatusCode, Value) {
    c.e.post(&format!("/v1/appointments/{id}/{action}"), Some(token), body).await
}

pub fn slot(hours_ahead: i64, minutes: i64) -> (String, String) {
    let start = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap().replace_second(0).unwrap()
        + time::Duration::hours(hours_ahead);
    let end = start + time::Duration::minutes(minutes);
    let f = &time::format_description::well_known::Rfc3339;
    (start.format(f).unwrap(), end.format(f).unwrap())
}
