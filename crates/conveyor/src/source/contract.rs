//! The contract between a source and the runner that executes its tasks.
//!
//! A source feeds tasks and takes their outcomes back; the runner does the
//! rest, written once for every source: fetching only up to the free slots,
//! keeping leases alive, settling outcomes in batches, draining on stop. A
//! source says how to fetch, renew and settle, and nothing else: a durable
//! backend, a message broker or a stream all fit, because what it needs to
//! settle a task travels as an opaque [`Source::Receipt`] (a lease token, a
//! delivery tag, a reply subject, a Kafka coordinate).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use conveyor_core::async_trait;

use conveyor_core::{Error, FinishAction, FinishMark, NewTask, OutcomeKind, TaskId, TraceContext};

use super::control::Control;

/// Where a source's retries run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retries {
    /// The runner runs one attempt per delivery and settles a failure as
    /// [`FinishAction::Retry`]: the source delivers the task again after the
    /// delay, maybe to another worker (durable queues).
    BySource,
    /// The runner retries in place, with the handler's policy, and settles
    /// only the final outcome (streams, where a record cannot be put back).
    InPlace,
}

/// One task fetched from a source.
#[derive(Debug, Clone)]
pub struct Delivery<P, R> {
    /// The task's id, unique among the source's unsettled tasks: the engine
    /// runs the task under it (there is no second id).
    pub id: TaskId,
    /// The name of the handler to run.
    pub handler: String,
    /// What the handler's params are decoded from.
    pub payload: P,
    /// The queue (or topic) it came from, for counts and callbacks.
    pub queue: Arc<str>,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Attempts the task may have in all, if the source says (otherwise the
    /// handler's retry policy decides).
    pub max_attempts: Option<u32>,
    /// The longest an attempt may run.
    pub timeout: Option<Duration>,
    /// What the source needs to settle the task.
    pub receipt: R,
    /// When the task became ready to run, if the source knows: its due
    /// time on a durable queue (enqueued, or the end of a delay or backoff),
    /// a record's timestamp on a stream. The `Started` event reports the
    /// time from then to the attempt's start.
    pub ready_at: Option<SystemTime>,
    /// The trace context the task carries from its enqueue, if any: with
    /// the `otel` feature, each attempt's span links to it.
    pub trace: Option<TraceContext>,
}

/// What the runner tells a source about one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement<R> {
    /// The task.
    pub id: TaskId,
    /// Its handler's name.
    pub handler: Arc<str>,
    /// The delivery's receipt.
    pub receipt: R,
    /// Attempts run for this delivery (0: it never started).
    pub attempts: u32,
    /// How the last attempt ended; `None` when it never ran (no such handler,
    /// undecodable payload, handed back unstarted).
    pub outcome: Option<OutcomeKind>,
    /// What to do with the task.
    pub action: FinishAction,
    /// Tasks to enqueue in the same atomic step as the settlement, all or
    /// none (only for a source whose [`Source::follow_ups`] is true; the
    /// runner gives a success's follow-ups, and none with any other action).
    pub follow_ups: Vec<NewTask>,
}

/// Anything that feeds a runner tasks and takes their outcomes back.
#[async_trait]
pub trait Source: Send + Sync + 'static {
    /// What a delivery carries for its handler (bytes, a broker message).
    type Payload: Send + Sync + 'static;
    /// What settling one task needs; cloned for renewals and retried settles.
    type Receipt: Clone + Send + Sync + 'static;

    /// Called once when a run begins, with the way to cancel the source's
    /// own running tasks (default: not kept).
    fn attach(&self, control: Control) {
        let _ = control;
    }

    /// Where retries run (default: by the source).
    fn retries(&self) -> Retries {
        Retries::BySource
    }

    /// True when [`Source::settle`] can enqueue a settlement's follow-up
    /// tasks in the same atomic step (default: false, and a handler's
    /// [`TaskContext::follow_up`](crate::TaskContext::follow_up) is refused
    /// as unsupported).
    fn follow_ups(&self) -> bool {
        false
    }

    /// How many fetches the runner may have out at once (default 1). A
    /// source whose store commits requests that arrive together in one step
    /// (group commit), or serves them side by side (a connection pool),
    /// says more: the slots freed while one fetch is answered are asked for
    /// at once, instead of in a commit of their own after it. The answers
    /// are started in the order the fetches were sent.
    fn fetches_in_flight(&self) -> usize {
        1
    }

    /// Whether the runner splits its slots among its fetches out (default
    /// false; only read when [`Source::fetches_in_flight`] is above 1). A
    /// source that serves fetches one after another, each at a cost per task
    /// (one server thread that requests queue for, as on Redis), says true:
    /// each fetch then asks for an even share of the slots at most, so the
    /// source serves one while the tasks of the one before start, and a
    /// fetch beside one out waits for a full share to be free rather than
    /// going out for the first slot that frees. A source that pays per fetch
    /// rather than per task (a commit) is best asked for every free slot at
    /// once: the default.
    fn fetches_split(&self) -> bool {
        false
    }

    /// Takes up to `max` tasks (`max >= 1`) that may start now. An empty
    /// answer means none is ready: the runner then waits with
    /// [`Source::wait_for_work`].
    async fn fetch(&self, max: usize)
        -> Result<Vec<Delivery<Self::Payload, Self::Receipt>>, Error>;

    /// Waits up to `timeout` for a sign that [`Source::fetch`] may find work.
    /// Returns `false` at once when the source cannot signal: the runner then
    /// sleeps for the rest of the poll interval itself.
    async fn wait_for_work(&self, timeout: Duration) -> bool {
        let _ = timeout;
        false
    }

    /// How long a fetched task stays this runner's without a renewal; `None`
    /// when there is nothing to renew.
    fn lease(&self) -> Option<Duration> {
        None
    }

    /// Extends the claims on running tasks: one answer per receipt, `false`
    /// for a claim that is lost (the runner then cancels the attempt: its
    /// outcome could not be settled anyway).
    async fn renew(&self, receipts: &[Self::Receipt]) -> Result<Vec<bool>, Error> {
        let _ = receipts;
        Err(Error::Unsupported(
            "this source has no leases to renew".into(),
        ))
    }

    /// True when the source can signal that a task it handed out was
    /// settled by someone else, such as an operator who cancelled it while
    /// it ran ([`Source::settle_mark`], [`Source::settled_elsewhere`]): the
    /// runner then stops such an attempt at once instead of at the next
    /// renewal. Default false.
    fn signals_settles(&self) -> bool {
        false
    }

    /// Where the source's settle signs stand: take it *before* checking the
    /// claims (renewing them), then wait with
    /// [`Source::settled_elsewhere`] from it, so a settle that lands between
    /// the check and the wait is signalled. `None` while the source cannot
    /// signal (its listener is down): the runner tries again later.
    async fn settle_mark(&self) -> Option<FinishMark> {
        None
    }

    /// Waits up to `timeout` for a sign, after `since`, that one of `ids`
    /// (tasks this runner holds) may have been settled by someone else:
    /// true when one came (it may be spurious: the renewal that follows
    /// decides), false when none came in time.
    async fn settled_elsewhere(
        &self,
        ids: &[TaskId],
        since: FinishMark,
        timeout: Duration,
    ) -> bool {
        let _ = (ids, since);
        tokio::time::sleep(timeout).await;
        false
    }

    /// Applies settlements, each on its own: an item fails with
    /// [`Error::StaleLease`] when its claim was lost. The outer error means
    /// nothing was applied: the runner tries the batch again.
    async fn settle(
        &self,
        batch: Vec<Settlement<Self::Receipt>>,
    ) -> Result<Vec<Result<(), Error>>, Error>;
}
