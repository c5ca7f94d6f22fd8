//! The relay registry shared by several control instances through Redis (`redis-url`): every
//! instance publishes the snapshots of the relays connected to it and reads everyone's, and
//! drain requests are kept there, so that any instance names any healthy relay in ICE answers,
//! any instance drains any relay, and a drain survives a control plane restart.
//!
//! Keys: `teletip:relays` (a set of node names), `teletip:relay:<node>` (its snapshot as JSON,
//! expiring an hour after its last report), `teletip:relay-drains` (a hash: node -> "1" while
//! a drain is requested). The instance holding a node's connection applies a drain requested
//! elsewhere at the node's next report (within report-seconds).
//!
//! Revocations cannot wait for a report: they are published on the channel
//! `teletip:relay-revocations` (`{"from": <instance>, "sessions": [...]}`), and every instance
//! subscribed to it sends them to its own relays at once. Pub/sub keeps nothing: a message an
//! instance missed (Redis away) reaches its relays when they next register, from the store.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, FromRedisValue, PushInfo, PushKind};
use serde::{Deserialize, Serialize};
use teletip_link::RevokedSession;
use tokio::sync::OnceCell;

use super::registry::Snapshot;

const NODES: &str = "teletip:relays";
const DRAINS: &str = "teletip:relay-drains";
const REVOCATIONS: &str = "teletip:relay-revocations";

/// What goes over the revocations channel: who published it (an instance skips its own, sent
/// to its relays already) and the sessions.
#[derive(Debug, Serialize, Deserialize)]
struct RevocationMessage {
    from: String,
    sessions: Vec<RevokedSession>,
}
/// A node not heard of for this long drops out of the list.
const FORGET_AFTER_SECONDS: u64 = 3600;

fn node_key(node: &str) -> String {
    format!("teletip:relay:{node}")
}

pub struct SharedRegistry {
    client: redis::Client,
    /// Made on first use; redis's `ConnectionManager` reconnects by itself after that.
    conn: OnceCell<ConnectionManager>,
}

impl SharedRegistry {
    pub fn new(client: redis::Client) -> SharedRegistry {
        SharedRegistry { client, conn: OnceCell::new() }
    }

    async fn conn(&self) -> redis::RedisResult<ConnectionManager> {
        Ok(self.conn.get_or_try_init(|| ConnectionManager::new(self.client.clone())).await?.clone())
    }

    pub async fn publish(&self, snapshot: &Snapshot) -> redis::RedisResult<()> {
        let json = serde_json::to_string(snapshot).expect("a snapshot serialises");
        let mut conn = self.conn().await?;
        redis::pipe()
            .atomic()
            .set_ex(node_key(&snapshot.node), json, FORGET_AFTER_SECONDS)
            .ignore()
            .sadd(NODES, &snapshot.node)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
    }

    /// Every instance's nodes, with the drain requests made on any instance. Names whose
    /// snapshot has expired are forgotten.
    pub async fn snapshots(&self) -> redis::RedisResult<Vec<Snapshot>> {
        let mut conn = self.conn().await?;
        let names: Vec<String> = conn.smembers(NODES).await?;
        let drains: Vec<String> = conn.hkeys(DRAINS).await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = names.iter().map(|n| node_key(n)).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        let mut snapshots = Vec::new();
        for (name, value) in names.iter().zip(values) {
            match value.map(|v| serde_json::from_str::<Snapshot>(&v)) {
                Some(Ok(mut snapshot)) => {
                    // The request itself, not the holding instance's copy (updated only at the
                    // node's next report).
                    snapshot.drain_requested = drains.contains(name);
                    snapshots.push(snapshot);
                }
                Some(Err(e)) => tracing::warn!(node = name, "unreadable relay snapshot in Redis: {e}"),
                None => {
                    let _: () = conn.srem(NODES, name).await?;
                }
            }
        }
        Ok(snapshots)
    }

    /// Whether an admin asked for `node` to drain, on any instance.
    pub async fn drain_requested(&self, node: &str) -> redis::RedisResult<bool> {
        let mut conn = self.conn().await?;
        conn.hexists(DRAINS, node).await
    }

    pub async fn set_drain(&self, node: &str, draining: bool) -> redis::RedisResult<()> {
        let mut conn = self.conn().await?;
        if draining { conn.hset(DRAINS, node, "1").await } else { conn.hdel(DRAINS, node).await }
    }

    /// Tells every other instance to send `sessions` to its relays.
    pub async fn publish_revocations(&self, from: &str, sessions: &[RevokedSession]) -> redis::RedisResult<()> {
        let message = RevocationMessage { from: from.to_owned(), sessions: sessions.to_vec() };
        let json = serde_json::to_string(&message).expect("a revocation serialises");
        self.conn().await?.publish(REVOCATIONS, json).await
    }
}

/// Subscribes to the revocations other instances publish and hands each batch to `deliver`
/// (this instance's own, `me`, are skipped). `resp3_url` must ask for RESP3 (pushed messages on
/// a `ConnectionManager`, which reconnects and subscribes again by itself, as the signaling
/// adapter's driver does). The subscription lasts as long as the returned connection.
pub async fn follow_revocations(
    resp3_url: &str,
    me: String,
    deliver: impl Fn(Vec<RevokedSession>) + Send + Sync + 'static,
) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(resp3_url)?;
    let config = ConnectionManagerConfig::new()
        .set_push_sender(move |push: PushInfo| {
            if let Some(message) = revocation_message(push) {
                if message.from != me {
                    deliver(message.sessions);
                }
            }
            Ok::<(), std::convert::Infallible>(())
        })
        .set_automatic_resubscription();
    let mut conn = ConnectionManager::new_with_config(client, config).await?;
    conn.subscribe(REVOCATIONS).await?;
    Ok(conn)
}

fn revocation_message(push: PushInfo) -> Option<RevocationMessage> {
    if push.kind != PushKind::Message || push.data.len() < 2 {
        return None;
    }
    let payload = String::from_redis_value(push.data.into_iter().nth(1)?).ok()?;
    match serde_json::from_str(&payload) {
        Ok(message) => Some(message),
        Err(e) => {
            tracing::warn!("unreadable revocation message from Redis: {e}");
            None
        }
    }
}
