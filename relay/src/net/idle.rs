//! The host's idle path, looked at once at start. Between packets a worker's core is often idle,
//! and a packet that finds it idle waits for it to wake up. On a KVM guest whose idle vCPUs halt
//! at once (cpuidle-haltpoll with `guest_halt_poll_ns` 0, which some hosts set on their guests'
//! kernel command line), that wake-up goes through the hypervisor and is most of a relayed
//! packet's latency at light load (docs/performance.md, optimisation 8, has the numbers). The
//! relay cannot change a host setting itself (it runs unprivileged); it says what it found and
//! what changes it.

/// Where the haltpoll governor's poll window is, on a guest that has one.
pub const GUEST_HALT_POLL_NS: &str = "/sys/module/haltpoll/parameters/guest_halt_poll_ns";

/// A warning for the operator when idle vCPUs halt at once and the workers do not spin either.
/// `guest_halt_poll_ns`: the file's content, `None` where it does not exist (bare metal, other
/// hypervisors, other idle governors).
pub fn slow_wake_up_warning(guest_halt_poll_ns: Option<&str>, busy_poll_us: u32) -> Option<String> {
    let poll_ns = guest_halt_poll_ns?.trim();
    if poll_ns != "0" || busy_poll_us > 0 {
        return None;
    }
    Some(format!(
        "idle vCPUs of this KVM guest halt at once ({GUEST_HALT_POLL_NS} is 0): a datagram that finds a worker \
         idle waits for the hypervisor to wake its vCPU, tens of microseconds. Write 200000 there (the kernel's \
         default; the appliance's teletip_relay_guest_halt_poll_ns, or systemd/teletip-relay-idle.conf in \
         /etc/tmpfiles.d), or let workers spin with busy-poll-us"
    ))
}

/// Reads the poll window where there is one.
pub fn read_guest_halt_poll_ns() -> Option<String> {
    std::fs::read_to_string(GUEST_HALT_POLL_NS).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_only_when_vcpus_halt_at_once_and_workers_do_not_spin() {
        let warning = slow_wake_up_warning(Some("0\n"), 0).expect("halting at once is worth a warning");
        assert!(warning.contains("guest_halt_poll_ns is 0") && warning.contains("200000"), "{warning}");
        assert_eq!(slow_wake_up_warning(Some("200000\n"), 0), None, "the kernel's default polls");
        assert_eq!(slow_wake_up_warning(Some("0\n"), 50), None, "spinning workers do not sleep");
        assert_eq!(slow_wake_up_warning(None, 0), None, "no haltpoll governor: nothing to say");
    }
}
