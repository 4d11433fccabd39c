//! A pool's live counters and the cheap snapshot users read at any time.
//!
//! Each worker publishes the lane it is running on a cache line of its own, and
//! records outcomes and latencies in one of a few striped, cache-line-aligned
//! stat blocks (two per core), so workers running at the same time rarely share
//! a lock or a line; a snapshot sums them. A histogram per worker would cost
//! tens of KB each, too much for a pool of a thousand workers.

use std::sync::atomic::{AtomicI64, AtomicU8, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use conveyor_core::{Lane, OutcomeKind};

use crate::latency_histogram::LatencyHistogram;
use crate::latency_histogram::LatencyStats;

/// Counts and latencies recorded by one worker.
#[derive(Debug, Default)]
pub(crate) struct LocalStats {
    outcomes: [u64; 5],
    retried: u64,
    latency: LatencyHistogram,
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

impl LocalStats {
    pub(crate) fn outcome(&mut self, kind: OutcomeKind, latency: Duration) {
        self.outcomes[outcome_index(kind)] += 1;
        self.latency.record(latency);
    }
}

/// Outcomes a worker counted and has not yet added to its stat block: a worker
/// running attempts back to back adds them under one lock every
/// [`Tally::CAPACITY`] outcomes, and always before it waits for anything or
/// hands results over (so a job's results never arrive before its counts).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    outcomes: [u64; 5],
    retried: u64,
    latencies: Vec<Duration>,
}

impl Tally {
    /// Outcomes held at most.
    pub(crate) const CAPACITY: usize = 64;

    /// Counts a final outcome; true once the tally is full.
    pub(crate) fn outcome(&mut self, kind: OutcomeKind, latency: Duration) -> bool {
        self.outcomes[outcome_index(kind)] += 1;
        if self.latencies.capacity() == 0 {
            self.latencies.reserve_exact(Self::CAPACITY);
        }
        self.latencies.push(latency);
        self.latencies.len() >= Self::CAPACITY
    }

    /// Counts a scheduled retry.
    pub(crate) fn retried(&mut self) {
        self.retried += 1;
    }

    /// Adds everything counted to `stats` and starts over.
    pub(crate) fn publish(&mut self, stats: &Mutex<LocalStats>) {
        if self.latencies.is_empty() && self.retried == 0 {
            return;
        }
        let mut stats = stats.lock();
        for (total, n) in stats.outcomes.iter_mut().zip(self.outcomes) {
            *total += n;
        }
        stats.retried += self.retried;
        for &latency in &self.latencies {
            stats.latency.record(latency);
        }
        drop(stats);
        self.outcomes = [0; 5];
        self.retried = 0;
        self.latencies.clear();
    }
}

/// What a worker is doing, on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct WorkerSlot {
    /// 0 when idle, else 1 + the index of the lane of the running attempt.
    lane: AtomicU8,
}

/// One stripe of outcome counters, on cache lines of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Stripe(pub(crate) Mutex<LocalStats>);

impl WorkerSlot {
    pub(crate) fn running(&self, lane: Option<Lane>) {
        let v = lane.map_or(0, |l| 1 + l.index() as u8);
        self.lane.store(v, Relaxed);
    }
}

/// Counters of the whole pool.
#[derive(Debug)]
pub(crate) struct Metrics {
    created: Instant,
    /// Tasks the dispatcher holds that wait for their first start.
    queued: AtomicI64,
    /// One slot per worker.
    pub(crate) workers: Box<[WorkerSlot]>,
    /// Outcome counters, shared by workers `i`, `i + n`, `i + 2n`…
    stripes: Box<[Stripe]>,
    /// Outcomes of tasks that never reached a worker (cancelled while waiting).
    pub(crate) unstarted: Mutex<LocalStats>,
}

impl Metrics {
    pub(crate) fn new(workers: usize) -> Self {
        Self {
            created: Instant::now(),
            queued: AtomicI64::new(0),
            workers: (0..workers).map(|_| WorkerSlot::default()).collect(),
            stripes: (0..workers.min(2 * crate::lane::cpu::available_cores()).max(1))
                .map(|_| Stripe::default())
                .collect(),
            unstarted: Mutex::new(LocalStats::default()),
        }
    }

    /// The stat block worker `me` records into.
    pub(crate) fn stats_of(&self, me: usize) -> &Mutex<LocalStats> {
        &self.stripes[me % self.stripes.len()].0
    }

    /// Publishes the dispatcher's count of tasks waiting for their first start.
    pub(crate) fn set_queued(&self, n: i64) {
        self.queued.store(n, Relaxed);
    }

    /// Attempts running now, per lane.
    pub(crate) fn running(&self) -> [u64; 3] {
        let mut lanes = [0u64; 3];
        for w in self.workers.iter() {
            let v = w.lane.load(Relaxed);
            if v > 0 {
                lanes[usize::from(v - 1)] += 1;
            }
        }
        lanes
    }

    /// A consistent-enough copy of every counter. `ready` is the number of
    /// tasks handed to workers and not yet picked up.
    pub(crate) fn snapshot(&self, ready: usize) -> MetricsSnapshot {
        let mut outcomes = [0u64; 5];
        let mut retried = 0;
        let mut latency = LatencyHistogram::default();
        let mut add = |s: &LocalStats| {
            for (total, n) in outcomes.iter_mut().zip(s.outcomes) {
                *total += n;
            }
            retried += s.retried;
            latency.merge(&s.latency);
        };
        for stripe in self.stripes.iter() {
            add(&stripe.0.lock());
        }
        add(&self.unstarted.lock());
        let lanes = self.running();
        let uptime = self.created.elapsed();
        let completed: u64 = outcomes.iter().sum();
        MetricsSnapshot {
            queued: self.queued.load(Relaxed).max(0) as u64 + ready as u64,
            in_flight_io: lanes[Lane::Io.index()],
            in_flight_cpu: lanes[Lane::Cpu.index()],
            in_flight_process: lanes[Lane::Process.index()],
            completed,
            succeeded: outcomes[0],
            failed: outcomes[1],
            cancelled: outcomes[2],
            timed_out: outcomes[3],
            panicked: outcomes[4],
            retried,
            uptime,
            throughput: if uptime.is_zero() {
                0.0
            } else {
                completed as f64 / uptime.as_secs_f64()
            },
            latency: latency.stats(),
        }
    }
}

/// A pool's counters at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    /// Tasks submitted and waiting to start (queued, delayed, held by a limit,
    /// or waiting for a free worker).
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
