//! The reference web client (control/web/), embedded in the binary so that a control node
//! needs nothing but the executable: `/` and its script, style sheet and the pinned
//! socket.io-client. Served with a strict Content-Security-Policy: no inline code, nothing
//! from elsewhere, media only from the devices and the peer connection.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; media-src 'self' blob: mediastream:; \
    img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const FILES: &[(&str, &str, &[u8])] = &[
    ("/", "text/html; charset=utf-8", include_bytes!("../web/index.html")),
    ("/app.js", "text/javascript; charset=utf-8", include_bytes!("../web/app.js")),
    ("/app.css", "text/css; charset=utf-8", include_bytes!("../web/app.css")),
    ("/vendor/socket.io.min.js", "text/javascript; charset=utf-8", include_bytes!("../web/vendor/socket.io.min.js")),
];

fn file(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("permissions-policy", HeaderValue::from_static("camera=(self), microphone=(self), geolocation=()"));
    // Small files; revalidate so that an upgrade is picked up at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

pub fn router() -> Router<AppState> {
    FILES.iter().fold(Router::new(), |router, &(path, content_type, body)| {
        router.route(path, get(move || async move { file(content_type, body) }))
    })
}
