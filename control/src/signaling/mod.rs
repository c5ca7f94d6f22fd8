//! Consultation signaling on Socket.IO (namespace `/rtc`, protocol in docs/signaling.md),
//! served by socketioxide inside the control plane's HTTP server. One instance keeps rooms in
//! memory; with `redis-url`, events fan out through the socketioxide Redis adapter and room
//! state lives in Redis, so participants may be on different instances.
//!
//! SDP and ICE candidates carry IP addresses: handlers pass them on and never store or log them.

mod conn;
pub mod directory;
mod handlers;
pub mod presence;
pub mod redis_driver;
mod reply;
mod rooms;

use std::sync::Arc;

use socketioxide::SocketIo;
use socketioxide::adapter::LocalAdapter;
use socketioxide::handler::ConnectHandler;

use crate::state::AppState;
use directory::Directory;

/// How long a disconnected participant keeps their place.
pub const RESUME_WINDOW: time::Duration = time::Duration::seconds(60);
/// How long before the join window closes `session:expiring` is sent.
pub const EXPIRY_WARNING: time::Duration = time::Duration::minutes(5);

/// What every handler needs.
#[derive(Clone)]
pub struct Signaling {
    pub app: AppState,
    pub directory: Arc<Directory>,
}

#[derive(Debug, thiserror::Error)]
pub enum SignalingError {
    #[error("redis-url {url}: {source}")]
    Redis { url: String, source: redis::RedisError },
    #[error("room directory: {0}")]
    Directory(#[from] directory::DirectoryError),
}

/// Reads an event's payload as its handler does, without acting on it: `Ok(true)` when it
/// parses, `Ok(false)` for an event that takes no payload, `Err` with the refusal's message
/// the client would get. For the fuzz target fuzz/fuzz_targets/signaling_payload.rs.
pub fn parse_event_payload(event: &str, payload: serde_json::Value) -> Result<bool, String> {
    handlers::parse_payload(event, payload).map_err(|r| r.message)
}

/// The router with Socket.IO mounted at `/socket.io/`.
pub async fn attach(router: axum::Router, app: AppState) -> Result<axum::Router, SignalingError> {
    let Some(url) = app.config().redis_url.clone() else {
        let state = Signaling { app: app.clone(), directory: Arc::new(Directory::memory()) };
        let (layer, io) = SocketIo::builder().with_state(state).build_layer();
        io.ns("/rtc", handlers::on_connect::<LocalAdapter>.with(handlers::authenticate::<LocalAdapter>));
        tokio::spawn(count_rooms(io.clone()));
        end_sessions_through(&app, io);
        return Ok(router.layer(layer));
    };
    // socketioxide's Redis driver speaks RESP3.
    let resp3 = redis_driver::resp3_url(&url);
    let redis_error = |source| SignalingError::Redis { url: url.clone(), source };
    let client = redis::Client::open(resp3.as_str()).map_err(redis_error)?;
    let driver = redis_driver::ReconnectingDriver::connect(client.clone()).await.map_err(redis_error)?;
    let adapter = socketioxide_redis::RedisAdapterCtr::new_with_driver(driver, Default::default());
    let directory = Arc::new(Directory::redis(&client).await?);
    let state = Signaling { app: app.clone(), directory };
    let (layer, io) = SocketIo::builder()
        .with_state(state)
        .with_adapter::<socketioxide_redis::CustomRedisAdapter<_, redis_driver::ReconnectingDriver>>(adapter)
        .build_layer();
    type Redis =
        socketioxide_redis::CustomRedisAdapter<socketioxide::adapter::Emitter, redis_driver::ReconnectingDriver>;
    if let Err(e) = io.ns("/rtc", handlers::on_connect::<Redis>.with(handlers::authenticate::<Redis>)).await {
        tracing::error!(error = %e, "signaling namespace could not join the Redis adapter");
    }
    tokio::spawn(count_rooms(io.clone()));
    end_sessions_through(&app, io);
    tracing::info!("signaling fans out through Redis");
    Ok(router.layer(layer))
}

/// Ended sessions (`auth/ended.rs`) end their sockets through this `io`: with the Redis adapter,
/// on every instance.
fn end_sessions_through<A: socketioxide::adapter::Adapter>(app: &AppState, io: SocketIo<A>) {
    app.sessions_ended().set_hook(Box::new(move |ended, reason| {
        let io = io.clone();
        Box::pin(async move { handlers::end_sessions(&io, ended, reason).await })
    }));
}

/// Samples the number of consultation rooms (`rtc:<appointment>`) every few seconds for
/// `teletip_signaling_rooms`; with the Redis adapter, the rooms of every instance.
async fn count_rooms<A: socketioxide::adapter::Adapter>(io: SocketIo<A>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tick.tick().await;
        let Some(rtc) = io.of("/rtc") else { continue };
        match rtc.rooms().await {
            Ok(rooms) => {
                crate::observability::signaling_rooms(rooms.iter().filter(|r| rooms::is_consultation(r)).count())
            }
            Err(e) => tracing::debug!("signaling rooms not counted: {e}"),
        }
    }
}
