//! What the XDP offload's tests share: the root-and-program check that skips them with a
//! message, `ip` in a namespace, and ChannelData as clients send it over UDP, unpadded or padded.

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

/// ChannelData padded as RFC 8656 §12.5 allows over UDP (pion's encoder always pads): `pad`
/// bytes of `fill` after the data, whatever the length field says. `padded_channel_data(c, d,
/// (4 - d.len() % 4) % 4, f)` is the padding the RFC allows; any other count is not.
pub fn padded_channel_data(channel: u16, data: &[u8], pad: usize, fill: u8) -> Vec<u8> {
    let mut v = channel_data(channel, data);
    v.extend(std::iter::repeat_n(fill, pad));
    v
}

/// The padding RFC 8656 §12.5 allows after `len` bytes of data: up to a multiple of 4.
pub fn padding_for(len: usize) -> usize {
    (4 - len % 4) % 4
}
