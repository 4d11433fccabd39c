//! Job summaries: counts per outcome, wall time and latency percentiles.

use std::time::Duration;

use conveyor_core::{Outcome, OutcomeKind};

use crate::engine::task_result::TaskResult;
use crate::latency_histogram::{LatencyHistogram, LatencyStats};

/// What a job did: counts per outcome, retries, wall time and latencies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobSummary {
    /// Tasks that succeeded.
    pub succeeded: u64,
    /// Tasks that failed (after their last attempt, or permanently).
    pub failed: u64,
    /// Tasks cancelled before or while running.
    pub cancelled: u64,
    /// Tasks whose last attempt timed out.
    pub timed_out: u64,
    /// Tasks whose last attempt panicked.
    pub panicked: u64,
    /// Attempts beyond the first, over all tasks.
    pub retries: u64,
    /// From the job's start to its last outcome.
    pub wall: Duration,
    /// From submission to outcome, per task.
    pub latency: LatencyStats,
    /// Run time of each task's last attempt.
    pub run_time: LatencyStats,
}

impl JobSummary {
    /// Every task with an outcome.
    pub fn total(&self) -> u64 {
        self.succeeded + self.failed + self.cancelled + self.timed_out + self.panicked
    }

    /// The count for one outcome kind.
    pub fn count(&self, kind: OutcomeKind) -> u64 {
        match kind {
            OutcomeKind::Succeeded => self.succeeded,
            OutcomeKind::Failed => self.failed,
            OutcomeKind::Cancelled => self.cancelled,
            OutcomeKind::TimedOut => self.timed_out,
            OutcomeKind::Panicked => self.panicked,
        }
    }

    /// Outcomes per second of wall time.
    pub fn throughput(&self) -> f64 {
        let secs = self.wall.as_secs_f64();
        if secs > 0.0 {
            self.total() as f64 / secs
        } else {
            0.0
        }
    }
}

/// Accumulates a [`JobSummary`] from task results.
#[derive(Debug, Default)]
pub(crate) struct SummaryRecorder {
    summary: JobSummary,
    latency: LatencyHistogram,
    run_time: LatencyHistogram,
}

impl SummaryRecorder {
    pub(crate) fn record(&mut self, r: &TaskResult) {
        let s = &mut self.summary;
        match &r.outcome {
            Outcome::Succeeded(_) => s.succeeded += 1,
            Outcome::Failed(_) => s.failed += 1,
            Outcome::Cancelled => s.cancelled += 1,
            Outcome::TimedOut => s.timed_out += 1,
            Outcome::Panicked(_) => s.panicked += 1,
        }
        s.retries += u64::from(r.attempts.saturating_sub(1));
        self.latency
            .record(r.finished_at.saturating_duration_since(r.submitted_at));
        if let Some(started) = r.started_at {
            self.run_time
                .record(r.finished_at.saturating_duration_since(started));
        }
    }

    pub(crate) fn finish(mut self, wall: Duration) -> JobSummary {
        self.summary.wall = wall;
        self.summary.latency = self.latency.stats();
        self.summary.run_time = self.run_time.stats();
        self.summary
    }
}
