//! A 1 ms `tokio::time::interval` ticker that measures how late each tick runs:
//! a probe of how responsive the async runtime stays while other work runs.
//!
//! The interval uses [`MissedTickBehavior::Burst`], so every tick keeps its
//! scheduled instant and lateness = actual − scheduled. A runtime stalled for
//! 50 ms therefore shows 50 late ticks (50 ms, 49 ms, …), not one. The schedule
//! is anchored when the ticker is created, not when its task is first polled,
//! and stopping keeps every tick scheduled before the stop, so a stall at
//! either end of the measured work is still counted in full.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// Lateness percentiles of a run of ticks, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lateness {
    /// Ticks measured.
    pub ticks: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// A running ticker task.
pub struct Ticker {
    origin: Instant,
    /// Nanoseconds after `origin` from which ticks are no longer measured;
    /// `u64::MAX` while running.
    stop_after: Arc<AtomicU64>,
    task: JoinHandle<Vec<f64>>,
}

impl Ticker {
    /// Spawns the ticker on the current runtime; its first tick is due now.
    pub fn start() -> Ticker {
        let origin = Instant::now();
        let mut interval = tokio::time::interval_at(origin, Duration::from_millis(1));
        interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let stop_after = Arc::new(AtomicU64::new(u64::MAX));
        let stop = stop_after.clone();
        let task = tokio::spawn(async move {
            let mut late = Vec::with_capacity(4096);
            loop {
                let scheduled = interval.tick().await;
                let now = Instant::now();
                let offset = scheduled.duration_since(origin).as_nanos();
                if offset >= u128::from(stop.load(Ordering::Relaxed)) {
                    break;
                }
                late.push(now.saturating_duration_since(scheduled).as_secs_f64() * 1e3);
            }
            late
        });
        Ticker {
            origin,
            stop_after,
            task,
        }
    }

    /// Stops the ticker; the lateness of every tick scheduled before now, in
    /// milliseconds.
    pub async fn stop(self) -> Vec<f64> {
        let at = Instant::now().duration_since(self.origin).as_nanos();
        self.stop_after
            .store(u64::try_from(at).unwrap_or(u64::MAX - 1), Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

/// Runs the ticker while `work` runs; the lateness of each tick, in milliseconds.
pub async fn during<F: std::future::Future>(work: F) -> (F::Output, Vec<f64>) {
    let ticker = Ticker::start();
    let out = work.await;
    (out, ticker.stop().await)
}

/// Percentiles (nearest rank) of tick latenesses in milliseconds.
pub fn summarise(mut late: Vec<f64>) -> Lateness {
    if late.is_empty() {
        return Lateness::default();
    }
    late.sort_by(f64::total_cmp);
    let rank = |q: f64| late[((q * late.len() as f64).ceil() as usize).clamp(1, late.len()) - 1];
    Lateness {
        ticks: late.len(),
        p50: rank(0.50),
        p99: rank(0.99),
        max: late[late.len() - 1],
    }
}
