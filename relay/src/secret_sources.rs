//! Where the secrets the relay accepts come from: its secret files and flags (read at start and
//! on SIGHUP), and the secrets the control plane pushes over the control link. The ring holds
//! their union, so that neither source can take away what the other gives: a SIGHUP keeps the
//! pushed secrets, a push keeps the files'. Pushed secrets live in memory only; after a restart
//! the files hold until the link is up again.

use std::sync::Arc;

use teletip_turn_proto::credentials::Secret;
use teletip_turn_proto::secrets::{Rotation, SecretRing};

pub struct SecretSources {
    ring: Arc<SecretRing>,
    files: Vec<Secret>,
    pushed: Vec<Secret>,
}

/// What a change published, and the key ids both sources hold with different values (the
/// files' value is kept: the operator's file on the relay wins).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Published {
    pub rotation: Rotation,
    pub conflicts: Vec<String>,
}

impl SecretSources {
    /// `ring` as the daemon made it from `files`.
    pub fn new(ring: Arc<SecretRing>, files: Vec<Secret>) -> SecretSources {
        SecretSources { ring, files, pushed: Vec::new() }
    }

    pub fn replace_files(&mut self, files: Vec<Secret>) -> Published {
        self.files = files;
        self.publish()
    }

    pub fn replace_pushed(&mut self, pushed: Vec<Secret>) -> Published {
        self.pushed = pushed;
        self.publish()
    }

    fn publish(&self) -> Published {
        let (merged, conflicts) = merge(&self.files, &self.pushed);
        Published { rotation: self.ring.replace(merged), conflicts }
    }
}

/// The files' secrets in their order, then the pushed ones whose key id the files do not have.
fn merge(files: &[Secret], pushed: &[Secret]) -> (Vec<Secret>, Vec<String>) {
    let mut merged = files.to_vec();
    let mut conflicts = Vec::new();
    for secret in pushed {
        match files.iter().find(|f| f.key_id == secret.key_id) {
            Some(f) if f.value() != secret.value() => conflicts.push(secret.key_id.clone()),
            Some(_) => {}
            None => merged.push(secret.clone()),
        }
    }
    (merged, conflicts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(ring: &SecretRing) -> Vec<String> {
        ring.current().accepted.iter().map(|a| a.secret.key_id.clone()).collect()
    }

    #[test]
    fn files_and_pushed_secrets_are_accepted_together_and_neither_source_erases_the_other() {
        let files = vec![Secret::new("file-a", b"aaaaaaaaaaaaaaaaaaaa".to_vec())];
        let ring = Arc::new(SecretRing::new(files.clone()));
        let mut sources = SecretSources::new(ring.clone(), files);

        let published = sources.replace_pushed(vec![
            Secret::new("control-k1", b"kkkkkkkkkkkkkkkkkkkk".to_vec()),
            Secret::new("file-a", b"aaaaaaaaaaaaaaaaaaaa".to_vec()),
        ]);
        assert_eq!(ids(&ring), ["file-a", "control-k1"]);
        assert_eq!(published.rotation.added, ["control-k1"]);
        assert!(published.conflicts.is_empty());

        // A SIGHUP with a rotated file keeps the pushed secrets (file-a too: the control plane
        // still pushes it).
        sources.replace_files(vec![Secret::new("file-b", b"bbbbbbbbbbbbbbbbbbbb".to_vec())]);
        assert_eq!(ids(&ring), ["file-b", "control-k1", "file-a"]);

        // A push with a key id the file holds with another value: the file's value stays.
        let published = sources.replace_pushed(vec![Secret::new("file-b", b"not-the-file-value!!".to_vec())]);
        assert_eq!(ids(&ring), ["file-b"]);
        assert_eq!(published.conflicts, ["file-b"]);
        assert_eq!(ring.current().accepted[0].secret.value(), b"bbbbbbbbbbbbbbbbbbbb");
    }
}
