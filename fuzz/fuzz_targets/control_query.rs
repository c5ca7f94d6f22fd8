//! The control plane's query strings as `ApiQuery` (control/src/problem.rs) reads them into the
//! real query types (paging, filters, ranges checked by `in_range`): the first byte picks the
//! endpoint, the rest is the query string. The answer is the value or a 4xx problem, never a
//! panic or a 5xx.

#![no_main]

use std::sync::OnceLock;

use axum::extract::FromRequestParts;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use teletip_control::problem::{ApiError, ApiQuery};
use teletip_control::{audit, notify, scheduling, users};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("a runtime"))
}

fuzz_target!(|input: &[u8]| {
    let Some((&which, query)) = input.split_first() else { return };
    let Ok(query) = std::str::from_utf8(query) else { return };
    // Only what a client can put in a request line reaches the extractor (hyper refuses the
    // rest before any handler runs).
    let Ok(request) = Request::builder().uri(format!("/x?{query}")).body(()) else { return };
    let (mut parts, ()) = request.into_parts();
    runtime().block_on(async {
        let outcome = match which % 7 {
            0 => query_of::<scheduling::appointments::AppointmentQuery>(&mut parts).await,
            1 => query_of::<audit::AuditQuery>(&mut parts).await,
            2 => query_of::<scheduling::schedule::AvailabilityQuery>(&mut parts).await,
            3 => query_of::<notify::routes::DeadLetterQuery>(&mut parts).await,
            4 => query_of::<scheduling::patients::PatientQuery>(&mut parts).await,
            5 => query_of::<scheduling::practitioners::PractitionerQuery>(&mut parts).await,
            _ => query_of::<users::UserQuery>(&mut parts).await,
        };
        if let Err(e) = outcome {
            assert!(e.status().is_client_error(), "a query string gave {}: {e:?}", e.status());
        }
    });
});

async fn query_of<T: DeserializeOwned + Send>(parts: &mut axum::http::request::Parts) -> Result<(), ApiError> {
    ApiQuery::<T>::from_request_parts(parts, &()).await.map(drop)
}
