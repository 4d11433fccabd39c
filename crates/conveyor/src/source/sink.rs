//! The runner's completion sink: the engine hands it each task's final
//! result on the worker that settled the task, and it decides the next step
//! ([`next_step`]), queues the settlement for the source, gives the slot back
//! and offers the result to the user's callback — all without waiting.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::{Duration, SystemTime};

use conveyor_core::{next_step, Error, FinishAction, NewTask, NextStep, Outcome, TaskId};

use crate::engine::completion::{AttemptScope, AttemptStart, CompletionSink};
use crate::engine::task_result::TaskResult;
use crate::events::{Event, EventBus, TaskEventKind, TaskFact};
use crate::output::Output;

use super::callbacks::{Settled, Stored};
use super::contract::{Retries, Settlement, Source};
use super::held::{Entry, Removed};
use super::runner_state::RunnerState;

/// The sink of one runner's engine job.
pub(crate) struct RunnerSink<S: Source> {
    /// Weak: the runner holds the engine job, which holds this sink.
    pub(crate) shared: Weak<RunnerState<S>>,
    /// The runner's events (checked before anything else).
    pub(crate) events: EventBus,
    /// The source can enqueue follow-ups with a settlement.
    pub(crate) follow_ups: bool,
}

impl<S: Source> CompletionSink for RunnerSink<S> {
    fn started(&self, id: TaskId, attempt: u32) -> AttemptStart {
        let Some(sh) = self.shared.upgrade() else {
            return AttemptStart::default();
        };
        let clear = attempt > 1 && self.follow_ups;
        let retries = sh.retries;
        let events = &self.events;
        // One look at the held entry tells everything the start needs.
        let started = sh.held.with_mut(id, |e| {
            if clear {
                // Retried in place: what a failed attempt asked for is not
                // this attempt's.
                e.follow_ups.clear();
            }
            let first = !std::mem::replace(&mut e.running, true);
            let counted = matches!(retries, Retries::BySource).then_some(e.attempt);
            // Counted here, where the names can be lent; the event, when
            // anyone else wants it, is handed out after the lock.
            let event = events
                .is_listened()
                .then(|| count_start(events, e, counted.unwrap_or(attempt), id))
                .flatten();
            let start = AttemptStart {
                scope: attempt_span(e, retries, id, attempt),
                attempt: counted,
            };
            (first, start, event)
        });
        let Some((first_start, start, event)) = started else {
            return AttemptStart::default();
        };
        if first_start {
            sh.counters.running.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(event) = event {
            events.emit_uncounted(event);
        }
        start
    }

    fn complete(&self, result: TaskResult) {
        // Gone once the runner has stopped: nothing is left to settle.
        let Some(sh) = self.shared.upgrade() else {
            return;
        };
        let sh = &*sh;
        let Some(Removed { mut entry, next }) = sh.held.remove(result.id) else {
            return;
        };
        if entry.running {
            sh.counters.running.fetch_sub(1, Ordering::Relaxed);
        }
        if entry.cancelled {
            // The id may come back from the source: it must not start cancelled.
            sh.cancels.forget(result.id);
        }
        let (step, action) = decide(sh.retries, &entry, &result, sh.is_aborting());
        let error = match &action {
            FinishAction::Retry { error, .. } | FinishAction::DeadLetter { error } => {
                Some(error.clone())
            }
            FinishAction::Discard { reason } => Some(reason.clone()),
            _ => None,
        };
        if let Some(error) = &error {
            tracing::debug!(task = %result.id, handler = %result.handler, ?step, %error, "settled");
        }
        let trace_id = end_attempt_span(&mut entry, &result, error.as_deref());
        let fact = ended_fact(&entry, &result, &step);
        self.events.emit_task(fact, || {
            let attempt = match sh.retries {
                Retries::BySource if result.attempts > 0 => entry.attempt,
                _ => result.attempts,
            };
            let queue_wait = result
                .started_at
                .map(|s| s.saturating_duration_since(result.submitted_at));
            fact.event(
                result.id,
                attempt,
                error.clone(),
                queue_wait,
                SystemTime::now(),
            )
        });
        let follow_ups = match action {
            FinishAction::Complete { .. } => entry.follow_ups,
            _ => Vec::new(),
        };
        let (id, attempts) = (result.id, result.attempts);
        let outcome = (attempts > 0).then(|| result.outcome.kind());
        let settled = sh.callbacks.is_some().then(|| Settled {
            id: result.id,
            queue: entry.queue,
            attempt: entry.attempt,
            step,
            error,
            result,
            trace_id,
            stored: Stored::Taken,
        });
        sh.queue(
            Settlement {
                id,
                handler: entry.route.name.clone(),
                receipt: entry.receipt,
                attempts,
                outcome,
                action,
                follow_ups,
            },
            settled,
        );
        if let Some((delivery, route)) = next {
            sh.start(&sh.producer(), delivery, &route);
        }
    }

    fn follow_up(&self, id: TaskId, #[allow(unused_mut)] mut task: NewTask) -> Result<(), Error> {
        if !self.follow_ups {
            return Err(Error::Unsupported(
                "this worker's source cannot enqueue follow-up tasks with a settlement".into(),
            ));
        }
        let sh = self.shared.upgrade().ok_or(Error::NotFound(id))?;
        sh.held
            .with_mut(id, |e| {
                // With traces, a follow-up without a context of its own
                // carries the attempt's: its attempts link to the step
                // that made it.
                #[cfg(feature = "otel")]
                if task.trace.is_none() {
                    task.trace = e.span.as_ref().and_then(crate::otel::trace_context);
                }
                e.follow_ups.push(task)
            })
            .ok_or(Error::NotFound(id))
    }
}

/// Starts the span of attempt `attempt` of held task `e` (feature `otel`);
/// an earlier attempt's span still open (a retry in place) ends as failed.
#[cfg(feature = "otel")]
fn attempt_span<P, R>(
    e: &mut Entry<P, R>,
    retries: Retries,
    id: TaskId,
    attempt: u32,
) -> AttemptScope {
    if let Some(earlier) = e.span.take() {
        crate::otel::end_attempt(&earlier, "failed", Some("retried in place".into()));
    }
    let attempt = match retries {
        Retries::BySource => e.attempt,
        _ => attempt,
    };
    let cx = crate::otel::attempt_span(e.trace.as_ref(), &e.queue, &e.route.name, id, attempt);
    e.span = Some(cx.clone());
    Some(cx)
}

#[cfg(not(feature = "otel"))]
fn attempt_span<P, R>(_: &mut Entry<P, R>, _: Retries, _: TaskId, _: u32) -> AttemptScope {}

/// Ends the running attempt's span, if any, with the task's outcome;
/// returns its trace id.
#[cfg(feature = "otel")]
fn end_attempt_span<P, R>(
    entry: &mut Entry<P, R>,
    result: &TaskResult,
    error: Option<&str>,
) -> Option<String> {
    let cx = entry.span.take()?;
    let kind = result.outcome.kind();
    let failed = match &result.outcome {
        Outcome::Succeeded(_) => None,
        Outcome::Failed(e) => Some(e.to_string()),
        _ => Some(error.unwrap_or(kind.as_str()).to_string()),
    };
    crate::otel::end_attempt(&cx, kind.as_str(), failed);
    crate::otel::trace_id(&cx)
}

#[cfg(not(feature = "otel"))]
fn end_attempt_span<P, R>(_: &mut Entry<P, R>, _: &TaskResult, _: Option<&str>) -> Option<String> {
    None
}

/// Counts the start of `e`'s attempt `attempt` (the counters read its names
/// in place), and returns its `Started` event when observers or
/// subscribers want it.
fn count_start<P, R>(
    events: &EventBus,
    e: &Entry<P, R>,
    attempt: u32,
    id: TaskId,
) -> Option<Event> {
    let at = SystemTime::now();
    let since_ready = e.ready_at.map(|r| at.duration_since(r).unwrap_or_default());
    let fact = TaskFact {
        kind: TaskEventKind::Started,
        handler: &e.route.name,
        queue: &e.queue,
        outcome: None,
        run_time: None,
        since_ready,
    };
    events.count_then_build(fact, || fact.event(id, attempt, None, None, at))
}

/// The kind of event that ends an attempt settled with `step`.
fn ended_kind(step: &NextStep) -> TaskEventKind {
    match step {
        NextStep::Done => TaskEventKind::Succeeded,
        NextStep::Retry { .. } => TaskEventKind::Retried,
        NextStep::Discard => TaskEventKind::Discarded,
        NextStep::Release => TaskEventKind::Cancelled,
        _ => TaskEventKind::DeadLettered,
    }
}

/// The fact of the event that ends `entry`'s attempt, with its names lent.
fn ended_fact<'a, P, R>(
    entry: &'a Entry<P, R>,
    result: &TaskResult,
    step: &NextStep,
) -> TaskFact<'a> {
    TaskFact {
        kind: ended_kind(step),
        handler: &entry.route.name,
        queue: &entry.queue,
        outcome: (result.attempts > 0).then(|| result.outcome.kind()),
        run_time: run_time(result),
        since_ready: None,
    }
}

/// How long the attempt of `result` ran, if it started.
fn run_time(result: &TaskResult) -> Option<Duration> {
    result
        .started_at
        .map(|s| result.finished_at.saturating_duration_since(s))
}

/// The next step of a held task whose attempt ended as `result`, and what the
/// source is told.
fn decide<P, R>(
    retries: Retries,
    entry: &Entry<P, R>,
    result: &TaskResult,
    aborting: bool,
) -> (NextStep, FinishAction) {
    let (attempt, max) = match retries {
        // The engine ran one attempt: the delivery's number decides.
        Retries::BySource => (entry.attempt, entry.max_attempts),
        // The engine retried in place: this outcome is final.
        _ => (result.attempts, result.attempts),
    };
    let outcome = &result.outcome;
    let step = next_step(outcome, attempt, max, &entry.route.retry, fastrand::f64());
    let why = || describe(outcome, entry.cancelled, aborting);
    match step {
        NextStep::Done => match outcome {
            Outcome::Succeeded(out) => encode(entry, out),
            // `next_step` is done only with a success.
            _ => (step, FinishAction::Complete { result: None }),
        },
        NextStep::Retry { delay } => (
            step,
            FinishAction::Retry {
                delay,
                error: why(),
            },
        ),
        NextStep::Discard => (step, FinishAction::Discard { reason: why() }),
        NextStep::Release if result.attempts == 0 => (step, FinishAction::Release),
        NextStep::Release if retries == Retries::BySource => {
            // Started, then cancelled (lost claim, or the stop's grace ran
            // out): the attempt counts, and the source may run it again now.
            let delay = Duration::ZERO;
            let error = why();
            (
                NextStep::Retry { delay },
                FinishAction::Retry { delay, error },
            )
        }
        NextStep::Release => (step, FinishAction::Release),
        _ => (
            NextStep::DeadLetter,
            FinishAction::DeadLetter { error: why() },
        ),
    }
}

/// A success's result, encoded for the source.
fn encode<P, R>(entry: &Entry<P, R>, out: &Output) -> (NextStep, FinishAction) {
    match entry.route.encode(out) {
        Ok(result) => (NextStep::Done, FinishAction::Complete { result }),
        Err(e) => (
            NextStep::DeadLetter,
            FinishAction::DeadLetter {
                error: format!("cannot encode the result: {e}"),
            },
        ),
    }
}

/// The error text settled with an outcome that is not a success.
fn describe(outcome: &Outcome<Output>, cancelled_by_runner: bool, aborting: bool) -> String {
    match outcome {
        Outcome::Succeeded(_) => String::new(),
        Outcome::Failed(e) => e.to_string(),
        Outcome::TimedOut => "timed out".to_string(),
        Outcome::Panicked(m) => format!("panicked: {m}"),
        Outcome::Cancelled if cancelled_by_runner => {
            "cancelled: the worker lost the task's lease".to_string()
        }
        Outcome::Cancelled if aborting => {
            "the worker shut down before the task finished".to_string()
        }
        Outcome::Cancelled => "cancelled".to_string(),
    }
}
