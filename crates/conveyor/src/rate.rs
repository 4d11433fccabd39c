//! Rate limits (GCRA, via `governor`) driven by tokio's clock.
//!
//! The limiter reads time from tokio's clock rather than the OS clock, so a test
//! with a paused runtime clock sees exact, deterministic rate limiting. The
//! dispatcher asks [`RateLimiter::try_take`] before starting a task; when it is
//! refused it learns when the next permit is due and arms a timer, so a waiting
//! task holds no worker and no thread.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::Quota;
use tokio::time::Instant;

use conveyor_core::Error;

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
        self.quota().map(|_| ())
    }

    fn quota(&self) -> Result<Quota, Error> {
        if self.count == 0 || self.per.is_zero() {
            return Err(Error::InvalidConfig(format!(
                "a rate needs a positive count and period, got {}/{:?}",
                self.count, self.per
            )));
        }
        let burst = NonZeroU32::new(self.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let interval = self.interval().max(Duration::from_nanos(1));
        Quota::with_period(interval)
            .map(|q| q.allow_burst(burst))
            .ok_or_else(|| Error::InvalidConfig("rate period too small".into()))
    }
}

/// A clock for `governor` that reads tokio's (pausable) clock.
#[derive(Debug, Clone)]
struct TokioClock {
    origin: Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.origin)
    }
}

type Inner = governor::RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// A GCRA limiter on tokio's clock.
pub(crate) struct RateLimiter {
    inner: Inner,
    origin: Instant,
}

impl RateLimiter {
    /// A limiter for `rate`.
    pub(crate) fn new(rate: Rate) -> Result<Self, Error> {
        let origin = Instant::now();
        let inner = governor::RateLimiter::direct_with_clock(rate.quota()?, TokioClock { origin });
        Ok(Self { inner, origin })
    }

    /// Takes a permit now, or says when the next one is due.
    pub(crate) fn try_take(&self) -> Result<(), Instant> {
        match self.inner.check() {
            Ok(()) => Ok(()),
            Err(not_until) => Err(self.origin + not_until.earliest_possible()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bursts_then_spaces_permits() {
        let limiter = RateLimiter::new(Rate::per_second(10).burst(3)).expect("valid rate");
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

    #[test]
    fn zero_rate_is_a_config_error() {
        assert!(RateLimiter::new(Rate::per_second(0)).is_err());
    }
}
