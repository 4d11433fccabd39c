//! Rates: how fast tasks may start, one type for every limit in conveyor
//! (a handler's rate in the engine, a pool's rate, a global rate a backend
//! enforces for every worker), and GCRA, the one algorithm that paces them.
//!
//! GCRA (the leaky bucket as a meter): starts are spaced `per / count` apart
//! and up to `burst` unused starts accumulate. Its whole state is one number,
//! the theoretical arrival time (TAT) of the next start. [`Gcra::admit`] is
//! the arithmetic, written once: the engine runs it on tokio's clock in
//! nanoseconds, backends written in Rust on a stored TAT in microseconds (the
//! Redis scripts repeat it in Lua, since it runs inside Redis).

use std::time::Duration;

use crate::Error;

/// A rate: `count` tasks per `per`, with bursts of up to `burst` at once.
///
/// Leaky-bucket (GCRA) semantics: permits are spaced `per / count` apart; up to
/// `burst` unused permits accumulate and may be spent at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    per: Duration,
    burst: u32,
}

impl Rate {
    /// `count` tasks per second, burst 1.
    pub fn per_second(count: u32) -> Self {
        Self::new(count, Duration::from_secs(1))
    }

    /// `count` tasks per minute, burst 1.
    pub fn per_minute(count: u32) -> Self {
        Self::new(count, Duration::from_secs(60))
    }

    /// `count` tasks per hour, burst 1.
    pub fn per_hour(count: u32) -> Self {
        Self::new(count, Duration::from_secs(3600))
    }

    /// `count` tasks per `per`, burst 1.
    pub fn new(count: u32, per: Duration) -> Self {
        Self {
            count,
            per,
            burst: 1,
        }
    }

    /// Allows bursts of up to `burst` tasks (at least 1).
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst.max(1);
        self
    }

    /// Tasks per `per`.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.per
    }

    /// The burst size.
    pub fn burst_size(&self) -> u32 {
        self.burst
    }

    /// The time between two permits.
    pub fn interval(&self) -> Duration {
        self.per / self.count.max(1)
    }

    /// Checks that the rate can be enforced (positive count and period).
    pub fn validate(&self) -> Result<(), Error> {
        self.check()
    }

    /// The rate's GCRA, its times counted in `tick`s (a nanosecond for the
    /// engine's clock, a microsecond for a stored state). The interval is at
    /// least one tick.
    pub fn gcra(&self, tick: Duration) -> Gcra {
        let ticks =
            |d: Duration| i64::try_from(d.as_nanos() / tick.as_nanos().max(1)).unwrap_or(i64::MAX);
        let interval = (ticks(self.per) / i64::from(self.count.max(1))).max(1);
        Gcra {
            interval,
            tolerance: interval.saturating_mul(i64::from(self.burst.max(1) - 1)),
        }
    }

    fn check(&self) -> Result<(), Error> {
        if self.count == 0 || self.per.is_zero() {
            return Err(Error::InvalidConfig(format!(
                "a rate needs a positive count and period, got {}/{:?}",
                self.count, self.per
            )));
        }
        Ok(())
    }
}

/// A rate's GCRA in whole ticks of some clock (see [`Rate::gcra`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Ticks between two starts.
    pub interval: i64,
    /// How far ahead of schedule a start may be: `interval * (burst - 1)`.
    pub tolerance: i64,
}

impl Gcra {
    /// Admits one start at `now` given the theoretical arrival time `tat`
    /// (`None` before the first start): `Ok` with the next TAT, or `Err` with
    /// the earliest time a start is allowed. A TAT left behind is anchored at
    /// `now - catch_up`, so up to `catch_up` of a caller's lateness (a timer
    /// firing late) is made up for rather than lost; `0` anchors at `now`.
    pub fn admit(&self, tat: Option<i64>, now: i64, catch_up: i64) -> Result<i64, i64> {
        let tat = tat.unwrap_or(now);
        let earliest = tat.saturating_sub(self.tolerance);
        if now < earliest {
            return Err(earliest);
        }
        Ok(tat
            .max(now.saturating_sub(catch_up))
            .saturating_add(self.interval))
    }
}

/// Parses `COUNT/UNIT` with unit `s`, `m` or `h` (also `sec`, `min`, `hour`, or
/// a duration such as `500ms`), e.g. `20/s`, `100/m`, `10/500ms`.
impl std::str::FromStr for Rate {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            Error::InvalidConfig(format!(
                "rate {s:?}: expected COUNT/UNIT such as 20/s, 100/m or 5/h"
            ))
        };
        let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(bad());
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => {
                let ms = other.strip_suffix("ms").and_then(|n| n.parse::<u64>().ok());
                match ms {
                    Some(ms) if ms > 0 => Duration::from_millis(ms),
                    _ => return Err(bad()),
                }
            }
        };
        Ok(Rate::new(count, per))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_spaces_starts() {
        let g = Rate::per_second(10).burst(3).gcra(Duration::from_millis(1));
        assert_eq!((g.interval, g.tolerance), (100, 200));
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(g.admit(tat, 0, 0).expect("within the burst"));
        }
        assert_eq!(g.admit(tat, 0, 0), Err(100));
        assert!(g.admit(tat, 100, 0).is_ok());
    }

    #[test]
    fn catch_up_credits_lateness() {
        let g = Rate::per_second(1000).gcra(Duration::from_micros(1));
        // Due at 1000, taken at 1500: anchored at the due time with catch-up...
        assert_eq!(g.admit(Some(1000), 1500, 5000), Ok(2000));
        // ...and at `now` without.
        assert_eq!(g.admit(Some(1000), 1500, 0), Ok(2500));
    }

    #[test]
    fn parses_units() {
        let r: Rate = "20/s".parse().expect("20/s");
        assert_eq!((r.count(), r.period()), (20, Duration::from_secs(1)));
        let r: Rate = "10/500ms".parse().expect("10/500ms");
        assert_eq!(r.period(), Duration::from_millis(500));
        assert!("0/s".parse::<Rate>().is_err());
        assert!("5/fortnight".parse::<Rate>().is_err());
    }
}
