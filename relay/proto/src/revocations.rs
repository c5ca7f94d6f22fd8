//! TURN sessions the control plane revoked: each session id (the opaque part of a REST username
//! `<expiry>:<id>`) with the expiry of its credentials, after which a revocation is moot.
//!
//! Shared by every shard like the [`SecretRing`](crate::secrets::SecretRing): the set is
//! published whole with `arc-swap`, so an authentication reads it without a lock, and a
//! generation number tells each shard, with one atomic load per turn of its loop, that it has
//! allocations to look at. Nothing here is read for relayed packets: a shard ends a revoked
//! session's allocations when it learns of the revocation, and refuses its credentials from
//! then on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;

/// The longest id a REST username can carry (RFC 8489 §14.3 bounds the username to 509 bytes).
const MAX_ID_LEN: usize = 509;

/// One published set: session id → Unix seconds until which it is revoked.
#[derive(Debug, Default)]
pub struct RevokedSet {
    sessions: FxHashMap<Box<str>, u64>,
}

impl RevokedSet {
    /// Whether session `id` is revoked at `now_secs`.
    pub fn contains(&self, id: &str, now_secs: u64) -> bool {
        self.sessions.get(id).is_some_and(|&until| until > now_secs)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// What [`Revocations::revoke`] did with the sessions it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Sessions revoked from now on (or revoked longer than before).
    pub added: usize,
    /// Sessions already revoked at least as long: an order sent again (after a reconnection).
    pub known: usize,
    /// Entries whose expiry has passed, or whose id no REST username can carry (empty, which
    /// would name every `"<expiry>"` username, or longer than a username may be).
    pub ignored: usize,
}

/// The revoked sessions every shard shares.
#[derive(Debug, Default)]
pub struct Revocations {
    set: ArcSwap<RevokedSet>,
    /// Raised after each publication that revoked something new; shards compare it with the
    /// last one they applied.
    generation: AtomicU64,
}

impl Revocations {
    pub fn new() -> Self {
        Self::default()
    }

    /// The set as it is now; hold it only for one authentication or one sweep.
    pub fn current(&self) -> arc_swap::Guard<Arc<RevokedSet>> {
        self.set.load()
    }

    /// Whether session `id` is revoked at `now_secs`. Lock-free.
    pub fn is_revoked(&self, id: &str, now_secs: u64) -> bool {
        !id.is_empty() && self.set.load().contains(id, now_secs)
    }

    /// The number shards compare with the last one they applied.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Revokes each `(id, expires)` until `expires` (Unix seconds). Idempotent. Publishes a new
    /// set (a copy of the current one with these added and the expired ones left out), so it
    /// costs a copy of the set per call: callers hand over a whole batch at once.
    pub fn revoke<'a>(&self, sessions: impl IntoIterator<Item = (&'a str, u64)> + Clone, now_secs: u64) -> Applied {
        let mut applied = Applied::default();
        // `rcu` retries the closure if another writer published meanwhile (the control link
        // and the pruning are the writers), so nothing published is lost.
        self.set.rcu(|current| {
            applied = Applied::default();
            let mut sessions_now: FxHashMap<Box<str>, u64> =
                current.sessions.iter().filter(|(_, until)| **until > now_secs).map(|(k, v)| (k.clone(), *v)).collect();
            for (id, expires) in sessions.clone() {
                if id.is_empty() || id.len() > MAX_ID_LEN || expires <= now_secs {
                    applied.ignored += 1;
                    continue;
                }
                match sessions_now.get_mut(id) {
                    Some(until) if *until >= expires => applied.known += 1,
                    Some(until) => {
                        *until = expires;
                        applied.added += 1;
                    }
                    None => {
                        sessions_now.insert(id.into(), expires);
                        applied.added += 1;
                    }
                }
            }
            RevokedSet { sessions: sessions_now }
        });
        if applied.added > 0 {
            // After the set: a shard that sees this generation sees the set that raised it.
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        applied
    }

    /// Forgets the revocations whose credentials have expired (they are refused as expired
    /// anyway); returns how many remain. Copies the set only when something expired.
    pub fn prune(&self, now_secs: u64) -> usize {
        if self.set.load().sessions.values().all(|until| *until > now_secs) {
            return self.set.load().len();
        }
        self.set.rcu(|current| RevokedSet {
            sessions: current
                .sessions
                .iter()
                .filter(|(_, until)| **until > now_secs)
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        });
        self.set.load().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_until_expiry_idempotent_and_bad_entries_ignored() {
        let r = Revocations::new();
        let g0 = r.generation();
        let applied = r.revoke([("a", 200), ("b", 150), ("", 300), ("old", 100), ("a", 200)], 100);
        assert_eq!(applied, Applied { added: 2, known: 1, ignored: 2 });
        assert!(r.generation() > g0);
        assert!(r.is_revoked("a", 199) && !r.is_revoked("a", 200));
        assert!(!r.is_revoked("", 100) && !r.is_revoked("old", 99) && !r.is_revoked("c", 100));

        let g1 = r.generation();
        assert_eq!(r.revoke([("a", 200), ("b", 120)], 100), Applied { added: 0, known: 2, ignored: 0 });
        assert_eq!(r.generation(), g1, "an order sent again changes nothing");
        assert_eq!(r.revoke([("b", 180)], 100).added, 1, "a later expiry extends it");
        assert!(r.is_revoked("b", 170));

        assert_eq!(r.prune(175), 2);
        assert_eq!(r.prune(185), 1, "b expired");
        assert_eq!(r.prune(300), 0);
    }

    #[test]
    fn an_id_ordered_twice_in_one_batch_holds_until_its_latest_expiry() {
        // The input the link_message fuzz target found (its invariant assumed one order per id).
        let r = Revocations::new();
        let applied = r.revoke([("a1b2c3d4", 700), ("a1b2c3d4", 100), ("", 700)], 100);
        assert_eq!(applied, Applied { added: 1, known: 0, ignored: 2 });
        assert!(r.is_revoked("a1b2c3d4", 699) && !r.is_revoked("a1b2c3d4", 700));
        let applied = r.revoke([("b", 150), ("b", 400)], 100);
        assert_eq!(applied, Applied { added: 2, known: 0, ignored: 0 }, "the later order extends the earlier");
        assert!(r.is_revoked("b", 399));
    }
}
