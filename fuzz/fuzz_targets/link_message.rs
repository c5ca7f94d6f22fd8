//! The control link's messages past the framing (link_frame covers the 4-byte length): the JSON
//! of one frame, read by either side and then handled as the receiver handles it. The relay
//! applies a `revoke` order to its real revocation list and screens pushed secrets with the
//! check its own secret files pass; the control plane screens a registration's host before it
//! puts it into the `turn:` URLs clients get. Without the length prefix, mutation works on the
//! JSON itself instead of first having to keep a prefix consistent.

#![no_main]

use libfuzzer_sys::fuzz_target;
use teletip_link::message::{ControlToRelay, RelayToControl};
use teletip_turn_proto::revocations::Revocations;

/// A fixed "now", so an input behaves the same on every run (replays reproduce).
const NOW: u64 = 1_796_000_000;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = serde_json::from_slice::<ControlToRelay>(data) {
        at_the_relay(message);
    }
    if let Ok(message) = serde_json::from_slice::<RelayToControl>(data) {
        at_the_control_plane(message);
    }
});

fn at_the_relay(message: ControlToRelay) {
    match message {
        ControlToRelay::Revoke { sessions } => {
            let revocations = Revocations::new();
            let orders = sessions.iter().map(|s| (s.id.as_str(), s.expires));
            let applied = revocations.revoke(orders.clone(), NOW);
            // Every entry is counted once, whatever it holds (duplicates count as known).
            assert_eq!(applied.added + applied.known + applied.ignored, sessions.len());
            let set = revocations.current();
            assert!(set.len() <= applied.added);
            for s in &sessions {
                if set.contains(&s.id, NOW) {
                    // Only what was ordered and is still in force is revoked. An id may be
                    // ordered twice: the latest expiry holds, so it is one of its orders that
                    // is in force, not necessarily this one (found by this target in CI).
                    assert!(!s.id.is_empty());
                    assert!(sessions.iter().any(|o| o.id == s.id && o.expires > NOW), "{:?}", s.id);
                }
            }
            // ...and the same order again changes nothing: a reconnection resends them all.
            let again = revocations.revoke(orders, NOW);
            assert_eq!(again.added, 0);
            assert_eq!(revocations.current().len(), set.len());
        }
        ControlToRelay::Secrets { secrets } => {
            for s in secrets {
                // A key id the relay accepts can go into a log line and a metric label as it is.
                if teletip_relay::config::is_plain_key_id(&s.key_id) {
                    assert!(!s.key_id.is_empty());
                    assert!(
                        s.key_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
                        "{:?}",
                        s.key_id
                    );
                }
            }
        }
        ControlToRelay::Registered { .. } | ControlToRelay::Drain { .. } => {}
    }
}

fn at_the_control_plane(message: RelayToControl) {
    if let RelayToControl::Register(registration) = message {
        let host = &registration.host;
        if teletip_control::relays::link::plausible_host(host) {
            // Nothing a relay says can reshape the URL: no scheme, user, path, query or space.
            assert!(!host.is_empty());
            assert!(!host.contains(['?', '@', '/', '#', ' ', '[', ']', '\n', '%']), "{host:?}");
            let url = format!("turn:{host}:3478?transport=udp");
            assert_eq!(url.matches('?').count(), 1, "{url}");
        }
    }
}
