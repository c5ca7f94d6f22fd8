//! Socket.IO event payloads on `/rtc` as the signaling handlers read them (control/src/signaling):
//! the first byte picks the event, the rest is its JSON payload (socketioxide hands handlers a
//! `serde_json::Value`). Reading never panics, and a payload that does not fit is refused as
//! `invalid` with serde's reason (the acknowledgement the client gets).

#![no_main]

use libfuzzer_sys::fuzz_target;
use teletip_control::signaling::parse_event_payload;

const EVENTS: [&str; 10] = [
    "room:join",
    "room:leave",
    "signal:offer",
    "signal:answer",
    "signal:candidate",
    "media:state",
    "lobby:admit",
    "lobby:deny",
    "room:end",
    "auth:renew",
];

fuzz_target!(|input: &[u8]| {
    let Some((&which, payload)) = input.split_first() else { return };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(payload) else { return };
    let event = EVENTS[usize::from(which) % EVENTS.len()];
    if let Err(message) = parse_event_payload(event, value) {
        assert!(message.starts_with("payload: "), "{message}");
    }
});
