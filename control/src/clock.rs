//! The one place the control plane reads the clock. Truncated to microseconds: the precision
//! both databases keep, so a timestamp read back equals the one written (audit hashes rely on
//! it).

use time::OffsetDateTime;

pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000).expect("a truncated nanosecond is valid")
}
