//! What the API reads and writes: JSON shapes of its own, each with its
//! OpenAPI schema derived from the type, so the document cannot drift from
//! the code. The backend's types stay free of HTTP concerns; these views
//! are built from them here.

use std::collections::BTreeMap;

use conveyor_core::{AttemptOutcome, AttemptRecord, QueueStats, TaskRecord, WorkerInfo};
use conveyor_core::{TaskState, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::lenient;

/// The longest delay or attempt time limit a task may ask for, in
/// milliseconds: 100 years.
pub(crate) const MAX_MILLIS: u64 = 3_153_600_000_000;

/// A task to enqueue.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueRequest {
    /// The handler's name: at most 200 characters, no control character.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
        example = "send_email"
    )]
    pub handler: String,
    /// The params, any JSON (default `null`).
    #[serde(default)]
    pub params: Value,
    /// The queue (default `default`): at most 200 characters, no control
    /// character.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub queue: Option<String>,
    /// Do not start before this delay, in milliseconds (at most 100 years).
    #[schema(minimum = 0, maximum = 3_153_600_000_000_i64)]
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub delay_ms: Option<u64>,
    /// Do not start before this time: RFC 3339 with its UTC offset, e.g.
    /// `2026-11-27T22:30:00Z` (a time past runs at once). With `delay_ms`
    /// too, the later of the two.
    #[schema(format = DateTime)]
    #[serde(default)]
    pub run_at: Option<String>,
    /// Priority: higher first (default 0).
    #[schema(minimum = -2_147_483_648_i64, maximum = 2_147_483_647_i64)]
    #[serde(default, deserialize_with = "lenient::opt_i32")]
    pub priority: Option<i32>,
    /// Attempts in all, counting the first (default 3).
    #[schema(minimum = 1, maximum = 4_294_967_295_i64)]
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    pub max_attempts: Option<u32>,
    /// Time limit of one attempt, in milliseconds (at most 100 years).
    #[schema(minimum = 1, maximum = 3_153_600_000_000_i64)]
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub timeout_ms: Option<u64>,
    /// Keep its record and result this long once it has finished, however
    /// it ends, in milliseconds (at most 100 years; over its handler's and
    /// the workers' retention). A backend that cannot refuses the task.
    #[schema(minimum = 0, maximum = 3_153_600_000_000_i64)]
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub keep_ms: Option<u64>,
    /// While an unfinished task has this key, enqueueing returns it instead.
    #[schema(min_length = 1)]
    pub unique_key: Option<String>,
    /// Tasks with the same key run one at a time, in enqueue order.
    #[schema(min_length = 1)]
    pub ordering_key: Option<String>,
}

/// Several tasks to enqueue in one atomic step (where the backend allows).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueManyRequest {
    /// The tasks, at most 10,000.
    #[schema(min_items = 1, max_items = 10_000)]
    pub tasks: Vec<EnqueueRequest>,
}

/// An enqueued task.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EnqueuedView {
    /// Its id.
    pub id: String,
    /// True when a unique key matched an unfinished task, whose id this is.
    pub duplicate: bool,
}

/// Tasks enqueued together, in request order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EnqueuedManyView {
    /// One per requested task.
    pub tasks: Vec<EnqueuedView>,
}

/// A task as the store holds it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskView {
    /// Its id (a decimal string: ids use all 64 bits, more than a JSON
    /// number holds exactly in many languages).
    pub id: String,
    /// Its queue.
    pub queue: String,
    /// Its handler.
    pub handler: String,
    /// Where it is in its life.
    pub state: StateName,
    /// The params: their JSON, or the bytes as text when they are not JSON.
    pub params: Value,
    /// Priority (higher first).
    pub priority: i32,
    /// Attempts so far.
    pub attempts: u32,
    /// Attempts in all.
    pub max_attempts: u32,
    /// When it may run next (RFC 3339).
    pub run_at: String,
    /// Its unique key.
    pub unique_key: Option<String>,
    /// Its ordering key.
    pub ordering_key: Option<String>,
    /// The result of a completed task, as [`TaskView::params`].
    pub result: Option<Value>,
    /// The last error.
    pub error: Option<String>,
    /// When it was enqueued (RFC 3339).
    pub created_at: String,
    /// When it finished (RFC 3339).
    pub finished_at: Option<String>,
    /// How long it is kept once finished, in milliseconds, if it was
    /// enqueued with a keep of its own.
    pub keep_ms: Option<u64>,
    /// When the finished task may be deleted (RFC 3339), if its own keep
    /// or its handler's retention set a time; otherwise the workers'
    /// retention applies.
    pub expires_at: Option<String>,
    /// Every attempt, oldest first: the latest settled ones the store
    /// keeps, then the running one or the one that completed the task.
    /// Empty before the first attempt, and always on a backend that keeps
    /// no history.
    pub history: Vec<AttemptView>,
}

/// One attempt of a task.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttemptView {
    /// Its number, from 1.
    pub attempt: u32,
    /// The id of the worker that ran it (as in `/api/v1/workers`), if the
    /// reservation named one.
    pub worker: Option<String>,
    /// When it was reserved (RFC 3339).
    pub started_at: String,
    /// When it was settled (RFC 3339); absent while it runs.
    pub ended_at: Option<String>,
    /// How long it ran (so far, while it runs), in milliseconds.
    pub duration_ms: u64,
    /// How it ended.
    pub outcome: AttemptOutcomeName,
    /// Its error, or its handler's reason to discard the task (at most
    /// 1,024 characters).
    pub error: Option<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcomeName {
    /// It runs now.
    Running,
    /// The handler succeeded.
    Succeeded,
    /// The handler failed; the task was retried.
    Failed,
    /// The handler failed; the task died.
    DeadLettered,
    /// The handler discarded the task.
    Discarded,
    /// Handed back unstarted (the attempt did not count).
    Released,
    /// The worker's lease ran out.
    LeaseExpired,
    /// An operator cancelled the task while it ran.
    Cancelled,
}

impl From<&AttemptOutcome> for AttemptOutcomeName {
    fn from(o: &AttemptOutcome) -> Self {
        match o {
            AttemptOutcome::Running => AttemptOutcomeName::Running,
            AttemptOutcome::Succeeded => AttemptOutcomeName::Succeeded,
            AttemptOutcome::Failed { .. } => AttemptOutcomeName::Failed,
            AttemptOutcome::DeadLettered { .. } => AttemptOutcomeName::DeadLettered,
            AttemptOutcome::Discarded { .. } => AttemptOutcomeName::Discarded,
            AttemptOutcome::Released => AttemptOutcomeName::Released,
            AttemptOutcome::LeaseExpired => AttemptOutcomeName::LeaseExpired,
            AttemptOutcome::Cancelled => AttemptOutcomeName::Cancelled,
        }
    }
}

impl AttemptView {
    /// `a` as shown, its duration measured to `now` while it runs.
    pub(crate) fn new(a: &AttemptRecord, now: Timestamp) -> Self {
        AttemptView {
            attempt: a.attempt,
            worker: a.worker.clone(),
            started_at: rfc3339(a.started_at),
            ended_at: a.ended_at.map(rfc3339),
            duration_ms: u64::try_from(a.duration(now).as_millis()).unwrap_or(u64::MAX),
            outcome: (&a.outcome).into(),
            error: a.outcome.error().map(str::to_string),
        }
    }
}

/// A task state's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StateName {
    /// Waiting for its run-at time.
    Scheduled,
    /// Ready to be reserved.
    Available,
    /// Reserved by a worker.
    Running,
    /// Waiting for its backoff after a failed attempt.
    Retrying,
    /// Finished successfully.
    Completed,
    /// Failed for good.
    Dead,
    /// Cancelled, or discarded by its handler.
    Cancelled,
}

impl From<TaskState> for StateName {
    fn from(s: TaskState) -> Self {
        match s {
            TaskState::Scheduled => StateName::Scheduled,
            TaskState::Available => StateName::Available,
            TaskState::Running => StateName::Running,
            TaskState::Retrying => StateName::Retrying,
            TaskState::Completed => StateName::Completed,
            TaskState::Dead => StateName::Dead,
            TaskState::Cancelled => StateName::Cancelled,
        }
    }
}

impl From<StateName> for TaskState {
    fn from(s: StateName) -> Self {
        match s {
            StateName::Scheduled => TaskState::Scheduled,
            StateName::Available => TaskState::Available,
            StateName::Running => TaskState::Running,
            StateName::Retrying => TaskState::Retrying,
            StateName::Completed => TaskState::Completed,
            StateName::Dead => TaskState::Dead,
            StateName::Cancelled => TaskState::Cancelled,
        }
    }
}

/// Bytes as JSON when they are JSON, else as text.
fn json_or_text(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// A time as RFC 3339, in UTC.
pub(crate) fn rfc3339(t: Timestamp) -> String {
    match t.to_system_time() {
        Some(t) => humantime::format_rfc3339_millis(t).to_string(),
        None => "1970-01-01T00:00:00.000Z".to_string(),
    }
}

impl From<TaskRecord> for TaskView {
    fn from(r: TaskRecord) -> Self {
        TaskView {
            id: r.id.0.to_string(),
            queue: r.queue,
            handler: r.handler,
            state: r.state.into(),
            params: json_or_text(&r.payload),
            priority: r.priority,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            run_at: rfc3339(r.run_at),
            unique_key: r.unique_key,
            ordering_key: r.ordering_key,
            result: r.result.as_deref().map(json_or_text),
            error: r.error,
            created_at: rfc3339(r.created_at),
            finished_at: r.finished_at.map(rfc3339),
            keep_ms: r
                .keep
                .map(|k| u64::try_from(k.as_millis()).unwrap_or(u64::MAX)),
            expires_at: r.expires_at.map(rfc3339),
            history: {
                let now = Timestamp::now();
                r.history.iter().map(|a| AttemptView::new(a, now)).collect()
            },
        }
    }
}

/// A task and whether it has finished (for a wait that may time out).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WaitView {
    /// True when the task finished (completed, dead or cancelled); false
    /// when the wait timed out first.
    pub finished: bool,
    /// The task as it was when the wait ended.
    pub task: TaskView,
}

/// How long to wait.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Milliseconds to wait at most (default and most: 20,000).
    #[param(minimum = 0, maximum = 20_000)]
    pub timeout_ms: Option<u64>,
}

/// What to list.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Tasks in this state (default `available`).
    pub state: Option<StateName>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this handler.
    pub handler: Option<String>,
    /// Only tasks whose params or error hold this text (ignoring ASCII
    /// case; at most 256 bytes are used).
    pub search: Option<String>,
    /// `oldest` (default) or `newest` first.
    pub order: Option<OrderName>,
    /// Start after this task id (the `next_after` of the page before).
    #[param(pattern = "^[0-9]{1,19}$")]
    pub after: Option<String>,
    /// At most this many (default 50, at most 1,000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// The order of a listing.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderName {
    /// Oldest first.
    Oldest,
    /// Newest first.
    Newest,
}

/// A page of tasks.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskPage {
    /// The tasks.
    pub tasks: Vec<TaskView>,
    /// Pass as `after` for the next page; absent on the last page. A page
    /// with a handler or a search may hold fewer tasks than its limit and
    /// still have a next one: it read as many candidates as one page may
    /// (see `scanned`) and stopped at this task.
    pub next_after: Option<String>,
    /// Candidate tasks read to make the page.
    pub scanned: u64,
}

/// Which tasks to count.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CountQuery {
    /// Tasks in this state (default `available`).
    pub state: Option<StateName>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this handler.
    pub handler: Option<String>,
    /// Only tasks whose params or error hold this text.
    pub search: Option<String>,
}

/// How many tasks match.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MatchCountView {
    /// The count; a lower bound when `exact` is false.
    pub count: u64,
    /// False when counting stopped after 100,000 candidates: at least
    /// `count` match.
    pub exact: bool,
}

/// Which dead tasks to run again.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequeueMatchingRequest {
    /// Only this queue's.
    pub queue: Option<String>,
    /// Only this handler's.
    pub handler: Option<String>,
    /// Only those whose params or error hold this text.
    pub search: Option<String>,
}

/// One queue's counts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueView {
    /// The queue.
    pub queue: String,
    /// Tasks by state (states with none are absent).
    pub counts: BTreeMap<String, u64>,
    /// When the oldest ready task became ready (RFC 3339).
    pub oldest_ready: Option<String>,
}

impl From<QueueStats> for QueueView {
    fn from(q: QueueStats) -> Self {
        QueueView {
            counts: q
                .counts
                .iter()
                .map(|(s, n)| (s.as_str().to_string(), *n))
                .collect(),
            oldest_ready: q.oldest_ready.map(rfc3339),
            queue: q.queue,
        }
    }
}

/// One queue's counts and whether it is paused.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueStateView {
    /// The queue.
    pub queue: String,
    /// Tasks by state (states with none are absent).
    pub counts: BTreeMap<String, u64>,
    /// When the oldest ready task became ready (RFC 3339).
    pub oldest_ready: Option<String>,
    /// True while the queue is paused: workers take none of its tasks.
    pub paused: bool,
}

impl QueueStateView {
    pub(crate) fn new(q: QueueView, paused: bool) -> Self {
        QueueStateView {
            queue: q.queue,
            counts: q.counts,
            oldest_ready: q.oldest_ready,
            paused,
        }
    }

    /// A queue known only as paused (no task yet).
    pub(crate) fn empty(queue: String) -> Self {
        QueueStateView {
            queue,
            counts: BTreeMap::new(),
            oldest_ready: None,
            paused: false,
        }
    }
}

/// Every queue, sorted by name.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueuesView {
    /// The queues the backend counts, and the paused ones with no task.
    pub queues: Vec<QueueStateView>,
    /// True when the backend can pause queues (without it, none is paused).
    pub pausing: bool,
}

/// What pausing or resuming a queue did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueControlView {
    /// The queue.
    pub queue: String,
    /// Whether it is paused now.
    pub paused: bool,
    /// False when it was in that state already (nothing changed).
    pub changed: bool,
}

/// Every queue's counts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatsView {
    /// By queue name.
    pub queues: Vec<QueueView>,
    /// Tasks waiting for a handler no live worker of their queue has (a
    /// rolling deploy, a handler removed), by queue and handler; empty when
    /// the backend keeps no worker registry.
    pub unserved: Vec<UnservedView>,
}

/// Tasks of one handler in one queue that no live worker can run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UnservedView {
    /// The queue.
    pub queue: String,
    /// The handler no live worker of the queue has.
    pub handler: String,
    /// Its tasks waiting, among the first 1,000 waiting tasks of the queue.
    pub waiting: u64,
}

impl From<conveyor_core::Unserved> for UnservedView {
    fn from(u: conveyor_core::Unserved) -> Self {
        UnservedView {
            queue: u.queue,
            handler: u.handler,
            waiting: u.waiting,
        }
    }
}

/// A worker's latest heartbeat.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkerView {
    /// Unique for its life: `host:pid:random`.
    pub id: String,
    /// Its host.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// The conveyor version it runs.
    pub version: String,
    /// The queues it takes from.
    pub queues: Vec<String>,
    /// Tasks it runs at once at most.
    pub slots: u32,
    /// Attempts running now.
    pub running: u64,
    /// Tasks it holds now.
    pub reserved: u64,
    /// Tasks it completed.
    pub completed: u64,
    /// Attempts it settled as failed.
    pub failed: u64,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Its last heartbeat (RFC 3339).
    pub heartbeat_at: String,
    /// Alive: not stopped, and heard from lately.
    pub alive: bool,
    /// It stopped cleanly.
    pub stopped: bool,
}

impl WorkerView {
    /// The view of `w` as of `now`.
    pub(crate) fn new(w: WorkerInfo, now: Timestamp) -> Self {
        WorkerView {
            alive: w.is_alive(now),
            id: w.id,
            host: w.host,
            pid: w.pid,
            version: w.version,
            queues: w.queues,
            slots: w.slots,
            running: w.running,
            reserved: w.reserved,
            completed: w.completed,
            failed: w.failed,
            started_at: rfc3339(w.started_at),
            heartbeat_at: rfc3339(w.heartbeat_at),
            stopped: w.stopped,
        }
    }
}

/// Workers heard from in the last day, most recent heartbeat first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkersView {
    /// The workers.
    pub workers: Vec<WorkerView>,
}

/// A task id: a decimal string (ids use all 63 bits, more than a JSON number
/// holds exactly in many languages).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(pattern = "^[0-9]{1,19}$", example = "42")]
pub struct IdText(pub String);

/// Dead tasks to run again.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequeueRequest {
    /// Their ids, at most 10,000.
    #[schema(max_items = 10_000)]
    pub ids: Vec<IdText>,
}

/// Which dead tasks to delete.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Only this queue's (default: every queue's).
    pub queue: Option<String>,
}

/// How many tasks an action changed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CountView {
    /// How many.
    pub count: u64,
}

/// A task's state after a cancel.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CancelView {
    /// `cancelled`, or the state that made cancelling impossible.
    pub state: StateName,
}

/// What went wrong.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorView {
    /// A message for people.
    pub error: String,
}
