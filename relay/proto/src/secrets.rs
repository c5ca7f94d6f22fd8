//! The REST API secrets a relay accepts, replaceable while it runs (the daemon swaps them on
//! SIGHUP) so that operators rotate secrets without a restart, which would end every call.
//!
//! Every authentication reads the current set; a replacement is published as a whole with
//! `arc-swap`, so readers take no lock and never see half a set. Counters are kept per key id
//! in "slots": a key id keeps its slot for the life of the process, so its success counter
//! carries on across rotations and a removed key's count stays where it was.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::credentials::Secret;

/// One accepted secret and the counter slot of its key id.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub secret: Secret,
    pub slot: usize,
}

/// One published set: the accepted secrets (the first is the current one, the others still
/// verify) and every key id ever accepted, indexed by slot.
#[derive(Debug)]
pub struct SecretSet {
    pub accepted: Vec<Accepted>,
    pub key_ids: Vec<String>,
}

/// What a replacement changed, by key id (never by value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rotation {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Key ids present before and after whose value changed.
    pub changed: Vec<String>,
    /// The key id new credentials are expected to be signed with (the first secret).
    pub current: String,
}

/// The accepted secrets, shared by every shard.
pub struct SecretRing {
    set: ArcSwap<SecretSet>,
}

impl SecretRing {
    /// `secrets` must not be empty: a relay without a secret accepts nobody (the daemon's
    /// configuration refuses that before it gets here).
    pub fn new(secrets: Vec<Secret>) -> Self {
        let set = Self::next_set(&SecretSet { accepted: Vec::new(), key_ids: Vec::new() }, secrets);
        SecretRing { set: ArcSwap::from_pointee(set) }
    }

    /// The set as it is now; hold it only for one authentication (arc-swap's guard: no
    /// reference count is touched, so workers on several cores do not contend on it).
    pub fn current(&self) -> arc_swap::Guard<Arc<SecretSet>> {
        self.set.load()
    }

    /// Publishes `secrets` in place of the current set and says what changed. Allocations
    /// made under a removed secret keep the key they derived and live on until they end;
    /// new credentials under it are refused from now on.
    pub fn replace(&self, secrets: Vec<Secret>) -> Rotation {
        let before = self.set.load_full();
        let next = Self::next_set(&before, secrets);
        let rotation = Rotation {
            added: next.accepted.iter().filter(|a| !has_key(&before, a)).map(key_id).collect(),
            removed: before.accepted.iter().filter(|a| !has_key(&next, a)).map(key_id).collect(),
            changed: next
                .accepted
                .iter()
                .filter(|a| before.accepted.iter().any(|b| b.slot == a.slot && b.secret.value() != a.secret.value()))
                .map(key_id)
                .collect(),
            current: next.accepted.first().map(key_id).unwrap_or_default(),
        };
        // One writer (the daemon's signal loop); a plain store is enough.
        self.set.store(Arc::new(next));
        rotation
    }

    fn next_set(before: &SecretSet, secrets: Vec<Secret>) -> SecretSet {
        let mut key_ids = before.key_ids.clone();
        let accepted = secrets
            .into_iter()
            .map(|secret| {
                let slot = match key_ids.iter().position(|k| *k == secret.key_id) {
                    Some(slot) => slot,
                    None => {
                        key_ids.push(secret.key_id.clone());
                        key_ids.len() - 1
                    }
                };
                Accepted { secret, slot }
            })
            .collect();
        SecretSet { accepted, key_ids }
    }
}

fn has_key(set: &SecretSet, a: &Accepted) -> bool {
    set.accepted.iter().any(|b| b.slot == a.slot)
}

fn key_id(a: &Accepted) -> String {
    a.secret.key_id.clone()
}

impl std::fmt::Debug for SecretRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.current();
        let ids: Vec<&str> = set.accepted.iter().map(|a| a.secret.key_id.as_str()).collect();
        write!(f, "SecretRing {{ accepted: {ids:?} }}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(id: &str, value: &str) -> Secret {
        Secret::new(id, value.as_bytes().to_vec())
    }

    #[test]
    fn a_key_id_keeps_its_slot_across_rotations() {
        let ring = SecretRing::new(vec![secret("k1", "one-one-one-one-1"), secret("k2", "two-two-two-two-2")]);
        let slots =
            |r: &SecretRing| r.current().accepted.iter().map(|a| (a.secret.key_id.clone(), a.slot)).collect::<Vec<_>>();
        assert_eq!(slots(&ring), vec![("k1".into(), 0), ("k2".into(), 1)]);
        let rotation = ring.replace(vec![secret("k3", "three-three-three"), secret("k2", "two-two-two-two-2")]);
        assert_eq!(
            rotation,
            Rotation { added: vec!["k3".into()], removed: vec!["k1".into()], changed: vec![], current: "k3".into() }
        );
        assert_eq!(slots(&ring), vec![("k3".into(), 2), ("k2".into(), 1)]);
        assert_eq!(ring.current().key_ids, vec!["k1", "k2", "k3"], "a removed key id keeps its slot");
        let rotation = ring.replace(vec![secret("k1", "one-again-one-again")]);
        assert_eq!(rotation.added, vec!["k1"]);
        assert_eq!(rotation.removed, vec!["k3", "k2"]);
        assert_eq!(slots(&ring), vec![("k1".into(), 0)], "a key id that comes back gets its old slot");
        assert_eq!(ring.replace(vec![secret("k1", "one-changed-changed")]).changed, vec!["k1"]);
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let ring = SecretRing::new(vec![secret("k1", "hunter2hunter2hunter2")]);
        let shown = format!("{ring:?}");
        assert!(shown.contains("k1") && !shown.contains("hunter2"), "{shown}");
    }
}
