//! A fixed-bucket latency histogram: 100 ns buckets up to 20 ms, no allocation while recording.

const BUCKET_NS: u64 = 100;
const BUCKETS: usize = 200_000;

pub struct Histogram {
    counts: Vec<u32>,
    overflow: u64,
    count: u64,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; BUCKETS], overflow: 0, count: 0, max_ns: 0 }
    }
}

impl Histogram {
    #[inline]
    pub fn record(&mut self, ns: u64) {
        let b = (ns / BUCKET_NS) as usize;
        match self.counts.get_mut(b) {
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
        self.max_ns
    }

    pub fn clear(&mut self) {
        self.counts.fill(0);
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
}
