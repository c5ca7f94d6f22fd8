//! A process's CPU time and memory from /proc, and latency percentiles.

/// User + system CPU time of process `pid` in seconds, from `/proc/PID/stat` (fields 14 and
/// 15). It includes threads that have exited (tokio's blocking pool, where Argon2 runs), which
/// the per-thread schedstat sum of `crate::kernel::cpu_seconds` would miss.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / crate::kernel::ticks_per_sec())
}

/// CPU time of a server and of this generator over one measured interval.
pub struct CpuMeter {
    server: Option<u32>,
    server_start: f64,
    own_start: f64,
    started: std::time::Instant,
}

/// What a `CpuMeter` saw: wall time, and each process's CPU seconds in it.
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    pub wall: f64,
    pub server: Option<f64>,
    pub generator: f64,
}

impl CpuMeter {
    pub fn start(server: Option<u32>) -> CpuMeter {
        CpuMeter {
            server,
            server_start: server.and_then(cpu_seconds).unwrap_or(0.0),
            own_start: cpu_seconds(std::process::id()).unwrap_or(0.0),
            started: std::time::Instant::now(),
        }
    }

    pub fn stop(&self) -> CpuUse {
        CpuUse {
            wall: self.started.elapsed().as_secs_f64(),
            server: self.server.and_then(cpu_seconds).map(|s| s - self.server_start),
            generator: cpu_seconds(std::process::id()).unwrap_or(0.0) - self.own_start,
        }
    }
}

impl CpuUse {
    /// `server_cpu_us_per_op=… server_cores=… generator_cores=… generator_full=…`: the generator
    /// counts as saturated when it used 90 % of a core or more (it runs on one, `--threads 1`, or
    /// reports the cores it used).
    pub fn fields(&self, ops: u64, generator_threads: usize) -> String {
        let server = match self.server {
            Some(s) => format!(
                "server_cpu_us_per_op={:.1} server_cores={:.2}",
                if ops > 0 { s * 1e6 / ops as f64 } else { 0.0 },
                s / self.wall
            ),
            None => "server_cpu_us_per_op=? server_cores=?".into(),
        };
        let gen_cores = self.generator / self.wall;
        format!(
            "{server} generator_cores={gen_cores:.2} generator_full={}",
            gen_cores >= 0.9 * generator_threads as f64
        )
    }
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    crate::kernel::rss_kib(pid)
}

/// The `q` quantile (0..=1) of `samples` (sorted here), in the samples' unit; 0 when empty.
pub fn quantile(samples: &mut [f64], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[i.min(samples.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_the_rank() {
        let mut s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&mut s, 0.5), 51.0);
        assert_eq!(quantile(&mut s, 0.99), 99.0);
        assert_eq!(quantile(&mut s, 1.0), 100.0);
        assert_eq!(quantile(&mut [], 0.99), 0.0);
    }

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let me = std::process::id();
        assert!(cpu_seconds(me).is_some());
        assert!(rss_kib(me).unwrap() > 0);
    }
}
