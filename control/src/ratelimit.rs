//! Rate limits shared by every control instance when `redis-url` is set. Each instance's own
//! token buckets (tower_governor, in `app.rs`) only see the requests that reach that instance, so
//! N instances behind a load balancer would allow N times the login attempts per address. Here
//! the same buckets live in Redis: a GCRA ("generic cell rate algorithm", the token bucket as
//! one timestamp per key) in a Lua script, which Redis runs atomically, timed by Redis's own
//! clock so that the instances' clocks need not agree.
//!
//! If Redis does not answer within `REDIS_TIMEOUT`, the request passes this layer (logged) and
//! the per-instance buckets still hold: losing Redis must not lock everyone out of logging in.
//! Keys carry a SHA-256 of the client address or account id, not the value itself, and expire
//! once their bucket is full again (an IPv4 address could still be found by trying them all;
//! the entries live for seconds).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::problem::ApiError;

/// How long a limit check may wait for Redis before the request goes on without it.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// KEYS[1]: the bucket. ARGV[1]: the interval between two requests at the sustained rate, in
/// ms. ARGV[2]: the burst. The key holds the "theoretical arrival time" of the next request;
/// a request is allowed if that time, pushed one interval on, is at most a burst of intervals
/// ahead of now. Returns 1 to allow, 0 to refuse.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local next_tat = tat + interval
if next_tat - now > interval * burst then return 0 end
redis.call('SET', KEYS[1], next_tat, 'PX', next_tat - now)
return 1
"#;

/// One limit: its name (part of the Redis key), the sustained rate and the burst.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub name: &'static str,
    pub interval_ms: u64,
    pub burst: u32,
}

impl Limit {
    /// The same arithmetic as the per-instance buckets: `1000 / rate` ms, at least 1.
    pub fn new(name: &'static str, per_second: u64, burst: u32) -> Limit {
        Limit { name, interval_ms: (1000 / per_second.max(1)).max(1), burst: burst.max(1) }
    }
}

/// The Redis side: connected on first use (so that an instance starts while Redis is away);
/// from then on redis's `ConnectionManager` reconnects by itself after a Redis restart.
pub struct SharedLimits {
    client: redis::Client,
    conn: OnceCell<redis::aio::ConnectionManager>,
}

impl SharedLimits {
    pub fn new(client: redis::Client) -> Arc<SharedLimits> {
        Arc::new(SharedLimits { client, conn: OnceCell::new() })
    }

    /// Whether one more request under `limit` for `key` is allowed, across every instance.
    pub async fn allow(&self, limit: &Limit, key: &str) -> Result<bool, redis::RedisError> {
        let conn = self.conn.get_or_try_init(|| redis::aio::ConnectionManager::new(self.client.clone())).await?;
        let allowed: i64 = redis::cmd("EVAL")
            .arg(GCRA)
            .arg(1)
            .arg(bucket(limit, key))
            .arg(limit.interval_ms)
            .arg(limit.burst)
            .query_async(&mut conn.clone())
            .await?;
        Ok(allowed == 1)
    }
}

/// `teletip:rl:<limit>:<interval>x<burst>:<hash of the key>`. The parameters are part of the
/// name so that instances configured differently (a rolling change, or test runs sharing one
/// Redis) keep separate buckets instead of reading each other's timestamps with another rate.
fn bucket(limit: &Limit, key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("teletip:rl:{}:{}x{}:{hex}", limit.name, limit.interval_ms, limit.burst)
}

/// What a layer limits by: the client address, or the account of a verified bearer token.
#[derive(Clone)]
pub enum KeyBy {
    PeerIp,
    /// The account (`sub`) of a valid access token, else the client address.
    Account(crate::state::AppState),
}

/// The state of one shared-limit layer.
#[derive(Clone)]
pub struct SharedLimit {
    pub limits: Arc<SharedLimits>,
    pub limit: Limit,
    pub key_by: KeyBy,
}

/// Middleware: 429 when the shared bucket is empty; the request goes on when Redis is away.
pub async fn enforce(State(s): State<SharedLimit>, mut request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
    let key = match &s.key_by {
        KeyBy::PeerIp => peer,
        // Verified once and kept in the request for the layers and the handler inside this one.
        KeyBy::Account(state) => {
            crate::auth::extract::verified_bearer(state, &mut request).map(|c| c.sub.to_string()).or(peer)
        }
    };
    let Some(key) = key else { return next.run(request).await };
    match tokio::time::timeout(REDIS_TIMEOUT, s.limits.allow(&s.limit, &key)).await {
        Ok(Ok(true)) => next.run(request).await,
        Ok(Ok(false)) => ApiError::TooManyRequests.into_response(),
        Ok(Err(e)) => {
            unavailable(&s.limit, &e.to_string());
            next.run(request).await
        }
        Err(_) => {
            unavailable(&s.limit, "no answer within 250 ms");
            next.run(request).await
        }
    }
}

/// Counts each request that went on without the shared bucket, and logs it at most once a
/// minute: an outage must show in the log without flooding it.
fn unavailable(limit: &Limit, why: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_WARNED_SECS: AtomicU64 = AtomicU64::new(0);
    metrics::counter!("rate_limit_shared_unavailable_total", "limit" => limit.name).increment(1);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let last = LAST_WARNED_SECS.load(Ordering::Relaxed);
    if now >= last + 60 && LAST_WARNED_SECS.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        tracing::warn!(
            limit = limit.name,
            "shared rate limit unavailable (Redis: {why}); each instance's own limit still applies (logged at most once a minute; counted in rate_limit_shared_unavailable_total)"
        );
    }
}
