//! A fixed-bucket latency histogram, no allocation while recording: 100 ns buckets up to 20 ms,
//! then 100 µs buckets up to 2 s, so that an overloaded server's queueing (tens to hundreds of
//! milliseconds) still has a p50 and a p99 rather than only a maximum.

const BUCKET_NS: u64 = 100;
const BUCKETS: usize = 200_000;
const FINE_END_NS: u64 = BUCKET_NS * BUCKETS as u64;
const COARSE_NS: u64 = 100_000;
const COARSE_BUCKETS: usize = 20_000;

pub struct Histogram {
    counts: Vec<u32>,
    coarse: Vec<u32>,
    overflow: u64,
    count: u64,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; BUCKETS], coarse: vec![0; COARSE_BUCKETS], overflow: 0, count: 0, max_ns: 0 }
    }
}

impl Histogram {
    #[inline]
    pub fn record(&mut self, ns: u64) {
        let slot = if ns < FINE_END_NS {
            self.counts.get_mut((ns / BUCKET_NS) as usize)
        } else {
            self.coarse.get_mut(((ns - FINE_END_NS) / COARSE_NS) as usize)
        };
        match slot {
            Some(c) => *c = c.saturating_add(1),
            None => self.overflow += 1,
        }
        self.count += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max_ns(&self) -> u64 {
        self.max_ns
    }

    /// The upper edge of the bucket holding quantile `q` (0..=1), in nanoseconds.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let target = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= target {
                return (i as u64 + 1) * BUCKET_NS;
            }
        }
        for (i, &c) in self.coarse.iter().enumerate() {
            seen += u64::from(c);
            if seen >= target {
                return FINE_END_NS + (i as u64 + 1) * COARSE_NS;
            }
        }
        self.max_ns
    }

    pub fn clear(&mut self) {
        self.counts.fill(0);
        self.coarse.fill(0);
        self.overflow = 0;
        self.count = 0;
        self.max_ns = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for i in 1..=100u64 {
            h.record(i * 1000);
        }
        assert_eq!(h.quantile_ns(0.5), 50_100);
        assert_eq!(h.quantile_ns(0.99), 99_100);
        assert_eq!(h.max_ns(), 100_000);
        h.record(1 << 40);
        assert_eq!(h.max_ns(), 1 << 40);
    }

    #[test]
    fn queueing_beyond_20_ms_keeps_its_quantiles() {
        let mut h = Histogram::default();
        for _ in 0..50 {
            h.record(1_000);
        }
        for _ in 0..50 {
            h.record(150_000_000);
        }
        h.record(5_000_000_000);
        assert_eq!(h.quantile_ns(0.4), 1_100);
        assert_eq!(h.quantile_ns(0.9), 150_100_000);
        assert_eq!(h.max_ns(), 5_000_000_000);
    }
}
