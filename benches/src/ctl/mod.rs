//! Load on teletip-control: a lean HTTP/1.1 client (`http`), an Engine.IO v4 / Socket.IO client
//! over WebSocket (`sio`), the clinic the scenarios need, built over the API (`clinic`), and the
//! server-side measures (`usage`).

pub mod clinic;
pub mod http;
pub mod sio;
pub mod usage;

/// What can go wrong while driving a server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("http: {0}")]
    Hyper(#[from] hyper::Error),
    #[error("http request: {0}")]
    Http(#[from] hyper::http::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("{0}")]
    Protocol(String),
    #[error("{method} {path}: {status} {body}")]
    Status { method: String, path: String, status: u16, body: String },
}
