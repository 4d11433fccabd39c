//! A periodic tick that stops with a token: the rhythm of the runner's
//! lease keeper and heartbeat.

use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Ticks every period (at least 10 ms), the first tick one period from now;
/// a late tick delays the next rather than bursting.
pub(crate) struct Ticker {
    interval: Interval,
    started: bool,
}

impl Ticker {
    pub(crate) fn new(every: Duration) -> Self {
        let mut interval = tokio::time::interval(every.max(Duration::from_millis(10)));
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            interval,
            started: false,
        }
    }

    /// Waits for the next tick; `false` once `done` fires.
    pub(crate) async fn next(&mut self, done: &CancellationToken) -> bool {
        if !self.started {
            // An interval's first tick is immediate: skip it.
            self.started = true;
            self.interval.tick().await;
        }
        tokio::select! {
            _ = self.interval.tick() => true,
            _ = done.cancelled() => false,
        }
    }
}
