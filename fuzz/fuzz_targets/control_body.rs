//! The control plane's JSON request bodies as its extractors read them (`ApiJson`,
//! `OptionalJson` in control/src/problem.rs) into the real request types: the first byte picks
//! the endpoint's type, the rest is the body. Whatever the body, the answer is the value or a
//! 4xx problem (400 malformed, 413, 415, 422 invalid), never a panic or a 5xx.

#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{Request, header};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use teletip_control::problem::{ApiError, ApiJson, OptionalJson};
use teletip_control::{auth, ice, privacy, residency, scheduling, users};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("a runtime"))
}

fuzz_target!(|input: &[u8]| {
    let Some((&which, body)) = input.split_first() else { return };
    runtime().block_on(async {
        let outcome = match which % 21 {
            0 => json::<scheduling::appointments::BookAppointment>(body).await,
            1 => json::<auth::mfa::CodeRequest>(body).await,
            2 => json::<scheduling::patients::CreatePatient>(body).await,
            3 => json::<residency::practices::CreatePractice>(body).await,
            4 => json::<scheduling::practitioners::CreatePractitioner>(body).await,
            5 => json::<users::CreateUser>(body).await,
            6 => json::<auth::mfa::DisableRequest>(body).await,
            7 => json::<privacy::erasure::EraseMe>(body).await,
            8 => json::<auth::LoginRequest>(body).await,
            9 => json::<auth::reset::PasswordResetConfirm>(body).await,
            10 => json::<auth::reset::PasswordResetRequest>(body).await,
            11 => json::<privacy::notices::PublishNotice>(body).await,
            12 => json::<privacy::consents::RecordConsent>(body).await,
            13 => json::<residency::bases::RecordLegalBasis>(body).await,
            14 => json::<auth::RefreshRequest>(body).await,
            15 => json::<scheduling::patients::UpdatePatient>(body).await,
            16 => json::<residency::practices::UpdatePractice>(body).await,
            17 => json::<users::UpdateUser>(body).await,
            18 => json::<scheduling::schedule::WorkingPattern>(body).await,
            19 => optional::<ice::IceRequest>(body).await,
            _ => optional::<scheduling::appointments::StatusChange>(body).await,
        };
        if let Err(e) = outcome {
            assert!(e.status().is_client_error(), "a request body gave {}: {e:?}", e.status());
        }
    });
});

fn request(body: &[u8]) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri("/")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body.to_vec()))
        .expect("a request")
}

async fn json<T: DeserializeOwned>(body: &[u8]) -> Result<(), ApiError> {
    ApiJson::<T>::from_request(request(body), &()).await.map(drop)
}

async fn optional<T: DeserializeOwned>(body: &[u8]) -> Result<(), ApiError> {
    OptionalJson::<T>::from_request(request(body), &()).await.map(drop)
}
