//! The web client (control/webapp/, React + TypeScript on @teletip/sdk), embedded in the binary
//! at compile time (build.rs lists control/webapp/dist/) so that a control node needs nothing
//! but the executable. Served with a strict Content-Security-Policy: no inline code, nothing
//! from elsewhere, media only from the devices and the peer connection. The client's own routes
//! (/appointments, /room/…) answer its index.html; any other unknown path stays the API's JSON
//! 404.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

mod bundle {
    include!(concat!(env!("OUT_DIR"), "/web_files.rs"));
}

const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; media-src 'self' blob: mediastream:; \
    img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The client-side routes (control/webapp/src/router.ts): a reload or a shared link there gets
/// the page, which then shows the route.
const CLIENT_ROUTES: &[&str] = &["/appointments", "/privacy", "/mfa", "/check/{id}", "/room/{id}", "/ended/{id}"];

/// Whether this binary embeds the built client (false: a placeholder page saying how to build it).
pub const CLIENT_BUILT: bool = bundle::BUILT;

fn file(path: &str, content_type: &'static str, body: &'static [u8]) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("permissions-policy", HeaderValue::from_static("camera=(self), microphone=(self), geolocation=()"));
    // Vite names assets by their content hash: they never change under a name. The page
    // itself is revalidated so that an upgrade is picked up at once.
    let cache = if path.starts_with("/assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

fn index() -> (&'static str, &'static [u8]) {
    bundle::FILES
        .iter()
        .find(|(path, _, _)| *path == "/")
        .map(|&(_, content_type, body)| (content_type, body))
        .expect("build.rs always embeds a page at /")
}

pub fn router() -> Router<AppState> {
    let files = bundle::FILES.iter().fold(Router::new(), |router, &(path, content_type, body)| {
        router.route(path, get(move || async move { file(path, content_type, body) }))
    });
    CLIENT_ROUTES.iter().fold(files, |router, &route| {
        router.route(
            route,
            get(|| async {
                let (content_type, body) = index();
                file("/", content_type, body)
            }),
        )
    })
}
