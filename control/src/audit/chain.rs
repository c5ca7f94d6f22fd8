//! The audit hash chain: each event's hash covers the previous event's hash and every field of
//! its own, so a changed, removed or reordered event breaks every hash after it. Pure code: the
//! store appends and reads events (`store::AuditStore`), this module hashes and verifies them.

use serde::Serialize;
use uuid::Uuid;

use crate::store::{AuditEvent, NewAuditEvent};

/// The hash before the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl NewAuditEvent {
    /// The event as recorded at position `seq` of the chain, after `prev_hash`.
    pub fn recorded(self, seq: i64, id: Uuid, prev_hash: String) -> AuditEvent {
        let hash = audit_hash(&prev_hash, seq, id, &self);
        AuditEvent {
            seq,
            id,
            at: self.at,
            actor: self.actor,
            action: self.action,
            target: self.target,
            outcome: self.outcome,
            source_ip: self.source_ip,
            request_id: self.request_id,
            hash,
            prev_hash,
        }
    }
}

/// The audit hash of an event: SHA-256 over the previous hash and every field, each
/// length-prefixed so that no two different events serialise the same way. Timestamps count in
/// microseconds, the precision both engines store.
pub fn audit_hash(prev_hash: &str, seq: i64, id: Uuid, e: &NewAuditEvent) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    field(prev_hash.as_bytes());
    field(&seq.to_be_bytes());
    field(id.as_bytes());
    field(&(e.at.unix_timestamp_nanos() / 1000).to_be_bytes());
    field(e.actor.map(|a| a.into_bytes().to_vec()).unwrap_or_default().as_slice());
    field(e.action.as_bytes());
    field(e.target.as_deref().unwrap_or("").as_bytes());
    field(e.outcome.as_bytes());
    field(e.source_ip.as_deref().unwrap_or("").as_bytes());
    field(e.request_id.as_deref().unwrap_or("").as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainVerification {
    pub verified: bool,
    pub events_checked: i64,
    /// The first event whose hash or link does not match, if any.
    pub first_broken_seq: Option<i64>,
}

/// Walks `events` in chain order from the genesis hash.
pub fn verify_chain(events: &[AuditEvent]) -> ChainVerification {
    let mut prev = GENESIS_HASH.to_string();
    for (i, e) in events.iter().enumerate() {
        let expected_seq = i as i64 + 1;
        let fields = NewAuditEvent {
            at: e.at,
            actor: e.actor,
            action: e.action.clone(),
            target: e.target.clone(),
            outcome: e.outcome.clone(),
            source_ip: e.source_ip.clone(),
            request_id: e.request_id.clone(),
        };
        if e.seq != expected_seq || e.prev_hash != prev || audit_hash(&prev, e.seq, e.id, &fields) != e.hash {
            return ChainVerification {
                verified: false,
                events_checked: i as i64 + 1,
                first_broken_seq: Some(expected_seq),
            };
        }
        prev = e.hash.clone();
    }
    ChainVerification { verified: true, events_checked: events.len() as i64, first_broken_seq: None }
}
