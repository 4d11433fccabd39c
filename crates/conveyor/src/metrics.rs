//! A pool's live counters and the cheap snapshot users read at any time.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use conveyor_core::{Lane, OutcomeKind};

use crate::summary::{LatencyHistogram, LatencyStats};

/// Counters updated by the engine; read with [`Metrics::snapshot`].
#[derive(Debug)]
pub(crate) struct Metrics {
    created: Instant,
    queued: AtomicI64,
    in_flight: [AtomicI64; 3],
    outcomes: [AtomicU64; 5],
    retried: AtomicU64,
    latency: Mutex<LatencyHistogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            created: Instant::now(),
            queued: AtomicI64::new(0),
            in_flight: Default::default(),
            outcomes: Default::default(),
            retried: AtomicU64::new(0),
            latency: Mutex::new(LatencyHistogram::default()),
        }
    }
}

fn outcome_index(kind: OutcomeKind) -> usize {
    match kind {
        OutcomeKind::Succeeded => 0,
        OutcomeKind::Failed => 1,
        OutcomeKind::Cancelled => 2,
        OutcomeKind::TimedOut => 3,
        OutcomeKind::Panicked => 4,
    }
}

impl Metrics {
    /// Publishes the dispatcher's count of tasks waiting for their first start.
    pub(crate) fn set_queued(&self, n: i64) {
        self.queued.store(n, Relaxed);
    }

    pub(crate) fn in_flight(&self, lane: Lane, delta: i64) {
        self.in_flight[lane.index()].fetch_add(delta, Relaxed);
    }

    pub(crate) fn retried(&self) {
        self.retried.fetch_add(1, Relaxed);
    }

    /// Records final outcomes in bulk (one lock for the whole batch).
    pub(crate) fn outcomes(&self, batch: &[(OutcomeKind, Duration)]) {
        if batch.is_empty() {
            return;
        }
        let mut counts = [0u64; 5];
        {
            let mut latency = self.latency.lock();
            for (kind, d) in batch {
                counts[outcome_index(*kind)] += 1;
                latency.record(*d);
            }
        }
        for (i, n) in counts.into_iter().enumerate() {
            if n > 0 {
                self.outcomes[i].fetch_add(n, Relaxed);
            }
        }
    }

    /// A consistent-enough copy of every counter (each read is atomic; the set is not).
    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let o = |k| self.outcomes[outcome_index(k)].load(Relaxed);
        let lane = |l: Lane| self.in_flight[l.index()].load(Relaxed).max(0) as u64;
        let uptime = self.created.elapsed();
        let completed = o(OutcomeKind::Succeeded)
            + o(OutcomeKind::Failed)
            + o(OutcomeKind::Cancelled)
            + o(OutcomeKind::TimedOut)
            + o(OutcomeKind::Panicked);
        MetricsSnapshot {
            queued: self.queued.load(Relaxed).max(0) as u64,
            in_flight_io: lane(Lane::Io),
            in_flight_cpu: lane(Lane::Cpu),
            in_flight_process: lane(Lane::Process),
            completed,
            succeeded: o(OutcomeKind::Succeeded),
            failed: o(OutcomeKind::Failed),
            cancelled: o(OutcomeKind::Cancelled),
            timed_out: o(OutcomeKind::TimedOut),
            panicked: o(OutcomeKind::Panicked),
            retried: self.retried.load(Relaxed),
            uptime,
            throughput: if uptime.is_zero() {
                0.0
            } else {
                completed as f64 / uptime.as_secs_f64()
            },
            latency: self.latency.lock().stats(),
        }
    }
}

/// A pool's counters at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    /// Tasks submitted and waiting to start (queued, delayed or held by a limit).
    pub queued: u64,
    /// Attempts running in the io lane.
    pub in_flight_io: u64,
    /// Attempts running in the cpu lane.
    pub in_flight_cpu: u64,
    /// Attempts running in the process lane.
    pub in_flight_process: u64,
    /// Tasks with a final outcome.
    pub completed: u64,
    /// Tasks that succeeded.
    pub succeeded: u64,
    /// Tasks that failed.
    pub failed: u64,
    /// Tasks cancelled.
    pub cancelled: u64,
    /// Tasks whose last attempt timed out.
    pub timed_out: u64,
    /// Tasks whose last attempt panicked.
    pub panicked: u64,
    /// Retries scheduled.
    pub retried: u64,
    /// Time since the pool started.
    pub uptime: Duration,
    /// Completed tasks per second since the pool started.
    pub throughput: f64,
    /// Submission-to-outcome latency of completed tasks.
    pub latency: LatencyStats,
}

impl MetricsSnapshot {
    /// Attempts running in all lanes.
    pub fn in_flight(&self) -> u64 {
        self.in_flight_io + self.in_flight_cpu + self.in_flight_process
    }
}
