//! Reads that every ICE credential request makes, kept for at most [`READ_CACHE_TTL`] so that
//! a client fetching credentials thousands of times a second does not cost a database round
//! trip per read: the access token's login session and account (`AccountStore::token_session`)
//! and a patient's residency facts (`ResidencyStore::patient_residency`).
//!
//! Why this cannot weaken revocation on this instance: every write of this store that changes
//! what a cache holds (a session revoked, all of a user's sessions revoked, an account changed,
//! erased or deleted; a consent, a notice, a patient's region or record, a legal basis) drops an
//! [`InvalidateOnDrop`] after its commit, which forgets every entry of that cache at once. An
//! entry read from the database while such a write was under way carries the generation it
//! was read in and is not kept once the generation moved on, so a read that raced a revocation
//! is never served after it. Another control instance on the same database does not see this
//! instance's invalidations, nor those of the `teletip-control user` commands (another
//! process): there a change takes effect when its entry expires, within [`READ_CACHE_TTL`] of
//! its commit (docs/control-security.md, section 2). Those commands wait that long before they
//! return.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long an entry is served: the bound on how late another instance's change takes effect
/// here.
pub const READ_CACHE_TTL: Duration = Duration::from_secs(1);

/// Entries kept at most; beyond, the cache starts again empty (a flood of distinct tokens
/// costs database reads, never unbounded memory).
const MAX_ENTRIES: usize = 100_000;

struct Entry<V> {
    value: V,
    /// When the read began: what it returned was committed no later than this.
    read_at: Instant,
    generation: u64,
}

/// Taken before a read of the database, handed to [`ReadCache::put`] with what it read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    generation: u64,
    started: Instant,
}

/// Values by key as last read from the database.
pub(crate) struct ReadCache<K, V> {
    generation: AtomicU64,
    entries: Mutex<HashMap<K, Entry<V>>>,
}

impl<K, V> Default for ReadCache<K, V> {
    fn default() -> Self {
        ReadCache { generation: AtomicU64::new(0), entries: Mutex::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash, V: Clone> ReadCache<K, V> {
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Take it *before* reading the database. An entry is served for [`READ_CACHE_TTL`] from
    /// this moment, so a change committed by another process is refused at most that long
    /// after its commit (what the CLI waits for, `cli::users`).
    pub fn ticket(&self) -> Ticket {
        Ticket { generation: self.generation(), started: Instant::now() }
    }

    /// The value of `key`, if read less than [`READ_CACHE_TTL`] ago and since the last
    /// invalidation.
    pub fn get(&self, key: &K) -> Option<V> {
        let generation = self.generation();
        let entries = self.entries.lock().expect("read cache lock");
        let e = entries.get(key)?;
        (e.generation == generation && e.read_at.elapsed() < READ_CACHE_TTL).then(|| e.value.clone())
    }

    /// Keeps what was read with `ticket` (from [`ReadCache::ticket`] before the read); nothing
    /// if an invalidation came in between.
    pub fn put(&self, key: K, ticket: Ticket, value: V) {
        let mut entries = self.entries.lock().expect("read cache lock");
        if self.generation() != ticket.generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, Entry { value, read_at: ticket.started, generation: ticket.generation });
    }
}

impl<K, V> ReadCache<K, V> {
    /// Forgets everything.
    pub fn invalidate(&self) {
        let mut entries = self.entries.lock().expect("read cache lock");
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}

/// Something [`InvalidateOnDrop`] can invalidate.
pub(crate) trait Invalidate: Sync {
    fn invalidate(&self);
}

impl<K: Send, V: Send> Invalidate for ReadCache<K, V> {
    fn invalidate(&self) {
        ReadCache::invalidate(self);
    }
}

/// Invalidates its cache when dropped: the first line of a write that changes what the cache
/// holds, so that the invalidation follows the write's commit on every path out (an error or
/// an early return included).
pub(crate) struct InvalidateOnDrop<'a>(pub &'a dyn Invalidate);

impl Drop for InvalidateOnDrop<'_> {
    fn drop(&mut self) {
        self.0.invalidate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalidation_forgets_entries_and_refuses_reads_that_raced_it() {
        let cache: ReadCache<u32, &str> = ReadCache::default();
        cache.put(1, cache.ticket(), "live");
        assert_eq!(cache.get(&1), Some("live"));
        drop(InvalidateOnDrop(&cache));
        assert_eq!(cache.get(&1), None, "an invalidation forgets the entry");
        // A read that began before an invalidation and ends after it is not kept.
        let before = cache.ticket();
        cache.invalidate();
        cache.put(1, before, "stale");
        assert_eq!(cache.get(&1), None, "a read older than the last invalidation is not served");
    }

    #[test]
    fn entries_expire() {
        let cache: ReadCache<u32, &str> = ReadCache::default();
        cache.put(1, cache.ticket(), "live");
        cache.entries.lock().unwrap().get_mut(&1).unwrap().read_at -= READ_CACHE_TTL;
        assert_eq!(cache.get(&1), None);
    }
}
