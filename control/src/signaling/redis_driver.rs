//! The Redis pub/sub driver of the Socket.IO adapter. socketioxide-redis's own redis driver holds
//! one `MultiplexedConnection` and never reconnects: after a Redis restart, events stop crossing
//! between control instances until each instance restarts (`tests/signaling/redis-restart.test.js`
//! showed it). This one is the same driver over redis's `ConnectionManager`, which reconnects
//! with backoff and subscribes to the adapter's channels again by itself.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, FromRedisValue, PushInfo, PushKind};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

/// `url` asking for RESP3 (pushed pub/sub messages on a `ConnectionManager`), unless it names a
/// protocol already.
pub fn resp3_url(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_owned()
    } else {
        format!("{url}{}protocol=resp3", if url.contains('?') { "&" } else { "?" })
    }
}

#[derive(Clone)]
pub struct ReconnectingDriver {
    handlers: Handlers,
    conn: ConnectionManager,
}

#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct DriverError(#[from] redis::RedisError);

impl ReconnectingDriver {
    /// Connects (the first connection must succeed: a wrong `redis-url` fails the start).
    pub async fn connect(client: redis::Client) -> Result<ReconnectingDriver, redis::RedisError> {
        let handlers: Handlers = Arc::default();
        let delivered_to = handlers.clone();
        let config = ConnectionManagerConfig::new()
            .set_push_sender(move |push: PushInfo| {
                deliver(push, &delivered_to);
                Ok::<(), std::convert::Infallible>(())
            })
            .set_automatic_resubscription();
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(ReconnectingDriver { handlers, conn })
    }
}

/// Hands a published message to the adapter's stream for its channel.
fn deliver(push: PushInfo, handlers: &Handlers) {
    if !matches!(push.kind, PushKind::Message | PushKind::SMessage) || push.data.len() < 2 {
        return;
    }
    let mut data = push.data.into_iter();
    let (Some(channel), Some(message)) = (data.next(), data.next()) else { return };
    let (Ok(channel), Ok(message)) = (String::from_redis_value(channel), Vec::<u8>::from_redis_value(message)) else {
        tracing::warn!("unreadable message from the Redis adapter channel");
        return;
    };
    if let Some(tx) = handlers.read().expect("handlers lock").get(&channel) {
        if let Err(e) = tx.try_send((channel, message)) {
            tracing::warn!("signaling event from Redis dropped: {e}");
        }
    }
}

impl Driver for ReconnectingDriver {
    type Error = DriverError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        self.conn.clone().publish::<_, _, redis::Value>(chan, val).await?;
        Ok(())
    }

    async fn subscribe(&self, chan: String, size: usize) -> Result<MessageStream<ChanItem>, Self::Error> {
        let (tx, rx) = mpsc::channel(size);
        self.handlers.write().expect("handlers lock").insert(chan.clone(), tx);
        self.conn.clone().subscribe(chan.as_str()).await?;
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        self.handlers.write().expect("handlers lock").remove(&chan);
        self.conn.clone().unsubscribe(chan).await?;
        Ok(())
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        let (_, count): (String, u16) =
            redis::cmd("PUBSUB").arg("NUMSUB").arg(chan).query_async(&mut self.conn.clone()).await?;
        Ok(count)
    }
}
