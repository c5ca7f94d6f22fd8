//! What the XDP offload's tests share: the root-and-program check that skips them with a
//! message, `ip` in a namespace, and unpadded ChannelData (the program's input).

use std::process::Command;

/// Skips (returns false, with the message `why_root`) unless the test runs as root with the XDP
/// program built into the relay.
pub fn can_run(test: &str, why_root: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping {test}: {why_root} (CI runs as root)");
        return false;
    }
    if let Err(reason) = teletip_relay::xdp::OBJECT {
        eprintln!("skipping {test}: {reason}");
        return false;
    }
    true
}

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("iproute2 is installed");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A ChannelData message as a client sends it over UDP: channel, length, data, no padding.
pub fn channel_data(channel: u16, data: &[u8]) -> Vec<u8> {
    let mut v = channel.to_be_bytes().to_vec();
    v.extend((data.len() as u16).to_be_bytes());
    v.extend(data);
    v
}
