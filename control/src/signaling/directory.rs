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
    /// Unix milliseconds of a patient's first join, for the lobby waiting time (kept when the
    /// place is resumed and after the admit; absent in places written by older instances).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since_ms: Option<i64>,
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
    /// Reconnects by itself after Redis restarts.
    Redis(redis::aio::ConnectionManager),
}

/// Room entries outlive the longest join window by this much, then Redis drops them.
const REDIS_TTL_SECONDS: i64 = 24 * 3600;

/// Replaces (or, given an empty value, deletes) a field only if it still holds the value the
/// caller read: KEYS[1] the room, ARGV[1] the user, ARGV[2] the value read, ARGV[3] the new one.
/// Redis runs a script atomically.
const COMPARE_AND_SWAP: &str = r#"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
return 1
"#;

fn key(appointment: Uuid) -> String {
    format!("teletip:rtc:{appointment}")
}

impl Directory {
    pub fn memory() -> Directory {
        Directory::Memory(Mutex::new(HashMap::new()))
    }

    pub async fn redis(client: &redis::Client) -> Result<Directory, DirectoryError> {
        Ok(Directory::Redis(redis::aio::ConnectionManager::new(client.clone()).await?))
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

    /// Writes `p` whatever the entry holds: the newest connection of a user takes the place.
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

    /// Changes a user's entry as one step: `change` sees the entry as it is and returns the new
    /// one, or `None` to leave it alone. Returns what was written. Handlers on different
    /// instances race (a replaced connection's disconnect against its replacement's join), so a
    /// read followed by a blind write could put back a place that another instance just took.
    pub async fn update(
        &self,
        appointment: Uuid,
        user: Uuid,
        change: impl Fn(&Participant) -> Option<Participant>,
    ) -> Result<Option<Participant>, DirectoryError> {
        let swapped = self.compare_and_swap(appointment, user, |p| change(p).map(Some)).await?;
        Ok(swapped.and_then(|(_, written)| written))
    }

    /// Removes a user's entry as one step if `wanted` holds for it; returns the removed entry.
    pub async fn remove_if(
        &self,
        appointment: Uuid,
        user: Uuid,
        wanted: impl Fn(&Participant) -> bool,
    ) -> Result<Option<Participant>, DirectoryError> {
        let swapped = self.compare_and_swap(appointment, user, |p| wanted(p).then_some(None)).await?;
        Ok(swapped.map(|(seen, _)| seen))
    }

    /// The one read-modify-write: `decide` returns `None` to do nothing, `Some(None)` to delete,
    /// `Some(Some(p))` to write `p`. Returns the entry seen and what replaced it, if anything
    /// was done. In Redis the write happens only if the entry still holds the exact value
    /// `decide` saw (a compare-and-swap script); otherwise it reads again.
    async fn compare_and_swap(
        &self,
        appointment: Uuid,
        user: Uuid,
        decide: impl Fn(&Participant) -> Option<Option<Participant>>,
    ) -> Result<Option<(Participant, Option<Participant>)>, DirectoryError> {
        match self {
            Directory::Memory(m) => {
                let mut rooms = m.lock().expect("directory lock");
                let Some(room) = rooms.get_mut(&appointment) else { return Ok(None) };
                let Some(seen) = room.get(&user).cloned() else { return Ok(None) };
                let Some(written) = decide(&seen) else { return Ok(None) };
                match &written {
                    Some(p) => room.insert(user, p.clone()),
                    None => room.remove(&user),
                };
                Ok(Some((seen, written)))
            }
            Directory::Redis(conn) => {
                let mut conn = conn.clone();
                loop {
                    let raw: Option<String> =
                        redis::cmd("HGET").arg(key(appointment)).arg(user.to_string()).query_async(&mut conn).await?;
                    let Some(raw) = raw else { return Ok(None) };
                    let seen: Participant = serde_json::from_str(&raw)?;
                    let Some(written) = decide(&seen) else { return Ok(None) };
                    let replacement = match &written {
                        Some(p) => serde_json::to_string(p)?,
                        None => String::new(),
                    };
                    let swapped: i64 = redis::cmd("EVAL")
                        .arg(COMPARE_AND_SWAP)
                        .arg(1)
                        .arg(key(appointment))
                        .arg(user.to_string())
                        .arg(&raw)
                        .arg(&replacement)
                        .query_async(&mut conn)
                        .await?;
                    if swapped == 1 {
                        return Ok(Some((seen, written)));
                    }
                }
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
