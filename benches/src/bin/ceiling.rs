//! The ceilings control-load compares the control plane with, measured in the same run:
//! `http`, an axum server whose `POST /v1/ice/credentials` does nothing (200, `{}`), and `sio`,
//! a bare socketioxide server with one echo handler on `/rtc` and no auth. Both on a
//! multi-threaded tokio runtime like teletip-control's, so that the ratios compare the work
//! done per request, not the runtimes.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::post;
use clap::{Parser, ValueEnum};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef};

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Http,
    Sio,
}

#[derive(Parser)]
struct Args {
    #[arg(value_enum)]
    kind: Kind,
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let app = match args.kind {
        Kind::Http => Router::new().route("/v1/ice/credentials", post(|| async { "{}" })),
        Kind::Sio => {
            let (layer, io) = SocketIo::new_layer();
            io.ns("/rtc", async |socket: SocketRef| {
                // The same shape as a lobby event: an acknowledged emit, and an event sent back.
                socket.on("echo", async |socket: SocketRef, Data(data): Data<serde_json::Value>, ack: AckSender| {
                    let _ = socket.emit("echo", &data);
                    let _ = ack.send(&serde_json::json!({"ok": true}));
                });
            });
            Router::new().layer(layer)
        }
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    // control-load and benches/control-load read the address from this line.
    println!("ceiling listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
