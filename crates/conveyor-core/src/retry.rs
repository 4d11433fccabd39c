//! Retry policy: how many attempts, and how long to wait between them.

use std::time::Duration;

/// Exponential backoff with jitter, per handler.
///
/// The wait before attempt `n + 1` (after the `n`-th failure) is drawn uniformly
/// from `[d / 2, d]` where `d = min(cap, base * 2^(n-1))` ("equal jitter": never
/// less than half the exponential step, so retries stay spread out, and never
/// synchronised across tasks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, including the first (1 = never retry).
    pub max_attempts: u32,
    /// The first backoff step.
    pub base: Duration,
    /// The largest backoff step.
    pub cap: Duration,
    /// Whether to randomise each wait within `[d / 2, d]`; without it the wait is `d`.
    pub jitter: bool,
    /// Whether an attempt that timed out is retried.
    pub retry_timeouts: bool,
    /// Whether an attempt that panicked is retried (a panic is usually a bug).
    pub retry_panics: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::none()
    }
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(60),
            jitter: true,
            retry_timeouts: true,
            retry_panics: false,
        }
    }

    /// `max_attempts` attempts in all, with a 100 ms base and a 60 s cap.
    pub fn attempts(max_attempts: u32) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            ..Self::none()
        }
    }

    /// Sets the backoff base and cap.
    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.base = base;
        self.cap = cap.max(base);
        self
    }

    /// Turns jitter on or off.
    pub fn jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets whether timeouts and panics are retried.
    pub fn retry_on(mut self, timeouts: bool, panics: bool) -> Self {
        self.retry_timeouts = timeouts;
        self.retry_panics = panics;
        self
    }

    /// The un-jittered step after the `failures`-th failure (1-based).
    pub fn step(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(32);
        let step = self.base.saturating_mul(1u32 << shift.min(31));
        if shift >= 32 {
            self.cap
        } else {
            step.min(self.cap)
        }
    }

    /// The wait after the `failures`-th failure, given a uniform sample `unit` in
    /// `[0, 1)`.
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        let step = self.step(failures);
        if !self.jitter {
            return step;
        }
        let half = step / 2;
        half + (step - half).mul_f64(unit.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_double_up_to_the_cap() {
        let p =
            RetryPolicy::attempts(10).backoff(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(p.step(1), Duration::from_millis(100));
        assert_eq!(p.step(2), Duration::from_millis(200));
        assert_eq!(p.step(4), Duration::from_millis(800));
        assert_eq!(p.step(5), Duration::from_secs(1));
        assert_eq!(p.step(1000), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_half_to_full_step() {
        let p =
            RetryPolicy::attempts(5).backoff(Duration::from_millis(100), Duration::from_secs(10));
        assert_eq!(p.delay(3, 0.0), Duration::from_millis(200));
        let near_top = p.delay(3, 0.999_999);
        assert!(near_top < Duration::from_millis(400));
        assert!(near_top > Duration::from_micros(399_990));
        assert_eq!(p.delay(3, 1.0), Duration::from_millis(400));
        assert_eq!(
            p.clone().jitter(false).delay(3, 0.3),
            Duration::from_millis(400)
        );
    }
}
