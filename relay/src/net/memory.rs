//! Giving a worker's heap back to the kernel after a peak of allocations: when to trim, and
//! the glibc settings without which trimming does not reach a worker's memory.

/// Gives freed heap back to the kernel after a peak: when a worker's allocations fall to a
/// quarter of their peak (of at least 1,024), the tables have shrunk (`Shard::tick`) but the C
/// allocator keeps the freed pages of many small blocks; `malloc_trim` returns them, so that
/// the relay's RSS goes back down after a busy hour.
#[derive(Default)]
pub struct MemoryReturn {
    peak: usize,
    /// A trim ran while allocations were left: their small blocks, scattered over the peak's
    /// pages, kept those pages, so the heap is trimmed again as they go too, however few
    /// (without this, a tick that fell when 1,000 of 10,000 were left trimmed once and never
    /// again, 1,000 being under the 1,024 floor).
    draining: bool,
}

impl MemoryReturn {
    /// Whether to trim the heap now. `peak_since_last`: the most allocations held since the
    /// previous tick, so that a burst that came and went within one second is seen.
    pub fn after_tick(&mut self, peak_since_last: usize, allocations: usize) -> bool {
        self.peak = self.peak.max(peak_since_last);
        let trim = (self.peak >= 1024 || self.draining) && allocations < self.peak && allocations * 4 <= self.peak;
        if trim {
            self.draining = allocations > 0;
            self.peak = allocations;
        }
        trim
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim_heap() {
    // SAFETY: malloc_trim only releases free memory of the C allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim_heap() {}

/// Fixes glibc's thresholds for returning memory, before the workers start. By default glibc
/// raises them as the process frees large blocks (up to 32 MiB for mmap, 64 MiB for trimming),
/// so after the first peak a worker's large tables come from its arena instead of their own
/// mappings, and what they leave at the top of a thread arena is never handed back:
/// `malloc_trim` releases free blocks inside an arena but not a thread arena's top. Measured:
/// after a second round of 10,000 allocations a worker's arena kept 3.5-5.5 MiB resident
/// (RSS 9-14 MiB instead of 6), even with a trim every second. With fixed thresholds, blocks
/// of 128 KiB and more (the allocation tables) are mapped and unmapped on their own, and an
/// arena's top is trimmed once 1 MiB of it is free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn fix_malloc_thresholds() {
    // SAFETY: mallopt only sets allocator parameters; called before the worker threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn fix_malloc_thresholds() {}

#[cfg(test)]
mod tests {
    use super::MemoryReturn;

    /// Ticks with (peak since the last tick, allocations now); the ticks at which it trims.
    fn trims(ticks: &[(usize, usize)]) -> Vec<usize> {
        let mut m = MemoryReturn::default();
        ticks.iter().enumerate().filter(|(_, (peak, now))| m.after_tick(*peak, *now)).map(|(i, _)| i).collect()
    }

    #[test]
    fn a_peak_that_drains_over_several_ticks_is_trimmed_until_it_is_gone() {
        // 10,000, then 1,000 left at one tick (trim), then none (trim again), then idle.
        assert_eq!(trims(&[(10_000, 10_000), (10_000, 1_000), (1_000, 0), (0, 0), (0, 0)]), vec![1, 2]);
    }

    #[test]
    fn a_burst_between_two_ticks_is_trimmed() {
        assert_eq!(trims(&[(0, 0), (10_000, 0), (0, 0)]), vec![1]);
    }

    #[test]
    fn small_or_steady_load_is_never_trimmed() {
        assert!(trims(&[(500, 500), (500, 0), (0, 0)]).is_empty());
        assert!(trims(&[(5_000, 5_000), (5_000, 4_000), (4_000, 4_500), (4_500, 3_000)]).is_empty());
    }
}
