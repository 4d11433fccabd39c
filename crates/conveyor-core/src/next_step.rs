//! The one decision of what follows an attempt: done, retry after a delay,
//! dead-letter, discard, or hand the task back untouched.
//!
//! Every place that runs tasks asks this function and nothing else: the
//! engine's in-place retries (in-process jobs, stream sources such as Kafka),
//! the durable worker's report to its backend, and any source to come. The
//! caller only maps the answer to its own mechanism (reschedule in the
//! dispatcher, `Retry` report to the store, dead-letter topic).

use std::time::Duration;

use crate::task_error::ErrorKind;
use crate::{Outcome, RetryPolicy};

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NextStep {
    /// The task succeeded: it is done.
    Done,
    /// Run it again after this delay.
    Retry {
        /// How long to wait before the next attempt.
        delay: Duration,
    },
    /// It failed for good: no attempt left, a permanent error, or a timeout
    /// or panic the policy does not retry.
    DeadLetter,
    /// The handler asked to drop it (not a failure).
    Discard,
    /// It was cancelled: the task is not this runner's to finish. A source
    /// hands it back (a task that never started loses no attempt).
    Release,
}

/// Decides what follows an attempt that ended as `outcome`.
///
/// `attempt` is the number of the attempt that just ended (from 1) and
/// `max_attempts` how many the task may have in all; `policy` gives the backoff
/// and whether timeouts and panics are retried; `unit` is a number in `[0, 1]`
/// for the backoff's jitter (`fastrand::f64()` in production, fixed in tests).
pub fn next_step<T>(
    outcome: &Outcome<T>,
    attempt: u32,
    max_attempts: u32,
    policy: &RetryPolicy,
    unit: f64,
) -> NextStep {
    let attempts_left = attempt < max_attempts;
    let retry_in = |delay: Duration| {
        if attempts_left {
            NextStep::Retry { delay }
        } else {
            NextStep::DeadLetter
        }
    };
    let backoff = || retry_in(policy.delay(attempt, unit));
    match outcome {
        Outcome::Succeeded(_) => NextStep::Done,
        Outcome::Failed(e) => match e.kind() {
            ErrorKind::Retryable => backoff(),
            ErrorKind::RetryAfter(delay) => retry_in(delay),
            ErrorKind::Permanent => NextStep::DeadLetter,
            ErrorKind::Discard => NextStep::Discard,
        },
        Outcome::TimedOut if policy.retry_timeouts => backoff(),
        Outcome::Panicked(_) if policy.retry_panics => backoff(),
        Outcome::TimedOut | Outcome::Panicked(_) => NextStep::DeadLetter,
        Outcome::Cancelled => NextStep::Release,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskError;

    fn policy() -> RetryPolicy {
        RetryPolicy::attempts(3)
            .backoff(Duration::from_millis(100), Duration::from_secs(10))
            .jitter(false)
    }

    fn step(outcome: Outcome<()>, attempt: u32) -> NextStep {
        next_step(&outcome, attempt, 3, &policy(), 0.5)
    }

    #[test]
    fn success_is_done_and_cancel_hands_back() {
        assert_eq!(step(Outcome::Succeeded(()), 1), NextStep::Done);
        assert_eq!(step(Outcome::Cancelled, 1), NextStep::Release);
        assert_eq!(step(Outcome::Cancelled, 3), NextStep::Release);
    }

    #[test]
    fn retryable_errors_back_off_until_the_last_attempt() {
        let fail = || Outcome::Failed(TaskError::new("flaky"));
        let retry = |ms| NextStep::Retry {
            delay: Duration::from_millis(ms),
        };
        assert_eq!(step(fail(), 1), retry(100));
        assert_eq!(step(fail(), 2), retry(200));
        assert_eq!(step(fail(), 3), NextStep::DeadLetter);
        let later = || Outcome::Failed(TaskError::retry_after(Duration::from_secs(7), "429"));
        assert_eq!(
            step(later(), 1),
            NextStep::Retry {
                delay: Duration::from_secs(7)
            }
        );
        assert_eq!(step(later(), 3), NextStep::DeadLetter);
    }

    #[test]
    fn permanent_discard_timeouts_and_panics() {
        assert_eq!(
            step(Outcome::Failed(TaskError::permanent("bad input")), 1),
            NextStep::DeadLetter
        );
        assert_eq!(
            step(Outcome::Failed(TaskError::discard("stale")), 1),
            NextStep::Discard
        );
        // Timeouts are retried by default, panics are not.
        assert!(matches!(step(Outcome::TimedOut, 1), NextStep::Retry { .. }));
        assert_eq!(step(Outcome::TimedOut, 3), NextStep::DeadLetter);
        assert_eq!(
            step(Outcome::Panicked("boom".into()), 1),
            NextStep::DeadLetter
        );
        let both = policy().retry_on(false, true);
        assert_eq!(
            next_step(&Outcome::<()>::TimedOut, 1, 3, &both, 0.0),
            NextStep::DeadLetter
        );
        assert!(matches!(
            next_step(&Outcome::<()>::Panicked("x".into()), 1, 3, &both, 0.0),
            NextStep::Retry { .. }
        ));
    }
}
