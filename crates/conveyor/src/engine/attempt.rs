//! Running one attempt of a task in its lane, and deciding what follows it:
//! a retry after backoff, or the final outcome delivered to the result queue.
//!
//! Every attempt is guarded the same way in every lane: a panic becomes
//! [`Outcome::Panicked`], a timeout [`Outcome::TimedOut`], a cancelled task, job
//! or pool [`Outcome::Cancelled`]. A cpu-lane thread cannot be pre-empted, so on
//! timeout or cancel its outcome is reported at once while its slot stays taken
//! until the thread really returns: slots always match the threads in use.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Instrument;

use conveyor_core::{next_step, NextStep, Outcome, OutcomeKind, TaskError};

use crate::context::TaskContext;
use crate::engine::completion::{AttemptScope, AttemptStart};
use crate::engine::envelope::{Envelope, Event, JobShared, Release};
use crate::engine::signal::WorkerSignal;
use crate::handler::{run_process, Work};
use crate::output::Output;
use crate::results::TaskResult;

/// How one attempt ended: the engine's outcome with the output erased.
type Ended = Outcome<Output>;

/// The outcome of a caught attempt: its result, or the panic it raised.
fn from_caught(r: Result<Result<Output, TaskError>, Box<dyn Any + Send>>) -> Ended {
    match r {
        Ok(Ok(out)) => Outcome::Succeeded(out),
        Ok(Err(e)) => Outcome::Failed(e),
        Err(panic) => Outcome::Panicked(panic_message(&*panic)),
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

type ThreadDone = oneshot::Receiver<()>;

/// What an attempt left for its worker to do and record.
pub(crate) struct Done {
    /// The dispatcher slot (and key) to free, for a managed task that is final.
    pub(crate) release: Option<Release>,
    /// The final outcome's kind and latency, when the task is final.
    pub(crate) outcome: Option<(OutcomeKind, Duration)>,
    /// True when the attempt failed and a retry was scheduled.
    pub(crate) retried: bool,
    /// The final result, for the worker to post to its job's result queue.
    pub(crate) result: Option<(Arc<JobShared>, TaskResult)>,
    /// When the final outcome was decided, if it was just now.
    pub(crate) ended_at: Option<Instant>,
}

/// Runs the next attempt of `env` (with its dispatcher slot, if managed),
/// starting at `started`. A worker awaits it in place: one state machine for
/// every lane, so an attempt costs no allocation of its own.
pub(crate) async fn run_attempt(
    mut env: Box<Envelope>,
    slot: Option<usize>,
    started: Instant,
    signal: &WorkerSignal,
    start: AttemptStart,
) -> Done {
    env.attempt += 1;
    let attempt = env.attempt;
    let last = attempt >= env.max_attempts;
    let deadline = env.timeout.map(|d| started + d);
    // A source that counts attempts across deliveries says which this is.
    let AttemptStart {
        scope,
        attempt: counted,
    } = start;
    let counted = counted.unwrap_or(attempt);
    let ctx = TaskContext {
        id: env.id,
        attempt: counted,
        key: env.key.clone(),
        job: env.job.clone(),
        deadline,
    };
    // Info level, so every event of the attempt carries the task's id (and,
    // with the `otel` feature, the attempt's trace id) under the default
    // filter.
    let span = tracing::info_span!(
        "task",
        id = env.id.0,
        handler = %env.handler.name,
        attempt = counted,
        trace_id = tracing::field::Empty
    );
    record_trace_id(&span, &scope);
    let Envelope {
        handler, params, ..
    } = &mut *env;
    let work = catch_unwind(AssertUnwindSafe(|| handler.work(params, last, ctx)));
    match work {
        Err(panic) => {
            let end = Outcome::Panicked(panic_message(&*panic));
            conclude(env, slot, Some(started), end)
        }
        Ok(Work::Failed(e)) => conclude(env, slot, Some(started), Outcome::Failed(e)),
        Ok(Work::Io(fut)) => {
            run_async(env, slot, started, in_scope(fut, scope), signal)
                .instrument(span)
                .await
        }
        Ok(Work::Process(cmd)) => {
            let fut = Box::pin(run_process(cmd));
            run_async(env, slot, started, in_scope(fut, scope), signal)
                .instrument(span)
                .await
        }
        Ok(Work::Cpu(f)) => {
            run_cpu(env, slot, started, cpu_in_scope(f, scope), deadline, signal)
                .instrument(span)
                .await
        }
    }
}

/// Records the attempt span's trace id on the `task` span.
#[cfg(feature = "otel")]
fn record_trace_id(span: &tracing::Span, scope: &AttemptScope) {
    if let Some(id) = scope.as_ref().and_then(crate::otel::trace_id) {
        span.record("trace_id", id);
    }
}

#[cfg(not(feature = "otel"))]
fn record_trace_id(_: &tracing::Span, _: &AttemptScope) {}

/// An attempt's future, with its span's context current while it is polled.
#[cfg(feature = "otel")]
fn in_scope<F: Future>(fut: F, scope: AttemptScope) -> impl Future<Output = F::Output> {
    use opentelemetry::context::FutureExt as _;
    fut.with_context(scope.unwrap_or_else(opentelemetry::Context::current))
}

/// An attempt's future, as it is without the `otel` feature.
#[cfg(not(feature = "otel"))]
fn in_scope<F: Future>(fut: F, _scope: AttemptScope) -> F {
    fut
}

/// A cpu-lane attempt's work, with its span's context current on the thread
/// that runs it.
type CpuWork = Box<dyn FnOnce() -> Result<Output, TaskError> + Send>;

#[cfg(feature = "otel")]
fn cpu_in_scope(f: CpuWork, scope: AttemptScope) -> CpuWork {
    match scope {
        Some(cx) => Box::new(move || {
            let _attached = cx.attach();
            f()
        }),
        None => f,
    }
}

#[cfg(not(feature = "otel"))]
fn cpu_in_scope(f: CpuWork, _scope: AttemptScope) -> CpuWork {
    f
}

/// Runs an io- or process-lane attempt: panics caught, timeout and cancel applied.
/// Dropping the future on timeout or cancel kills a process attempt's group.
async fn run_async<F>(
    env: Box<Envelope>,
    slot: Option<usize>,
    started: Instant,
    fut: F,
    signal: &WorkerSignal,
) -> Done
where
    F: Future<Output = Result<Output, TaskError>> + Send,
{
    let timeout = env.timeout;
    let end = {
        let run = async {
            let caught = AssertUnwindSafe(fut).catch_unwind();
            match timeout {
                Some(limit) => match tokio::time::timeout(limit, caught).await {
                    Ok(r) => from_caught(r),
                    Err(_) => Outcome::TimedOut,
                },
                None => from_caught(caught.await),
            }
        };
        tokio::pin!(run);
        let cancelled = signal.cancelled(|| env.job.task_cancelled(env.id));
        tokio::pin!(cancelled);
        // One poll of the attempt per wake-up (a `poll!` followed by a
        // `select!` would poll it twice on its first turn). Cancellation is
        // watched only once the attempt has to wait: most short attempts end
        // on their first poll.
        std::future::poll_fn(|cx| {
            if let Poll::Ready(end) = run.as_mut().poll(cx) {
                // An attempt that ends after its task was cancelled (say, a
                // handler that noticed the cancellation and returned) counts as
                // cancelled.
                return Poll::Ready(if env.job.task_cancelled(env.id) {
                    Outcome::Cancelled
                } else {
                    end
                });
            }
            match cancelled.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Outcome::Cancelled),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    };
    conclude(env, slot, Some(started), end)
}

/// Runs a cpu-lane attempt on a pool thread and watches it from the runtime.
async fn run_cpu(
    env: Box<Envelope>,
    slot: Option<usize>,
    started: Instant,
    f: Box<dyn FnOnce() -> Result<Output, TaskError> + Send>,
    deadline: Option<Instant>,
    signal: &WorkerSignal,
) -> Done {
    let (result_tx, mut result_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let sent = env.job.pool.cpu.execute(Box::new(move || {
        let r = catch_unwind(AssertUnwindSafe(f));
        let _ = result_tx.send(r);
        drop(done_tx);
    }));
    if sent.is_err() {
        let end = Outcome::Failed(TaskError::new("the cpu lane is shut down"));
        return conclude(env, slot, Some(started), end);
    }
    let expired = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    let (end, running) = tokio::select! {
        biased;
        r = &mut result_rx => match r {
            // A result after cancellation or after the deadline is not a success.
            Ok(_) if env.is_cancelled() => (Outcome::Cancelled, None),
            Ok(_) if deadline.is_some_and(|d| Instant::now() >= d) => (Outcome::TimedOut, None),
            Ok(r) => (from_caught(r), None),
            Err(_) => (Outcome::Failed(TaskError::new("the cpu thread was lost")), None),
        },
        _ = expired => (Outcome::TimedOut, Some(done_rx)),
        _ = signal.cancelled(|| env.job.task_cancelled(env.id)) => (Outcome::Cancelled, Some(done_rx)),
    };
    match running {
        // Rare (a cpu attempt abandoned at its timeout or cancel): boxed, so
        // every attempt's future stays small.
        Some(thread) => Box::pin(conclude_abandoned(env, slot, started, end, thread)).await,
        None => conclude(env, slot, Some(started), end),
    }
}

/// The wait before another attempt, or `None` when the outcome is final
/// ([`next_step`] decides; a task that must not start again is final).
fn retry_delay(env: &Envelope, end: &Ended) -> Option<Duration> {
    if env.attempt >= env.max_attempts || env.must_not_start() {
        return None;
    }
    let policy = &env.handler.config.retry;
    match next_step(end, env.attempt, env.max_attempts, policy, fastrand::f64()) {
        NextStep::Retry { delay } => Some(delay),
        _ => None,
    }
}

/// Decides what follows an attempt that is over: a retry (scheduled through
/// the dispatcher), or the final outcome, made and left in [`Done::result`] for
/// the worker to post. Synchronous, so awaiting an attempt never carries this
/// step's state.
pub(crate) fn conclude(
    env: Box<Envelope>,
    slot: Option<usize>,
    started: Option<Instant>,
    end: Ended,
) -> Done {
    match retry_delay(&env, &end) {
        Some(delay) => retry(env, slot, delay),
        None => {
            let release = env.release(slot);
            let settled = settle(env, started, end);
            Done {
                release,
                outcome: Some(settled.measured),
                retried: false,
                result: settled.result.map(|r| (settled.job, r)),
                ended_at: Some(settled.finished_at),
            }
        }
    }
}

/// Like [`conclude`] for a cpu attempt abandoned at its timeout or cancel while
/// its thread still runs: a final outcome is posted at once, and the slot is
/// freed (and a retry scheduled) only once the thread returns.
async fn conclude_abandoned(
    env: Box<Envelope>,
    slot: Option<usize>,
    started: Instant,
    end: Ended,
    thread: ThreadDone,
) -> Done {
    if let Some(delay) = retry_delay(&env, &end) {
        let _ = thread.await;
        return retry(env, slot, delay);
    }
    let release = env.release(slot);
    let settled = settle(env, Some(started), end);
    if let Some(result) = settled.result {
        post_now(&settled.job, result).await;
    }
    let _ = thread.await;
    Done {
        release,
        outcome: Some(settled.measured),
        retried: false,
        result: None,
        ended_at: None,
    }
}

/// Sends the task back to the dispatcher to run again after `delay`.
fn retry(env: Box<Envelope>, slot: Option<usize>, delay: Duration) -> Done {
    let at = Instant::now() + delay;
    let events = env.job.pool.events.clone();
    let _ = events.send(Event::Retry { env, slot, at });
    Done {
        release: None,
        outcome: None,
        retried: true,
        result: None,
        ended_at: None,
    }
}

/// Reports a task that never started (cancelled while waiting, or never reached
/// before shutdown). The dispatcher has already freed its key.
pub(crate) fn finish_unstarted(env: Box<Envelope>) {
    tokio::spawn(deliver_unstarted(env));
}

/// Reports a task that never started, in place.
pub(crate) async fn deliver_unstarted(mut env: Box<Envelope>) {
    env.release_permit();
    let settled = settle(env, None, Outcome::Cancelled);
    if let Some(result) = settled.result {
        post_now(&settled.job, result).await;
    }
    let (kind, latency) = settled.measured;
    settled
        .job
        .pool
        .board
        .metrics
        .unstarted
        .lock()
        .outcome(kind, latency);
}

/// A task's final result, made.
struct Settled {
    /// What the metrics record: the outcome's kind and the task's latency.
    measured: (OutcomeKind, Duration),
    finished_at: Instant,
    job: Arc<JobShared>,
    /// The result for the job's result queue; `None` when it went to the
    /// task's own reply channel (or the job has no queue).
    result: Option<TaskResult>,
}

/// Makes the task's result and sends it to the task's reply channel, if it has
/// one, or to the job's sink, if it has one; otherwise leaves it for the job's
/// result queue.
#[allow(clippy::boxed_local)] // an envelope is unsized (its params are inline): it only exists boxed
fn settle(env: Box<Envelope>, started: Option<Instant>, outcome: Outcome<Output>) -> Settled {
    let finished_at = Instant::now();
    let measured = (
        outcome.kind(),
        finished_at.saturating_duration_since(env.submitted_at),
    );
    env.job.count_outcome(measured.0);
    let Envelope {
        id,
        handler,
        key,
        attempt,
        submitted_at,
        job,
        reply,
        ..
    } = *env;
    let result = TaskResult {
        id,
        handler: handler.name.clone(),
        ordering_key: key,
        attempts: attempt,
        outcome,
        submitted_at,
        started_at: started,
        finished_at,
    };
    let result = match (reply, &job.sink) {
        (Some(reply), _) => {
            let _ = reply.send(result);
            None
        }
        (None, Some(sink)) => {
            sink.complete(result);
            None
        }
        (None, None) if job.results.is_some() => Some(result),
        (None, None) => None,
    };
    Settled {
        measured,
        finished_at,
        job,
        result,
    }
}

/// Sends a result to its job's result queue now, waiting for room.
async fn post_now(job: &JobShared, result: TaskResult) {
    if let Some(queue) = &job.results {
        queue.send(result).await;
    }
}
