//! What is read rather than counted, sampled when Prometheus scrapes `/metrics`: the database
//! pool, the relays by state, the last backup, and the process (CPU, memory, file descriptors,
//! start time).

use std::sync::OnceLock;

use metrics::gauge;

use crate::relays::registry::RelayNode;
use crate::state::AppState;

/// Where a relay stands, as the ICE answers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayState {
    /// Connected, reporting on time, not draining: handed out.
    Serving,
    /// Connected, but draining or asked to: not handed out.
    Draining,
    /// Connected, but its reports are late: not handed out.
    Stale,
    /// Known from an earlier registration, not connected now.
    Disconnected,
}

impl RelayState {
    pub const ALL: &'static [RelayState] =
        &[RelayState::Serving, RelayState::Draining, RelayState::Stale, RelayState::Disconnected];

    pub fn of(node: &RelayNode) -> RelayState {
        if !node.connected {
            RelayState::Disconnected
        } else if node.draining || node.drain_requested {
            RelayState::Draining
        } else if !node.healthy {
            RelayState::Stale
        } else {
            RelayState::Serving
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            RelayState::Serving => "serving",
            RelayState::Draining => "draining",
            RelayState::Stale => "stale",
            RelayState::Disconnected => "disconnected",
        }
    }
}

fn process() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

pub(super) fn describe() {
    process().describe();
    metrics::describe_gauge!(
        LAST_BACKUP,
        metrics::Unit::Seconds,
        "When the newest backup of the database was made (Unix time; 0: never), from its backup.create audit event"
    );
    for state in RelayState::ALL {
        gauge!("teletip_relays", "state" => state.label()).set(0.0);
    }
}

/// Brings the sampled series up to date; called by the `/metrics` handler before rendering.
pub async fn sample(state: &AppState) {
    if let Some(pool) = state.store().pool_status() {
        gauge!("teletip_db_pool_connections", "state" => "in_use").set(pool.size.saturating_sub(pool.idle) as f64);
        gauge!("teletip_db_pool_connections", "state" => "idle").set(pool.idle as f64);
        gauge!("teletip_db_pool_max_connections").set(pool.max as f64);
    }
    let nodes = state.relays().list().await;
    for s in RelayState::ALL {
        let n = nodes.iter().filter(|node| RelayState::of(node) == *s).count();
        gauge!("teletip_relays", "state" => s.label()).set(n as f64);
    }
    last_backup(state).await;
    process().collect();
}

const LAST_BACKUP: &str = "teletip_control_last_backup_timestamp_seconds";

/// Backups are made by `teletip-control backup`, another process: its audit event, read here
/// (one indexed row), is how every serving instance sees it.
async fn last_backup(state: &AppState) {
    use crate::store::AuditFilter;
    let filter = AuditFilter { action: Some(crate::backup::BACKUP_CREATE.into()), limit: 1, ..AuditFilter::default() };
    match state.store().list_audit(&filter).await {
        Ok(newest) => {
            let at = newest.first().map_or(0, |e| e.at.unix_timestamp());
            gauge!(LAST_BACKUP).set(at as f64);
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the last backup's time for the metrics"),
    }
}
