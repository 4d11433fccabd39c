//! What the overview's charts draw: the queues' counts, read from the store
//! at a steady pace while the server runs, kept for the last half hour.
//!
//! The store keeps no history of its own, so the server samples
//! [`Inspection::stats`](conveyor_core::Inspection::stats) and keeps
//! the samples in memory: throughput is the rise of finished counts between
//! two samples. A prune between two samples lowers the finished counts; the
//! rise is then taken as zero rather than as a negative rate, so a chart may
//! under-count across a prune, never invent work.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use conveyor_core::{Backend, QueueStats};
use conveyor_core::{Error, TaskState, Timestamp};

/// How many samples are kept.
const KEEP: usize = 360;

/// The totals over every queue at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    /// When it was read.
    pub(crate) at: Timestamp,
    /// Completed tasks.
    pub(crate) completed: u64,
    /// Dead tasks.
    pub(crate) dead: u64,
    /// Tasks ready to run.
    pub(crate) available: u64,
    /// Tasks running.
    pub(crate) running: u64,
    /// Tasks waiting for a retry.
    pub(crate) retrying: u64,
}

impl Sample {
    /// The totals of `stats`, read at `at`.
    pub(crate) fn of(stats: &[QueueStats], at: Timestamp) -> Sample {
        let total = |state| stats.iter().map(|q| q.count(state)).sum();
        Sample {
            at,
            completed: total(TaskState::Completed),
            dead: total(TaskState::Dead),
            available: total(TaskState::Available),
            running: total(TaskState::Running),
            retrying: total(TaskState::Retrying),
        }
    }
}

/// A rate between two samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rate {
    /// Seconds before the newest sample (zero or negative).
    pub(crate) x: f64,
    /// Completed per second.
    pub(crate) completed: f64,
    /// Dead-lettered per second.
    pub(crate) dead: f64,
}

/// The samples, oldest first, and what went wrong with the last read.
#[derive(Debug, Default)]
pub(crate) struct History {
    samples: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    samples: VecDeque<Sample>,
    last_error: Option<String>,
}

impl History {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind: keep it.
        self.samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a sample, forgetting the oldest beyond [`KEEP`].
    pub(crate) fn push(&self, sample: Sample) {
        let mut inner = self.lock();
        if inner.samples.len() == KEEP {
            inner.samples.pop_front();
        }
        inner.samples.push_back(sample);
        inner.last_error = None;
    }

    /// Records a failed read.
    pub(crate) fn failed(&self, error: &Error) {
        self.lock().last_error = Some(error.chain().to_string());
    }

    /// The samples, oldest first.
    pub(crate) fn samples(&self) -> Vec<Sample> {
        self.lock().samples.iter().copied().collect()
    }

    /// Why the last read failed, if it did.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }

    /// Completed and dead-lettered per second between each two samples,
    /// placed at the later one, in seconds before the newest.
    pub(crate) fn rates(&self) -> Vec<Rate> {
        rates(&self.samples())
    }
}

/// See [`History::rates`].
pub(crate) fn rates(samples: &[Sample]) -> Vec<Rate> {
    let Some(newest) = samples.last() else {
        return Vec::new();
    };
    samples
        .windows(2)
        .filter_map(|pair| {
            let (a, b) = (pair[0], pair[1]);
            let seconds = b.at.since(a.at).as_secs_f64();
            if seconds <= 0.0 {
                return None;
            }
            let per_second = |new: u64, old: u64| new.saturating_sub(old) as f64 / seconds;
            Some(Rate {
                x: -newest.at.since(b.at).as_secs_f64(),
                completed: per_second(b.completed, a.completed),
                dead: per_second(b.dead, a.dead),
            })
        })
        .collect()
}

/// Samples `backend` every `every` into `history` until the history is
/// dropped (the server with it), or the backend turns out unable to count.
pub(crate) fn start_sampling(backend: Arc<dyn Backend>, history: Weak<History>, every: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let read = backend.stats().await;
            let Some(history) = history.upgrade() else {
                return;
            };
            match read {
                Ok(stats) => history.push(Sample::of(&stats, Timestamp::now())),
                Err(Error::Unsupported(_)) => return,
                Err(e) => history.failed(&e),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64, completed: u64, dead: u64) -> Sample {
        Sample {
            at: Timestamp(ms as i64),
            completed,
            dead,
            available: 0,
            running: 0,
            retrying: 0,
        }
    }

    #[test]
    fn rates_are_rises_per_second_and_a_prune_is_no_negative_rate() {
        let samples = [at(0, 0, 0), at(2_000, 10, 2), at(4_000, 4, 2)];
        let rates = rates(&samples);
        assert_eq!(rates.len(), 2);
        assert_eq!(
            (rates[0].x, rates[0].completed, rates[0].dead),
            (-2.0, 5.0, 1.0)
        );
        assert_eq!(
            (rates[1].x, rates[1].completed, rates[1].dead),
            (0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn history_keeps_the_newest() {
        let history = History::default();
        for i in 0..(KEEP as u64 + 5) {
            history.push(at(i, i, 0));
        }
        let samples = history.samples();
        assert_eq!(samples.len(), KEEP);
        assert_eq!(samples[0].completed, 5);
    }
}
