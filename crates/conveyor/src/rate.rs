//! Rate limits: GCRA (the leaky-bucket algorithm) paced by the dispatcher on
//! tokio's clock.
//!
//! The dispatcher asks [`RateLimiter::try_take`] before starting a task; when it
//! is refused it learns when the next permit is due and arms a timer, so a
//! waiting task holds no worker and no thread.
//!
//! Why not `governor`: we measured it here. Its GCRA anchors the schedule at the
//! moment a permit is taken, so with burst 1 every permit taken late (a tokio
//! timer fires up to a millisecond or two after its deadline) pushes all later
//! permits back: at 1,000/s the engine achieved 455/s. This limiter anchors the
//! schedule at the *theoretical* arrival time instead and credits lateness of up
//! to [`CATCH_UP`], so the long-run rate is exact while a short window never sees
//! more than `burst` plus the permits of [`CATCH_UP`]. Reading tokio's clock also
//! makes tests with a paused clock exact.

use std::time::Duration;

use tokio::time::Instant;

use conveyor_core::Error;

/// How much lateness of the dispatcher's timer the limiter makes up for.
pub const CATCH_UP: Duration = Duration::from_millis(5);

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

    /// The same rate as a global handler limit
    /// ([`HandlerLimits::rate`](conveyor_core::HandlerLimits::rate)), enforced by
    /// a backend for every worker.
    pub fn to_global(&self) -> conveyor_core::RateLimit {
        conveyor_core::RateLimit::new(self.count, self.per).burst(self.burst)
    }

    /// The time between two permits.
    pub fn interval(&self) -> Duration {
        self.per / self.count.max(1)
    }

    /// Checks that the rate can be enforced (positive count and period).
    pub fn validate(&self) -> Result<(), Error> {
        self.check()
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

/// A GCRA limiter on tokio's clock.
pub(crate) struct RateLimiter {
    /// Time between two permits.
    interval: Duration,
    /// How far ahead of schedule a permit may be taken: `interval * (burst - 1)`.
    tolerance: Duration,
    /// The theoretical arrival time of the next permit.
    tat: Option<Instant>,
}

impl RateLimiter {
    /// A limiter for `rate`.
    pub(crate) fn new(rate: Rate) -> Result<Self, Error> {
        rate.check()?;
        let interval = (rate.per / rate.count).max(Duration::from_nanos(1));
        Ok(Self {
            interval,
            tolerance: interval.saturating_mul(rate.burst.max(1) - 1),
            tat: None,
        })
    }

    /// Takes a permit now, or says when the next one is due.
    pub(crate) fn try_take(&mut self) -> Result<(), Instant> {
        let now = Instant::now();
        let tat = self.tat.unwrap_or(now);
        if let Some(earliest) = tat.checked_sub(self.tolerance) {
            if now < earliest {
                return Err(earliest);
            }
        }
        // Anchor at the theoretical time, crediting up to CATCH_UP of lateness.
        let floor = now.checked_sub(CATCH_UP).unwrap_or(now);
        self.tat = Some(tat.max(floor) + self.interval);
        Ok(())
    }
}

/// Parses `COUNT/UNIT` with unit `s`, `m` or `h` (also `sec`, `min`, `hour`, or
/// a duration such as `500ms`), e.g. `20/s`, `100/m`, `10/500ms`.
impl std::str::FromStr for Rate {
    type Err = conveyor_core::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            conveyor_core::Error::InvalidConfig(format!(
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

    #[tokio::test(start_paused = true)]
    async fn bursts_then_spaces_permits() {
        let mut limiter = RateLimiter::new(Rate::per_second(10).burst(3)).expect("valid rate");
        for _ in 0..3 {
            assert!(limiter.try_take().is_ok());
        }
        let due = limiter.try_take().expect_err("burst spent");
        let wait = due - Instant::now();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        tokio::time::advance(wait).await;
        assert!(limiter.try_take().is_ok());
        assert!(limiter.try_take().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn late_takers_catch_up_so_the_long_run_rate_is_exact() {
        let mut limiter = RateLimiter::new(Rate::per_second(1000)).expect("valid rate");
        let start = Instant::now();
        let mut taken = 0u32;
        // Poll like a timer that always fires 1.5 ms after the permit is due.
        while Instant::now() - start < Duration::from_secs(1) {
            match limiter.try_take() {
                Ok(()) => taken += 1,
                Err(due) => {
                    let late = due + Duration::from_micros(1500);
                    tokio::time::advance(late - Instant::now()).await;
                }
            }
        }
        assert!((999..=1001).contains(&taken), "took {taken} in one second");
    }

    #[tokio::test(start_paused = true)]
    async fn after_idling_only_burst_plus_catch_up_go_at_once() {
        let mut limiter = RateLimiter::new(Rate::per_second(1000).burst(10)).expect("valid rate");
        let mut fresh = 0;
        while limiter.try_take().is_ok() {
            fresh += 1;
        }
        assert_eq!(fresh, 10, "a new limiter allows exactly the burst");
        tokio::time::advance(Duration::from_secs(5)).await;
        let mut at_once = 0;
        while limiter.try_take().is_ok() {
            at_once += 1;
        }
        assert_eq!(at_once, 10 + 5, "burst 10 plus 5 ms of catch-up at 1/ms");
    }

    #[test]
    fn zero_rate_is_a_config_error() {
        assert!(RateLimiter::new(Rate::per_second(0)).is_err());
    }
}
