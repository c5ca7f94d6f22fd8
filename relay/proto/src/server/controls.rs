//! What changes while the relay runs: the accepted secrets, the drain flag and the revoked
//! sessions (set by the daemon), and the unauthenticated-answer budgets (spent and earned by
//! every shard).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::credentials::Secret;
use crate::revocations::Revocations;
use crate::secrets::SecretRing;
use crate::source_budget::SourceBudgets;

/// The run-time controls every shard shares, beside the fixed [`ServerConfig`]. Cloning
/// shares them: the daemon keeps one clone to rotate secrets (SIGHUP, the control link) and
/// to start and end a drain (SIGUSR1, SIGUSR2, the control link) and to revoke sessions (the
/// control link), the shards read them.
///
/// [`ServerConfig`]: super::ServerConfig
#[derive(Debug, Clone)]
pub struct Controls {
    /// Accepted REST API secrets; the first is the current one, the others still verify.
    pub secrets: Arc<SecretRing>,
    /// Sessions the control plane revoked: their credentials are refused, and each shard ends
    /// their allocations when it sees the generation change ([`Shard::apply_revocations`]).
    ///
    /// [`Shard::apply_revocations`]: super::Shard::apply_revocations
    pub revocations: Arc<Revocations>,
    /// Answers to unauthenticated requests per source address, one table for all shards, so
    /// that a source's budget does not grow with the number of workers.
    pub budgets: Arc<SourceBudgets>,
    draining: Arc<AtomicBool>,
}

impl Controls {
    /// `secrets` must not be empty (see [`SecretRing::new`]); not draining, nothing revoked.
    pub fn new(secrets: Vec<Secret>) -> Self {
        Controls {
            secrets: Arc::new(SecretRing::new(secrets)),
            revocations: Arc::new(Revocations::new()),
            budgets: Arc::new(SourceBudgets::default()),
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// While set, new Allocates are turned away (300 Try Alternate to an alternate server,
    /// else 508) and existing allocations carry on. Read once per Allocate.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Starts (`true`) or ends a drain; returns whether the relay was draining before.
    pub fn set_draining(&self, draining: bool) -> bool {
        self.draining.swap(draining, Ordering::Relaxed)
    }
}
