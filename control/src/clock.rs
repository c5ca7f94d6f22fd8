//! The control plane's clock, injected: every time-dependent rule takes `now` from the
//! [`Clock`] in the application state (the system clock in production), so tests can set the
//! time instead of waiting for it or backdating rows.
//!
//! Times are truncated to microseconds: the precision both databases keep, so a timestamp
//! read back equals the one written (audit hashes rely on it).
//!
//! # The test clock
//!
//! The integration tests run the real binary, so a settable clock needs a way into that
//! process. It is the environment variable [`TEST_CLOCK_ENV`]: the path of a file holding a
//! signed number of seconds that is added to the system time at every read (a missing or
//! unreadable file counts as 0). An offset rather than a frozen instant, so that timers,
//! token lifetimes and the order of events still advance as in production. It is honoured by
//! debug builds only and logged as a warning at start; a release build refuses to start when
//! it is set, so a production service cannot be made to live at another time by its
//! environment. No route serves it: nothing reachable over the network moves the clock.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use time::{Duration, OffsetDateTime};

/// The environment variable naming the test clock's offset file (debug builds only).
pub const TEST_CLOCK_ENV: &str = "TELETIP_CONTROL_TEST_CLOCK";

#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("{TEST_CLOCK_ENV} is set, but a release build keeps the system clock: the test clock is for debug builds")]
    ReleaseBuild,
}

#[derive(Clone, Debug, Default)]
pub struct Clock(Source);

#[derive(Clone, Debug, Default)]
enum Source {
    #[default]
    System,
    /// Stands still at the instant last set (unit tests).
    Fixed(Arc<Mutex<OffsetDateTime>>),
    /// The system time plus the offset in seconds read from the file (integration tests).
    OffsetFile(Arc<PathBuf>),
}

impl Clock {
    pub fn system() -> Clock {
        Clock(Source::System)
    }

    /// A clock that stands at `at` until [`Clock::set`] or [`Clock::advance`] moves it.
    pub fn fixed(at: OffsetDateTime) -> Clock {
        Clock(Source::Fixed(Arc::new(Mutex::new(truncate(at)))))
    }

    /// The system clock, or the test clock when [`TEST_CLOCK_ENV`] names an offset file.
    pub fn from_env() -> Result<Clock, ClockError> {
        match std::env::var_os(TEST_CLOCK_ENV) {
            None => Ok(Clock::system()),
            Some(_) if !cfg!(debug_assertions) => Err(ClockError::ReleaseBuild),
            Some(path) => {
                let path = PathBuf::from(path);
                tracing::warn!(file = %path.display(), "TEST CLOCK: the time is the system time plus the offset in this file ({TEST_CLOCK_ENV}); never in production");
                Ok(Clock(Source::OffsetFile(Arc::new(path))))
            }
        }
    }

    pub fn now(&self) -> OffsetDateTime {
        match &self.0 {
            Source::System => now(),
            Source::Fixed(at) => *at.lock().expect("the clock's lock is never poisoned"),
            Source::OffsetFile(path) => truncate(OffsetDateTime::now_utc() + offset(path)),
        }
    }

    /// Moves a fixed clock to `at`; the other clocks ignore it.
    pub fn set(&self, at: OffsetDateTime) {
        if let Source::Fixed(t) = &self.0 {
            *t.lock().expect("the clock's lock is never poisoned") = truncate(at);
        }
    }

    /// Moves a fixed clock on by `by`; the other clocks ignore it.
    pub fn advance(&self, by: Duration) {
        self.set(self.now() + by);
    }
}

fn offset(path: &Path) -> Duration {
    let seconds = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse::<i64>().ok());
    Duration::seconds(seconds.unwrap_or(0))
}

fn truncate(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000).expect("a truncated nanosecond is valid")
}

/// The system time, for the few reads with no application state at hand (the audit event
/// builder, the store's own stamps, the command line); rules use [`Clock::now`].
pub fn now() -> OffsetDateTime {
    truncate(OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_clock_stands_still_until_moved() {
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let clock = Clock::fixed(at);
        assert_eq!(clock.now(), at);
        clock.advance(Duration::minutes(90));
        assert_eq!(clock.now(), at + Duration::minutes(90));
    }

    #[test]
    fn the_offset_file_moves_the_system_time() {
        let path = std::env::temp_dir().join(format!("teletip-clock-{}", std::process::id()));
        let clock = Clock(Source::OffsetFile(Arc::new(path.clone())));
        assert!((clock.now() - now()).abs() < Duration::seconds(5), "no file: no offset");
        std::fs::write(&path, "7200\n").unwrap();
        let ahead = clock.now() - now();
        std::fs::remove_file(&path).unwrap();
        assert!((ahead - Duration::hours(2)).abs() < Duration::seconds(5), "{ahead}");
    }

    #[test]
    fn times_keep_microseconds_only() {
        let clock = Clock::fixed(OffsetDateTime::from_unix_timestamp_nanos(1_800_000_000_123_456_789).unwrap());
        assert_eq!(clock.now().nanosecond() % 1000, 0);
    }
}
