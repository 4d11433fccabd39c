//! The records a durable backend stores and hands out: a new task, a reserved
//! one under a lease, what a worker reports back, and a task as read back.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::attempt::AttemptRecord;
use crate::clock::Timestamp;
use crate::receipt::Receipt;
use crate::task::TaskId;
use crate::task_state::TaskState;
use crate::trace_context::TraceContext;

/// The queue a task goes to when none is named.
pub const DEFAULT_QUEUE: &str = "default";

/// A task to enqueue: a handler name, an encoded payload and options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    /// The queue it waits in.
    pub queue: String,
    /// The name the worker looks its handler up by.
    pub handler: String,
    /// The encoded params.
    pub payload: Vec<u8>,
    /// Higher runs first; equal priorities run in enqueue order.
    pub priority: i32,
    /// Not before this much time after enqueueing (ignored when `run_at` is set).
    pub delay: Option<Duration>,
    /// Not before this time.
    pub run_at: Option<Timestamp>,
    /// Total attempts allowed, counting the first.
    pub max_attempts: u32,
    /// Time limit of one attempt, enforced by the worker.
    pub timeout: Option<Duration>,
    /// While a task with this key (in the same queue) is unfinished, enqueueing
    /// another returns the existing one instead of a duplicate.
    pub unique_key: Option<String>,
    /// Tasks with the same ordering key (in the same queue) run one at a time, in
    /// enqueue order.
    pub ordering_key: Option<String>,
    /// The trace context of its enqueue, kept unchanged for its attempts.
    pub trace: Option<TraceContext>,
    /// How long its record (and result) is kept once it has finished,
    /// whatever the outcome: it wins over the retention of the handler that
    /// ran it and the store's. `None`: theirs. Stored only by a backend with
    /// [`Capabilities::keep`](crate::Capabilities::keep).
    pub keep: Option<Duration>,
}

/// The longest a task's record may be kept once finished ([`NewTask::keep`]):
/// about a hundred years, so an expiry time never overflows.
pub const MAX_KEEP: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Attempts a task gets when its options do not say.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

impl NewTask {
    /// A task for `handler` with an encoded payload, on the default queue.
    pub fn new(handler: impl Into<String>, payload: Vec<u8>) -> Self {
        Self {
            queue: DEFAULT_QUEUE.to_string(),
            handler: handler.into(),
            payload,
            priority: 0,
            delay: None,
            run_at: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            timeout: None,
            unique_key: None,
            ordering_key: None,
            trace: None,
            keep: None,
        }
    }

    /// Sets the queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Sets the priority (higher first).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Delays the first attempt.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Sets the earliest start time.
    pub fn run_at(mut self, at: Timestamp) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Sets the total attempts (at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Sets the per-attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the unique key.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Sets the ordering key.
    pub fn ordering_key(mut self, key: impl Into<String>) -> Self {
        self.ordering_key = Some(key.into());
        self
    }

    /// Sets the trace context it carries.
    pub fn trace(mut self, trace: TraceContext) -> Self {
        self.trace = Some(trace);
        self
    }

    /// Keeps its record this long once it has finished (see [`NewTask::keep`]).
    pub fn keep(mut self, keep: Duration) -> Self {
        self.keep = Some(keep);
        self
    }

    /// When the task may first run, given the backend's `now`: not before
    /// its start time nor before its delay from now (the later of the two
    /// when it has both).
    pub fn first_run(&self, now: Timestamp) -> Timestamp {
        match (self.run_at, self.delay) {
            (Some(at), Some(d)) => at.max(now.plus(d)),
            (Some(at), None) => at,
            (None, Some(d)) => now.plus(d),
            (None, None) => now,
        }
    }

    /// Checks the fields a backend cannot store or run.
    pub fn validate(&self) -> Result<(), crate::Error> {
        let bad = |m: &str| Err(crate::Error::InvalidConfig(m.to_string()));
        check_name("a task's queue name", &self.queue).map_err(crate::Error::InvalidConfig)?;
        check_name("a task's handler name", &self.handler).map_err(crate::Error::InvalidConfig)?;
        if self.max_attempts == 0 {
            return bad("a task needs at least one attempt");
        }
        if self.keep.is_some_and(|k| k > MAX_KEEP) {
            return bad("a task's keep is longer than a hundred years");
        }
        Ok(())
    }
}

/// The longest queue or handler name, in characters: a name is shown on every
/// page that lists its tasks, used as a metric label and as a key in the
/// store, so a megabyte of name is refused rather than carried everywhere.
pub const MAX_NAME_CHARS: usize = 200;

/// Checks a queue or handler name, `what` (as `a task's queue name`): not
/// empty, at most [`MAX_NAME_CHARS`] characters (Unicode scalar values, as
/// JSON Schema's `maxLength` counts), no control character. The error says
/// which rule it broke.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} is empty"));
    }
    let len = name.chars().count();
    if len > MAX_NAME_CHARS {
        return Err(format!(
            "{what} has {len} characters; at most {MAX_NAME_CHARS} are allowed"
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{what} holds a control character (U+{:04X}); none is allowed",
            u32::from(c)
        ));
    }
    Ok(())
}

/// What enqueueing one task did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The task's id (the existing task's, for a duplicate).
    pub id: TaskId,
    /// True when an unfinished task with the same unique key already existed.
    pub duplicate: bool,
}

/// The claim a worker holds on a reserved task. The token changes at every
/// reservation, so a worker whose lease ran out and whose task was reserved again
/// cannot report an outcome for it (fencing). A backend that settles through
/// something else too (a broker's delivery tag, a reply subject) keeps it in
/// the [`Receipt`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The task.
    pub id: TaskId,
    /// The attempt token of this reservation.
    pub token: u64,
    /// The backend's own settlement handle, if it needs one.
    pub receipt: Receipt,
}

impl Lease {
    /// A lease with no receipt (what a database issues).
    pub fn new(id: TaskId, token: u64) -> Lease {
        Lease {
            id,
            token,
            receipt: Receipt::NONE,
        }
    }
}

/// A task handed to a worker under a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    /// The claim to report back with.
    pub lease: Lease,
    /// The queue it came from.
    pub queue: String,
    /// Its handler's name.
    pub handler: String,
    /// The encoded params.
    pub payload: Vec<u8>,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Total attempts allowed.
    pub max_attempts: u32,
    /// Time limit of the attempt.
    pub timeout: Option<Duration>,
    /// Its ordering key, if any.
    pub ordering_key: Option<String>,
    /// When it was enqueued.
    pub enqueued_at: Timestamp,
    /// When it became due (its run-at).
    pub due_at: Timestamp,
    /// When the lease runs out unless renewed.
    pub lease_until: Timestamp,
    /// The trace context given at enqueue, if any.
    pub trace: Option<TraceContext>,
}

/// What a worker reports for a reserved task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishAction {
    /// Succeeded, with an optional encoded result.
    Complete {
        /// The encoded result.
        result: Option<Vec<u8>>,
    },
    /// Failed; run again after `delay` (the backend dead-letters instead when no
    /// attempt remains).
    Retry {
        /// How long to wait before the next attempt.
        delay: Duration,
        /// What went wrong.
        error: String,
    },
    /// Failed for good.
    DeadLetter {
        /// What went wrong.
        error: String,
    },
    /// The handler asked to drop the task.
    Discard {
        /// Why.
        reason: String,
    },
    /// Not started: hand the task back without counting the attempt.
    Release,
}

/// One report: a lease, what became of its task, and the tasks to enqueue
/// with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    /// The claim the worker holds.
    pub lease: Lease,
    /// What happened.
    pub action: FinishAction,
    /// How long the worker's handler keeps a finished task of its own (by how
    /// it finished: completed and cancelled, or dead), stamped on the record
    /// as its expiry when this report finishes it. The task's own
    /// [`NewTask::keep`] wins; `None` leaves the record to the retention
    /// [`Maintenance::prune`](crate::Maintenance::prune) is given. Ignored by
    /// a backend without [`Capabilities::keep`](crate::Capabilities::keep).
    pub retention: Option<crate::Retention>,
    /// **Follow-ups**: tasks enqueued in the same atomic step as this report
    /// (one transaction, one script). When the report is applied every one
    /// of them is enqueued (a unique key held by an unfinished task makes a
    /// duplicate, as with `enqueue_many`); when it is refused (a stale lease,
    /// or a follow-up that fails [`NewTask::validate`]) none is. So a
    /// workflow's next step is never lost between a finish and an enqueue,
    /// and never enqueued by a worker whose claim ran out.
    pub follow_ups: Vec<NewTask>,
}

impl Finish {
    /// A report with no follow-ups.
    pub fn new(lease: Lease, action: FinishAction) -> Finish {
        Finish {
            lease,
            action,
            retention: None,
            follow_ups: Vec::new(),
        }
    }

    /// The same report, stamping `retention` on the task it finishes (see
    /// [`Finish::retention`]).
    pub fn with_retention(mut self, retention: crate::Retention) -> Finish {
        self.retention = Some(retention);
        self
    }

    /// The task of `lease` succeeded, with no result to keep.
    pub fn complete(lease: Lease) -> Finish {
        Finish::new(lease, FinishAction::Complete { result: None })
    }

    /// The same report, enqueueing `tasks` when it is applied.
    pub fn with_follow_ups(mut self, tasks: Vec<NewTask>) -> Finish {
        self.follow_ups = tasks;
        self
    }

    /// Checks the follow-ups as `enqueue_many` checks tasks: a backend
    /// refuses the whole report (nothing applied, nothing enqueued) when
    /// this fails.
    pub fn validate_follow_ups(&self) -> Result<(), crate::Error> {
        self.follow_ups.iter().try_for_each(NewTask::validate)
    }
}

/// A task as read back from a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    /// Its id.
    pub id: TaskId,
    /// Its queue.
    pub queue: String,
    /// Its handler's name.
    pub handler: String,
    /// Where it is in its life.
    pub state: TaskState,
    /// The encoded params.
    pub payload: Vec<u8>,
    /// Its priority.
    pub priority: i32,
    /// Attempts started so far.
    pub attempts: u32,
    /// Total attempts allowed.
    pub max_attempts: u32,
    /// When it may (next) run.
    pub run_at: Timestamp,
    /// Its unique key.
    pub unique_key: Option<String>,
    /// Its ordering key.
    pub ordering_key: Option<String>,
    /// The encoded result of a completed task.
    pub result: Option<Vec<u8>>,
    /// The last error (of a retrying, dead or discarded task).
    pub error: Option<String>,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// When its outcome was decided.
    pub finished_at: Option<Timestamp>,
    /// The trace context given at enqueue, if any.
    pub trace: Option<TraceContext>,
    /// How long it is kept once finished, as given at enqueue
    /// ([`NewTask::keep`]).
    pub keep: Option<Duration>,
    /// When a finished task may be deleted, if its finish set a time (its
    /// own keep, or its handler's retention); `None`: whenever the retention
    /// [`Maintenance::prune`](crate::Maintenance::prune) is given says.
    pub expires_at: Option<Timestamp>,
    /// Its attempts, oldest first: the latest
    /// [`HISTORY_LIMIT`](crate::attempt::HISTORY_LIMIT) settled
    /// ones, then the running one or the one that completed it (see
    /// [`crate::attempt`]). Empty when the backend keeps no history
    /// ([`Capabilities::history`](crate::Capabilities::history) unset).
    pub history: Vec<AttemptRecord>,
}

impl TaskRecord {
    /// The attempt that runs now, if the task runs and its backend keeps
    /// history: which worker holds it, and since when.
    pub fn running_attempt(&self) -> Option<&AttemptRecord> {
        self.history
            .last()
            .filter(|a| a.outcome == crate::attempt::AttemptOutcome::Running)
    }
}

/// Counts and ages for one queue, for `conveyor status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// The queue.
    pub queue: String,
    /// Tasks per state (states with none are absent).
    pub counts: BTreeMap<TaskState, u64>,
    /// When the oldest task ready to run (available, or due) became ready:
    /// its due time (enqueued, or the end of its delay or backoff). A
    /// backend may answer for the head of each priority's line rather than
    /// search every ready task (see its documentation).
    pub oldest_ready: Option<Timestamp>,
}

impl QueueStats {
    /// The count in one state.
    pub fn count(&self, state: TaskState) -> u64 {
        self.counts.get(&state).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_time_and_a_delay_give_the_later() {
        let now = Timestamp(1_000);
        let both = |at: i64| {
            NewTask::new("h", Vec::new())
                .run_at(Timestamp(at))
                .delay(std::time::Duration::from_millis(500))
                .first_run(now)
        };
        assert_eq!(both(5_000), Timestamp(5_000));
        assert_eq!(both(0), Timestamp(1_500));
    }

    #[test]
    fn names_are_checked_at_enqueue() {
        let ok = NewTask::new("h", Vec::new());
        assert!(ok.validate().is_ok());
        assert!(NewTask::new("é".repeat(MAX_NAME_CHARS), Vec::new())
            .validate()
            .is_ok());
        let long = NewTask::new("h".repeat(MAX_NAME_CHARS + 1), Vec::new()).validate();
        assert!(
            matches!(&long, Err(crate::Error::InvalidConfig(m)) if m.contains("201 characters")),
            "{long:?}"
        );
        for bad in ["", "a\nb", "nul\u{0}"] {
            assert!(NewTask::new(bad, Vec::new()).validate().is_err(), "{bad:?}");
            assert!(
                NewTask::new("h", Vec::new()).queue(bad).validate().is_err(),
                "{bad:?}"
            );
        }
    }
}
