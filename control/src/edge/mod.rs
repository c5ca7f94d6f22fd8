//! The outermost layers, around the API and Socket.IO alike: who the client is behind trusted
//! proxies (`client_addr`), CORS and the security headers (`headers`).

pub mod client_addr;
pub mod headers;

use std::sync::Arc;

use axum::Router;
use axum::middleware;

pub use headers::is_origin;

use crate::config::ControlConfig;

/// Wraps the whole application (`app::router` with signaling attached).
pub fn wrap(app: Router, config: &ControlConfig) -> Router {
    let mut app = app.layer(middleware::from_fn(headers::security_headers));
    if let Some(cors) = headers::cors(&config.cors_allowed_origins) {
        app = app.layer(cors);
    }
    let trusted = Arc::new(client_addr::TrustedProxies::new(config.trusted_proxies.clone()));
    // Outermost: everything inside sees the client's address.
    app.layer(middleware::from_fn_with_state(trusted, client_addr::resolve))
}
