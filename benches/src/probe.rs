//! The probe every test datagram carries: pair, sequence number and send time, so that the
//! receiver measures loss per pair and one-way latency on the same host's monotonic clock.

/// Bytes of the probe at the start of each payload; the rest is padding to the asked size.
pub const PROBE_LEN: usize = 20;

/// CLOCK_MONOTONIC in nanoseconds: the same clock for sender and receiver on one host.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub pair: u32,
    pub seq: u64,
    pub sent_ns: u64,
}

impl Probe {
    /// Writes the probe and zero padding up to `size` bytes (at least PROBE_LEN).
    pub fn write(&self, out: &mut [u8], size: usize) -> usize {
        let size = size.max(PROBE_LEN);
        out[..4].copy_from_slice(&self.pair.to_be_bytes());
        out[4..12].copy_from_slice(&self.seq.to_be_bytes());
        out[12..20].copy_from_slice(&self.sent_ns.to_be_bytes());
        out[PROBE_LEN..size].fill(0);
        size
    }

    pub fn read(bytes: &[u8]) -> Option<Probe> {
        if bytes.len() < PROBE_LEN {
            return None;
        }
        Some(Probe {
            pair: u32::from_be_bytes(bytes[..4].try_into().ok()?),
            seq: u64::from_be_bytes(bytes[4..12].try_into().ok()?),
            sent_ns: u64::from_be_bytes(bytes[12..20].try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let p = Probe { pair: 7, seq: 1 << 40, sent_ns: 123 };
        let mut b = [0xFFu8; 64];
        assert_eq!(p.write(&mut b, 30), 30);
        assert_eq!(Probe::read(&b[..30]), Some(p));
        assert_eq!(b[29], 0);
        assert_eq!(Probe::read(&b[..10]), None);
    }
}
