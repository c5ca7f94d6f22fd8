//! Who is in which consultation room, shared by every control instance: each participant's
//! peer id, role, lobby or admitted state, and whether (and since when) they are disconnected,
//! so that a reconnect within the resume window, on any instance, restores their place. In
//! memory for one instance; in Redis when `redis-url` is set. Never holds SDP or candidates.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    Waiting,
    Admitted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub peer_id: String,
    pub user_id: Uuid,
    pub role: Role,
    pub state: PeerState,
    /// The Socket.IO id of the connection that holds the place now.
    pub socket_id: String,
    /// Unix milliseconds of the disconnect, while disconnected.
    pub disconnected_at_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("corrupt room entry: {0}")]
    Corrupt(#[from] serde_json::Error),
}

pub enum Directory {
    Memory(Mutex<HashMap<Uuid, HashMap<Uuid, Participant>>>),
    Redis(redis::aio::MultiplexedConnection),
}

/// Room entries outlive the longest join window by this much, then Redis drops them.
const REDIS_TTL_SECONDS: i64 = 24 * 3600;

fn key(appointment: Uuid) -> String {
    format!("teletip:rtc:{appointment}")
}

impl Directory {
    pub fn memory() -> Directory {
        Directory::Memory(Mutex::new(HashMap::new()))
    }

    pub async fn redis(client: &redis::Client) -> Result<Directory, DirectoryError> {
        Ok(Directory::Redis(client.get_multiplexed_async_connection().await?))
    }

    pub async fn list(&self, appointment: Uuid) -> Result<Vec<Participant>, DirectoryError> {
        match self {
            Directory::Memory(m) => {
                let rooms = m.lock().expect("directory lock");
                Ok(rooms.get(&appointment).map(|r| r.values().cloned().collect()).unwrap_or_default())
            }
            Directory::Redis(conn) => {
                let mut conn = conn.clone();
                let values: HashMap<String, String> =
                    redis::cmd("HGETALL").arg(key(appointment)).query_async(&mut conn).await?;
                values.values().map(|v| Ok(serde_json::from_str(v)?)).collect()
            }
        }
    }

    pub async fn get(&self, appointment: Uuid, user: Uuid) -> Result<Option<Participant>, DirectoryError> {
        Ok(self.list(appointment).await?.into_iter().find(|p| p.user_id == user))
    }

    pub async fn put(&self, appointment: Uuid, p: &Participant) -> Result<(), DirectoryError> {
        match self {
            Directory::Memory(m) => {
                m.lock().expect("directory lock").entry(appointment).or_default().insert(p.user_id, p.clone());
                Ok(())
            }
            Directory::Redis(conn) => {
                let mut conn = conn.clone();
                let value = serde_json::to_string(p)?;
                redis::pipe()
                    .cmd("HSET")
                    .arg(key(appointment))
                    .arg(p.user_id.to_string())
                    .arg(value)
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(key(appointment))
                    .arg(REDIS_TTL_SECONDS)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await?;
                Ok(())
            }
        }
    }

    pub async fn remove(&self, appointment: Uuid, user: Uuid) -> Result<(), DirectoryError> {
        match self {
            Directory::Memory(m) => {
                if let Some(room) = m.lock().expect("directory lock").get_mut(&appointment) {
                    room.remove(&user);
                }
                Ok(())
            }
            Directory::Redis(conn) => {
                let mut conn = conn.clone();
                redis::cmd("HDEL").arg(key(appointment)).arg(user.to_string()).query_async::<()>(&mut conn).await?;
                Ok(())
            }
        }
    }

    pub async fn clear(&self, appointment: Uuid) -> Result<(), DirectoryError> {
        match self {
            Directory::Memory(m) => {
                m.lock().expect("directory lock").remove(&appointment);
                Ok(())
            }
            Directory::Redis(conn) => {
                let mut conn = conn.clone();
                redis::cmd("DEL").arg(key(appointment)).query_async::<()>(&mut conn).await?;
                Ok(())
            }
        }
    }
}
