//! What a worker tells the backend about a task, decided from the engine's outcome.
//!
//! The engine runs each durable attempt once (`max_attempts = 1`); retries belong
//! to the backend, so a crash during a backoff loses nothing and another worker
//! may take the retry. This module is the one mapping from an engine outcome to a
//! backend report.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{ErrorKind, FinishAction, Outcome, RetryPolicy, TaskId};

use crate::results::TaskResult;

use super::registry::Registered;

/// What became of a task, as reported to the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// Succeeded; the result is stored.
    Completed,
    /// Failed; the backend retries it after a backoff (or dead-letters it when no
    /// attempt remains).
    Retried,
    /// Failed for good: dead-lettered.
    DeadLettered,
    /// The handler asked to drop it.
    Discarded,
    /// Not started: its lease was handed back without counting the attempt.
    Released,
}

/// A finished durable task, as given to the worker's `on_task_complete`.
#[derive(Debug)]
pub struct DurableResult {
    /// The task's id in the backend.
    pub id: TaskId,
    /// The queue it came from.
    pub queue: String,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// What the worker reported.
    pub report: ReportKind,
    /// The error reported with a failure.
    pub error: Option<String>,
    /// The engine's result of the attempt (outcome, output, timings).
    pub result: TaskResult,
}

/// Decides the report for an attempt of `handler` that ended as `result`.
pub(crate) fn decide(
    handler: &Arc<Registered>,
    result: &TaskResult,
    attempt: u32,
    shutting_down: bool,
) -> (ReportKind, FinishAction) {
    let policy = &handler.retry;
    let dead = |error: String| (ReportKind::DeadLettered, FinishAction::DeadLetter { error });
    let retry_in = |delay: Duration, error: String| match handler.attempt_cap {
        Some(cap) if attempt >= cap => dead(error),
        _ => (ReportKind::Retried, FinishAction::Retry { delay, error }),
    };
    let retry = |error: String| retry_in(backoff(policy, attempt), error);
    match &result.outcome {
        Outcome::Succeeded(out) => match handler.encode(out) {
            Ok(bytes) => (
                ReportKind::Completed,
                FinishAction::Complete {
                    result: Some(bytes),
                },
            ),
            Err(e) => dead(format!("cannot encode the result: {e}")),
        },
        Outcome::Failed(e) => {
            let msg = e.to_string();
            match e.kind() {
                ErrorKind::Retryable => retry(msg),
                ErrorKind::RetryAfter(d) => retry_in(d, msg),
                ErrorKind::Permanent => dead(msg),
                ErrorKind::Discard => {
                    (ReportKind::Discarded, FinishAction::Discard { reason: msg })
                }
            }
        }
        Outcome::TimedOut => {
            let msg = "timed out".to_string();
            if policy.retry_timeouts {
                retry(msg)
            } else {
                dead(msg)
            }
        }
        Outcome::Panicked(m) => {
            let msg = format!("panicked: {m}");
            if policy.retry_panics {
                retry(msg)
            } else {
                dead(msg)
            }
        }
        Outcome::Cancelled if result.attempts == 0 => (ReportKind::Released, FinishAction::Release),
        Outcome::Cancelled => {
            let why = if shutting_down {
                "the worker shut down before the task finished"
            } else {
                "cancelled: the worker lost the task's lease"
            };
            (
                ReportKind::Retried,
                FinishAction::Retry {
                    delay: Duration::ZERO,
                    error: why.to_string(),
                },
            )
        }
    }
}

fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    policy.delay(attempt, fastrand::f64())
}
