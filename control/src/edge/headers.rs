//! What every answer carries for the browser's sake: the security headers, and CORS for the
//! configured origins only.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Marks a request that reached the trusted proxy over HTTPS (`client_addr.rs`).
#[derive(Debug, Clone, Copy)]
pub struct OverHttps;

/// The policy of answers that are not a page (the API, FHIR, Socket.IO): nothing may load or
/// frame them. The web client's files set their own, stricter-than-default policy (`web.rs`).
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// One year, the preload lists' minimum; only sent when the request came over HTTPS through a
/// trusted proxy (nginx in the shipped role sets it too; sending it twice is harmless).
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Middleware: sets the security headers an answer does not set itself. API answers hold
/// health data: `Cache-Control: no-store` keeps them out of browser and proxy caches.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let over_https = request.extensions().get::<OverHttps>().is_some();
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    let defaults: [(HeaderName, &'static str); 6] = [
        (header::CONTENT_SECURITY_POLICY, API_CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (HeaderName::from_static("permissions-policy"), "camera=(self), microphone=(self), geolocation=()"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in defaults {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    }
    if over_https {
        h.entry(header::STRICT_TRANSPORT_SECURITY).or_insert(HeaderValue::from_static(HSTS));
    }
    response
}

/// Whether `s` is a web origin as browsers send it: `scheme://host[:port]`, nothing after.
pub fn is_origin(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else { return false };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', ' ', '@'])
        && HeaderValue::from_str(s).is_ok()
}

/// CORS for `origins` (checked by `is_origin`), or `None` for same-origin only: without a CORS
/// answer a browser refuses every cross-origin call, preflighted or not. Credentials are not
/// allowed: the API takes bearer tokens, never cookies, so a page of an allowed origin still
/// needs a token of its own.
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER, header::LOCATION])
            .allow_credentials(false)
            .max_age(Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    use super::is_origin;

    #[test]
    fn origins() {
        assert!(is_origin("https://app.example.org"));
        assert!(is_origin("http://localhost:8080"));
        assert!(!is_origin("https://app.example.org/"));
        assert!(!is_origin("app.example.org"));
        assert!(!is_origin("ftp://app.example.org"));
        assert!(!is_origin("https://"));
    }
}
