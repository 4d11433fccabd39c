//! The engine's rate limiter: a [`Rate`]'s GCRA ([`Gcra`], the one
//! implementation) paced by the dispatcher on tokio's clock.
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

use conveyor_core::{Error, Gcra, Rate};

/// How much lateness of the dispatcher's timer the limiter makes up for.
pub const CATCH_UP: Duration = Duration::from_millis(5);

/// A GCRA limiter on tokio's clock.
pub(crate) struct RateLimiter {
    gcra: Gcra,
    /// The clock's origin: times are nanoseconds since it.
    base: Instant,
    /// The theoretical arrival time of the next permit.
    tat: Option<i64>,
}

impl RateLimiter {
    /// A limiter for `rate`.
    pub(crate) fn new(rate: Rate) -> Result<Self, Error> {
        rate.validate()?;
        Ok(Self {
            gcra: rate.gcra(Duration::from_nanos(1)),
            base: Instant::now(),
            tat: None,
        })
    }

    /// Takes a permit now, or says when the next one is due.
    pub(crate) fn try_take(&mut self) -> Result<(), Instant> {
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        let now = nanos(Instant::now().saturating_duration_since(self.base));
        // Anchored at the theoretical time, crediting up to CATCH_UP of lateness.
        match self.gcra.admit(self.tat, now, nanos(CATCH_UP)) {
            Ok(tat) => {
                self.tat = Some(tat);
                Ok(())
            }
            Err(earliest) => Err(self.base + Duration::from_nanos(earliest.max(0) as u64)),
        }
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
