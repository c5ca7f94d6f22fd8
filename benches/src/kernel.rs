//! What the kernel says: UDP drop counters (global and per socket) and a process's memory and
//! CPU time. Losses are pinned on the side whose socket dropped them.

use std::collections::HashMap;

/// The UDP counters that matter for loss: the `Udp:` lines of /proc/net/snmp plus the `Udp6…`
/// lines of /proc/net/snmp6, since IPv6 datagrams are counted only in the latter.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UdpCounters {
    pub in_datagrams: u64,
    pub in_errors: u64,
    pub rcvbuf_errors: u64,
    pub sndbuf_errors: u64,
}

impl UdpCounters {
    pub fn read() -> UdpCounters {
        let v4 = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
        let v6 = std::fs::read_to_string("/proc/net/snmp6").unwrap_or_default();
        UdpCounters::from_snmp(&v4).plus(&UdpCounters::from_snmp6(&v6))
    }

    /// The `Udp:` header line and value line of /proc/net/snmp.
    fn from_snmp(text: &str) -> UdpCounters {
        let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
        let (Some(names), Some(values)) = (lines.next(), lines.next()) else { return UdpCounters::default() };
        UdpCounters::from_pairs(names.split_whitespace().zip(values.split_whitespace()), "")
    }

    /// The `Udp6<Name> <value>` lines of /proc/net/snmp6.
    fn from_snmp6(text: &str) -> UdpCounters {
        let pairs = text.lines().filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?, f.next()?))
        });
        UdpCounters::from_pairs(pairs, "Udp6")
    }

    fn from_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>, prefix: &str) -> UdpCounters {
        let map: HashMap<&str, u64> =
            pairs.filter_map(|(n, v)| Some((n.strip_prefix(prefix)?, v.parse().ok()?))).collect();
        let get = |k: &str| map.get(k).copied().unwrap_or(0);
        UdpCounters {
            in_datagrams: get("InDatagrams"),
            in_errors: get("InErrors"),
            rcvbuf_errors: get("RcvbufErrors"),
            sndbuf_errors: get("SndbufErrors"),
        }
    }

    fn plus(&self, other: &UdpCounters) -> UdpCounters {
        UdpCounters {
            in_datagrams: self.in_datagrams + other.in_datagrams,
            in_errors: self.in_errors + other.in_errors,
            rcvbuf_errors: self.rcvbuf_errors + other.rcvbuf_errors,
            sndbuf_errors: self.sndbuf_errors + other.sndbuf_errors,
        }
    }

    pub fn since(&self, before: &UdpCounters) -> UdpCounters {
        UdpCounters {
            in_datagrams: self.in_datagrams.saturating_sub(before.in_datagrams),
            in_errors: self.in_errors.saturating_sub(before.in_errors),
            rcvbuf_errors: self.rcvbuf_errors.saturating_sub(before.rcvbuf_errors),
            sndbuf_errors: self.sndbuf_errors.saturating_sub(before.sndbuf_errors),
        }
    }
}

/// Per-socket drop counters from /proc/net/udp and udp6, keyed by (local port, inode).
pub fn socket_drops() -> HashMap<(u16, u64), u64> {
    let mut out = HashMap::new();
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 13 {
                continue;
            }
            let port = f[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            let inode = f[9].parse::<u64>().ok();
            let drops = f[12].parse::<u64>().ok();
            if let (Some(port), Some(inode), Some(drops)) = (port, inode, drops) {
                out.insert((port, inode), drops);
            }
        }
    }
    out
}

/// Drops between two snapshots, split by whether the socket's port is one of `ours`.
pub fn drops_split(
    before: &HashMap<(u16, u64), u64>,
    after: &HashMap<(u16, u64), u64>,
    ours: &dyn Fn(u16) -> bool,
) -> (u64, u64) {
    let (mut mine, mut theirs) = (0, 0);
    for (key, &d) in after {
        let delta = d.saturating_sub(before.get(key).copied().unwrap_or(0));
        if ours(key.0) {
            mine += delta;
        } else {
            theirs += delta;
        }
    }
    (mine, theirs)
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time of process `pid` so far, in seconds, all its threads: the sum of each thread's run
/// time in `/proc/PID/task/*/schedstat` (nanoseconds, kept by the scheduler), or, where that is
/// missing, user+system clock ticks from `/proc/PID/stat`. The ticks are samples at USER_HZ
/// (100 per second): over a 4-s run at 60 % of a core, 240 of them, a few per cent of noise,
/// which is more than the differences the fixed-rate CPU comparison looks for.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    if let Some(ns) = thread_run_ns(pid) {
        return Some(ns as f64 / 1e9);
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / ticks_per_sec())
}

fn thread_run_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let text = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Every CPU's line of `/proc/stat` (`cpuN user nice system idle iowait irq softirq steal`), in
/// seconds. Global, not per network namespace: the softirq work of a veth pair between two
/// namespaces is in it whichever side the reader is on. On a kernel without
/// `CONFIG_IRQ_TIME_ACCOUNTING` these are tick samples (HZ per second per CPU): a tick that
/// lands in a softirq counts as softirq whatever task it interrupted, and that task's own
/// run time includes it too (docs/performance.md, "The XDP offload").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuStat {
    /// Per CPU, in /proc/stat's order.
    pub cpus: Vec<CpuTimes>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    pub user: f64,
    pub nice: f64,
    pub system: f64,
    pub idle: f64,
    pub iowait: f64,
    pub irq: f64,
    pub softirq: f64,
    pub steal: f64,
}

impl CpuTimes {
    /// Time not idle: user + nice + system + irq + softirq + steal.
    pub fn busy(&self) -> f64 {
        self.user + self.nice + self.system + self.irq + self.softirq + self.steal
    }

    fn minus(&self, b: &CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user - b.user,
            nice: self.nice - b.nice,
            system: self.system - b.system,
            idle: self.idle - b.idle,
            iowait: self.iowait - b.iowait,
            irq: self.irq - b.irq,
            softirq: self.softirq - b.softirq,
            steal: self.steal - b.steal,
        }
    }
}

impl CpuStat {
    pub fn read() -> CpuStat {
        CpuStat::parse(&std::fs::read_to_string("/proc/stat").unwrap_or_default(), ticks_per_sec())
    }

    fn parse(text: &str, hz: f64) -> CpuStat {
        let cpus = text
            .lines()
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .map(|l| {
                let v: Vec<f64> = l.split_whitespace().skip(1).map(|f| f.parse::<f64>().unwrap_or(0.0) / hz).collect();
                let at = |i: usize| v.get(i).copied().unwrap_or(0.0);
                CpuTimes {
                    user: at(0),
                    nice: at(1),
                    system: at(2),
                    idle: at(3),
                    iowait: at(4),
                    irq: at(5),
                    softirq: at(6),
                    steal: at(7),
                }
            })
            .collect();
        CpuStat { cpus }
    }

    pub fn since(&self, before: &CpuStat) -> CpuStat {
        CpuStat { cpus: self.cpus.iter().zip(&before.cpus).map(|(a, b)| a.minus(b)).collect() }
    }
}

/// The softirq time map of `benches/softirq` (pinned by its loader): per CPU, the nanoseconds
/// spent in NET_RX handlers and in all softirq handlers, measured at the handlers' entry and
/// exit, where /proc/stat's softirq column is only sampled at the tick.
pub struct SoftirqMap {
    fd: libc::c_int,
    cpus: usize,
}

/// Per CPU: (NET_RX ns, all softirq ns).
pub type SoftirqTimes = Vec<(u64, u64)>;

impl SoftirqMap {
    pub fn open(path: &std::path::Path) -> std::io::Result<SoftirqMap> {
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
        // union bpf_attr for BPF_OBJ_GET: pathname, bpf_fd, file_flags (zeroed past them).
        let mut attr = [0u64; 16];
        attr[0] = c_path.as_ptr() as u64;
        // SAFETY: the bpf syscall reads `attr` (a zeroed, large enough union) and the path it
        // points at, both alive for the call.
        let fd = unsafe {
            libc::syscall(libc::SYS_bpf, 7 /* BPF_OBJ_GET */, attr.as_mut_ptr(), std::mem::size_of_val(&attr))
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(SoftirqMap { fd: fd as libc::c_int, cpus: possible_cpus() })
    }

    /// Each CPU's (NET_RX ns, all softirq ns) so far.
    pub fn read(&self) -> Option<SoftirqTimes> {
        let mut columns = Vec::with_capacity(2);
        for key in [1u32, 2] {
            // A per-CPU array's value: one u64 per possible CPU.
            let mut value = vec![0u64; self.cpus];
            // union bpf_attr for BPF_MAP_LOOKUP_ELEM: map_fd (u32, padded), key, value, flags.
            let mut attr = [0u64; 16];
            attr[0] = self.fd as u64;
            attr[1] = &key as *const u32 as u64;
            attr[2] = value.as_mut_ptr() as u64;
            // SAFETY: the kernel writes `cpus` u64s into `value` and reads the 4-byte key.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    1, /* BPF_MAP_LOOKUP_ELEM */
                    attr.as_mut_ptr(),
                    std::mem::size_of_val(&attr),
                )
            };
            if rc < 0 {
                return None;
            }
            columns.push(value);
        }
        Some(columns[0].iter().zip(&columns[1]).map(|(&rx, &all)| (rx, all)).collect())
    }
}

impl Drop for SoftirqMap {
    fn drop(&mut self) {
        // SAFETY: closing the descriptor BPF_OBJ_GET gave us.
        unsafe { libc::close(self.fd) };
    }
}

/// How many CPUs the kernel may ever bring up (`/sys/devices/system/cpu/possible`, "0-N"):
/// the length of a per-CPU map's value.
fn possible_cpus() -> usize {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    text.trim()
        .split(',')
        .map(|range| match range.split_once('-') {
            Some((a, b)) => b.parse::<usize>().unwrap_or(0) - a.parse::<usize>().unwrap_or(0) + 1,
            None => 1,
        })
        .sum::<usize>()
        .max(1)
}

/// Clock ticks per second (USER_HZ).
pub fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    use super::{CpuStat, UdpCounters};

    #[test]
    fn cpu_stat_reads_each_cpu_and_subtracts() {
        let before = CpuStat::parse(
            "cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 100 0 50 800 0 0 20 0 0 0\ncpu1 10 0 5 900 0 1 2 0 0 0\nintr 5\n",
            1.0,
        );
        let after = CpuStat::parse(
            "cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 200 0 70 850 0 0 60 0 0 0\ncpu1 10 0 5 1100 0 1 2 0 0 0\n",
            1.0,
        );
        let d = after.since(&before);
        assert_eq!(d.cpus.len(), 2, "the aggregate line is not a CPU");
        assert_eq!((d.cpus[0].softirq, d.cpus[0].busy(), d.cpus[1].busy()), (40.0, 160.0, 0.0));
    }

    #[test]
    fn udp_counters_sum_both_families() {
        let snmp = "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                    Udp: 100 1 7 90 5 2\n";
        let snmp6 = "Udp6InDatagrams                 \t40\nUdp6NoPorts \t3\nUdp6InErrors \t4\n\
                     Udp6RcvbufErrors \t4\nUdp6SndbufErrors \t1\nUdpLite6InErrors \t9\n";
        let sum = UdpCounters::from_snmp(snmp).plus(&UdpCounters::from_snmp6(snmp6));
        assert_eq!(sum, UdpCounters { in_datagrams: 140, in_errors: 11, rcvbuf_errors: 9, sndbuf_errors: 3 });
    }
}
