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

use conveyor_core::{next_step, NextStep, Outcome, OutcomeKind, TaskError, TaskId};

use crate::engine::completion::{AttemptScope, AttemptStart};
use crate::engine::context::TaskContext;
use crate::engine::envelope::{Envelope, Event, Release};
use crate::engine::handler_name::HandlerName;
use crate::engine::job_ref::JobRef;
use crate::engine::job_state::JobState;
use crate::engine::outbox::Outbox;
use crate::engine::signal::WorkerSignal;
use crate::engine::task_result::TaskResult;
use crate::engine::work::{run_process, Work};
use crate::output::Output;

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

/// Resolves when an abandoned cpu attempt's thread returns.
pub(crate) type ThreadDone = oneshot::Receiver<()>;

/// How an attempt's run ended, for its worker to conclude.
pub(crate) struct Ran {
    /// What the attempt ended with.
    pub(crate) end: Ended,
    /// Set when a cpu attempt was abandoned at its timeout or cancel: its
    /// thread still runs until this resolves.
    pub(crate) thread: Option<ThreadDone>,
}

impl From<Ended> for Ran {
    fn from(end: Ended) -> Self {
        Ran { end, thread: None }
    }
}

/// What concluding an attempt left for its worker to do and record.
pub(crate) struct Done {
    /// The dispatcher slot (and key) to free, for a managed task that is final.
    pub(crate) release: Option<Release>,
    /// A final result the outbox had no room for, with what is left of its
    /// task's envelope: the worker waits for room in its job's result queue
    /// to post it.
    pub(crate) unsent: Option<(Box<Envelope>, TaskResult)>,
    /// When the final outcome was decided, if it was just now.
    pub(crate) ended_at: Option<Instant>,
}

/// The span of the next attempt of `env`, which its worker enters while it
/// runs and concludes the attempt. Info level, so every event of the attempt
/// (the handler's own, and its settlement's) carries the task's id (and, with
/// the `otel` feature, the attempt's trace id) under the default filter.
///
/// With no subscriber taking info, it is [`tracing::Span::none`]: a disabled
/// span built by the macro keeps its metadata, and when some dependency turns
/// on tracing's `log` feature (sqlx does) each of its creation, entries,
/// exits and drop then goes through `log`'s checks — a no-op task took 12%
/// more instructions with the feature than without it — where entering no
/// span costs nothing.
pub(crate) fn attempt_span(env: &Envelope, start: &AttemptStart) -> tracing::Span {
    if !tracing::level_enabled!(tracing::Level::INFO) {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "task",
        id = env.id.0,
        handler = %env.handler().name,
        attempt = start.attempt.unwrap_or(env.attempt + 1),
        trace_id = tracing::field::Empty
    );
    record_trace_id(&span, &start.scope);
    span
}

/// Runs the next attempt of `env`, starting at `started`, and says how it
/// ended; the worker then concludes it ([`conclude`]). A worker awaits it in
/// place: one state machine for every lane, so an attempt costs no
/// allocation of its own, and what it returns is small.
pub(crate) async fn run_attempt(
    env: &mut Envelope,
    job: Arc<JobRef>,
    started: Instant,
    signal: &WorkerSignal,
    start: AttemptStart,
) -> Ran {
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
        job,
        deadline,
    };
    let (handler, params) = env.handler_and_params();
    let work = catch_unwind(AssertUnwindSafe(|| handler.work(params, last, ctx)));
    // The envelope's params are not `Sync`: what the attempt watches while
    // it waits is borrowed apart from them.
    let task = Watched {
        job: &env.job,
        id: env.id,
        timeout: env.timeout,
    };
    match work {
        Err(panic) => Outcome::Panicked(panic_message(&*panic)).into(),
        Ok(Work::Failed(e)) => Outcome::Failed(e).into(),
        Ok(Work::Io(fut)) => run_async(task, in_scope(fut, scope), signal).await.into(),
        Ok(Work::Process(cmd)) => {
            let fut = Box::pin(run_process(cmd));
            run_async(task, in_scope(fut, scope), signal).await.into()
        }
        Ok(Work::Cpu(f)) => run_cpu(task, cpu_in_scope(f, scope), deadline, signal).await,
    }
}

/// What a waiting attempt watches of its task.
#[derive(Clone, Copy)]
struct Watched<'a> {
    job: &'a JobState,
    id: TaskId,
    timeout: Option<Duration>,
}

impl Watched<'_> {
    fn is_cancelled(&self) -> bool {
        self.job.task_cancelled(self.id)
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
async fn run_async<F>(task: Watched<'_>, fut: F, signal: &WorkerSignal) -> Ended
where
    F: Future<Output = Result<Output, TaskError>> + Send,
{
    let timeout = task.timeout;
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
    let cancelled = signal.cancelled(|| task.is_cancelled());
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
            return Poll::Ready(if task.is_cancelled() {
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
}

/// Runs a cpu-lane attempt on a pool thread and watches it from the runtime.
async fn run_cpu(
    task: Watched<'_>,
    f: CpuWork,
    deadline: Option<Instant>,
    signal: &WorkerSignal,
) -> Ran {
    let (result_tx, mut result_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let sent = task.job.engine.cpu.execute(Box::new(move || {
        let r = catch_unwind(AssertUnwindSafe(f));
        let _ = result_tx.send(r);
        drop(done_tx);
    }));
    if sent.is_err() {
        return Outcome::Failed(TaskError::new("the cpu lane is shut down")).into();
    }
    let expired = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    let (end, thread) = tokio::select! {
        biased;
        r = &mut result_rx => match r {
            // A result after cancellation or after the deadline is not a success.
            Ok(_) if task.is_cancelled() => (Outcome::Cancelled, None),
            Ok(_) if deadline.is_some_and(|d| Instant::now() >= d) => (Outcome::TimedOut, None),
            Ok(r) => (from_caught(r), None),
            Err(_) => (Outcome::Failed(TaskError::new("the cpu thread was lost")), None),
        },
        _ = expired => (Outcome::TimedOut, Some(done_rx)),
        _ = signal.cancelled(|| task.is_cancelled()) => (Outcome::Cancelled, Some(done_rx)),
    };
    Ran { end, thread }
}

/// The wait before another attempt, or `None` when the outcome is final
/// ([`next_step`] decides; a task that must not start again is final).
fn retry_delay(env: &Envelope, end: &Ended) -> Option<Duration> {
    if env.attempt >= env.max_attempts || env.must_not_start() {
        return None;
    }
    let policy = &env.handler().config.retry;
    match next_step(end, env.attempt, env.max_attempts, policy, fastrand::f64()) {
        NextStep::Retry { delay } => Some(delay),
        _ => None,
    }
}

/// Decides what follows an attempt that is over: a retry (scheduled through
/// the dispatcher), or the final outcome, made and left in the worker's
/// `outbox` (or in [`Done::unsent`] when its job's result queue has no room).
/// Either is counted in the outbox first, so a job's results never reach its
/// result thread before their counts reach the pool's metrics.
pub(crate) fn conclude(
    mut env: Box<Envelope>,
    slot: Option<usize>,
    started: Option<Instant>,
    end: Ended,
    outbox: &mut Outbox<'_>,
) -> Done {
    match retry_delay(&env, &end) {
        Some(delay) => {
            outbox.count(None, true);
            retry(env, slot, delay)
        }
        None => {
            let release = env.release(slot);
            let settled = settle(&mut env, started, end, Some(outbox));
            let unsent = match settled.unsent {
                Some(result) => Some((env, result)),
                None => {
                    outbox.let_go(env);
                    None
                }
            };
            Done {
                release,
                unsent,
                ended_at: Some(settled.finished_at),
            }
        }
    }
}

/// Like [`conclude`] for a cpu attempt abandoned at its timeout or cancel while
/// its thread still runs: a final outcome is posted at once, and the slot is
/// freed (and a retry scheduled) only once the thread returns. The outbox
/// holds nothing on entry.
pub(crate) async fn conclude_abandoned(
    mut env: Box<Envelope>,
    slot: Option<usize>,
    started: Instant,
    end: Ended,
    thread: ThreadDone,
    outbox: &mut Outbox<'_>,
) -> Done {
    if let Some(delay) = retry_delay(&env, &end) {
        let _ = thread.await;
        outbox.count(None, true);
        return retry(env, slot, delay);
    }
    let release = env.release(slot);
    let settled = settle(&mut env, Some(started), end, None);
    if let Some(result) = settled.unsent {
        // Its count is published before the result can be seen.
        outbox.flush();
        post_now(&env.job, result).await;
    }
    let _ = thread.await;
    Done {
        release,
        unsent: None,
        ended_at: None,
    }
}

/// Sends the task back to the dispatcher to run again after `delay`.
fn retry(env: Box<Envelope>, slot: Option<usize>, delay: Duration) -> Done {
    let at = Instant::now() + delay;
    let events = env.job.engine.events.clone();
    let _ = events.send(Event::Retry { env, slot, at });
    Done {
        release: None,
        unsent: None,
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
    let settled = settle(&mut env, None, Outcome::Cancelled, None);
    // Counted before the result can be seen.
    env.job
        .engine
        .board
        .metrics
        .unstarted
        .lock()
        .outcome(settled.kind, settled.latency);
    if let Some(result) = settled.unsent {
        post_now(&env.job, result).await;
    }
}

/// A task's final result, made and sent on its way.
struct Settled {
    /// The outcome's kind, for the metrics.
    kind: OutcomeKind,
    /// From submission to outcome.
    latency: Duration,
    finished_at: Instant,
    /// The result, when it is for the job's result queue and no outbox took
    /// it: the caller waits for room in the queue to send it.
    unsent: Option<TaskResult>,
}

/// Makes the task's result and sends it to the task's reply channel, if it has
/// one, or to the job's sink, if it has one, or into `outbox` when the job's
/// result queue has room for it now; otherwise leaves it in
/// [`Settled::unsent`]. The result is made where it goes, not moved there.
/// The result takes over the envelope's handler, key and reply channel; the
/// caller frees what is left of the envelope (and its job reference), in
/// bursts where it can ([`Outbox::let_go`]).
fn settle(
    env: &mut Envelope,
    started: Option<Instant>,
    outcome: Outcome<Output>,
    mut outbox: Option<&mut Outbox<'_>>,
) -> Settled {
    let finished_at = Instant::now();
    let kind = outcome.kind();
    let latency = finished_at.saturating_duration_since(env.submitted_at);
    env.job.count_outcome(kind);
    let handler = env.take_handler();
    let key = env.key.take();
    let reply = env.reply.take();
    let (id, attempts, submitted_at) = (env.id, env.attempt, env.submitted_at);
    let job = &env.job;
    let result = move || TaskResult {
        id,
        handler: HandlerName::new(handler),
        ordering_key: key,
        attempts,
        outcome,
        submitted_at,
        started_at: started,
        finished_at,
    };
    if let Some(outbox) = outbox.as_deref_mut() {
        outbox.count(Some((kind, latency)), false);
    }
    let mut unsent = None;
    if let Some(reply) = reply {
        // Straight to user code: the result lets go of its handler first.
        let mut result = result();
        result.handler.detach();
        let _ = reply.send(result);
    } else if let Some(sink) = &job.sink {
        sink.complete(result());
    } else if job.results.is_some() {
        match outbox {
            Some(outbox) => {
                if outbox.try_reserve(job) {
                    outbox.keep_made(job, result);
                } else {
                    unsent = Some(result());
                }
            }
            None => unsent = Some(result()),
        }
    }
    Settled {
        kind,
        latency,
        finished_at,
        unsent,
    }
}

/// Sends a result to its job's result queue now, waiting for room.
async fn post_now(job: &JobState, result: TaskResult) {
    if let Some(queue) = &job.results {
        queue.send(result).await;
    }
}
