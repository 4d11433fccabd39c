//! Wall-clock time for durable queues, injectable so tests can move it by hand.
//!
//! Durable backends store times (run-at, lease expiry, finish time) as
//! [`Timestamp`]s — milliseconds since the Unix epoch — because they outlive the
//! process and are shared between processes. A backend reads "now" from a
//! [`Clock`]: [`SystemClock`] in production, [`ManualClock`] in tests, so delays,
//! lease expiry and retention are tested without sleeping.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in wall-clock time: milliseconds since the Unix epoch.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current system time.
    pub fn now() -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    /// Milliseconds since the Unix epoch.
    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// The time an RFC 3339 text names, with its UTC offset
    /// (`2026-11-27T22:30:00Z`, `2026-11-27T23:30:00.250+01:00`, a space for
    /// the `T`), to the millisecond (finer digits are cut). A time without
    /// an offset is refused, as is anything else, with a message that shows
    /// the form: a local time would mean a different instant on each machine.
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, crate::Error> {
        let at: jiff::Timestamp = text.trim().parse().map_err(|e| {
            crate::Error::InvalidConfig(format!(
                "{text:?} is not an RFC 3339 time with its UTC offset \
                 (e.g. 2026-11-27T22:30:00Z or 2026-11-27T23:30:00+01:00): {e}"
            ))
        })?;
        Ok(Timestamp(at.as_millisecond()))
    }

    /// This time as a [`SystemTime`] (`None` before the epoch).
    pub fn to_system_time(self) -> Option<SystemTime> {
        let ms = u64::try_from(self.0).ok()?;
        UNIX_EPOCH.checked_add(Duration::from_millis(ms))
    }

    /// This time plus `d` (saturating).
    pub fn plus(self, d: Duration) -> Timestamp {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// This time minus `d` (saturating).
    pub fn minus(self, d: Duration) -> Timestamp {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_sub(ms))
    }

    /// How long after `earlier` this is (zero if it is not later).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// A source of "now" for a backend.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told to (for tests).
#[derive(Debug)]
pub struct ManualClock {
    ms: AtomicI64,
}

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            ms: AtomicI64::new(start.0),
        }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `t`.
    pub fn set(&self, t: Timestamp) {
        self.ms.store(t.0, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new(Timestamp(1_700_000_000_000))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.ms.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::Timestamp;

    #[test]
    fn rfc3339_times_with_their_offset() {
        let utc = Timestamp::parse_rfc3339("2026-11-27T22:30:00Z").unwrap();
        assert_eq!(utc.as_millis(), 1_795_818_600_000);
        let offset = Timestamp::parse_rfc3339("2026-11-27T23:30:00.250+01:00").unwrap();
        assert_eq!(offset.as_millis(), 1_795_818_600_250);
        let spaced = Timestamp::parse_rfc3339(" 2026-11-27 22:30:00.9999Z ").unwrap();
        assert_eq!(spaced.as_millis(), 1_795_818_600_999);
        let before_epoch = Timestamp::parse_rfc3339("1969-12-31T23:59:59Z").unwrap();
        assert_eq!(before_epoch.as_millis(), -1_000);
    }

    #[test]
    fn other_texts_are_refused_showing_the_form() {
        for bad in [
            "",
            "tomorrow",
            "2026-11-27T22:30:00",
            "2026-11-27",
            "2026-13-01T00:00:00Z",
        ] {
            let e = Timestamp::parse_rfc3339(bad).unwrap_err().to_string();
            assert!(e.contains("2026-11-27T22:30:00Z"), "{bad:?}: {e}");
        }
    }
}
