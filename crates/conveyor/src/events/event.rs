//! The events themselves.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use conveyor_core::{OutcomeKind, TaskId};

use crate::source::RunnerStats;

/// One lifecycle fact.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// Something happened to a task.
    Task(TaskEvent),
    /// Something happened to a worker (a runner).
    Worker(WorkerEvent),
    /// A source stopped or started handing out work.
    Source(SourceEvent),
}

/// What happened to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskEventKind {
    /// Put in a queue.
    Enqueued,
    /// An attempt started.
    Started,
    /// It succeeded.
    Succeeded,
    /// An attempt failed and the task runs again later.
    Retried,
    /// It failed for good and was dead-lettered.
    DeadLettered,
    /// The handler asked to drop it.
    Discarded,
    /// It was cancelled, or handed back unstarted.
    Cancelled,
}

impl TaskEventKind {
    /// A short name: `enqueued`, `started`, `succeeded`, …
    pub fn as_str(self) -> &'static str {
        match self {
            TaskEventKind::Enqueued => "enqueued",
            TaskEventKind::Started => "started",
            TaskEventKind::Succeeded => "succeeded",
            TaskEventKind::Retried => "retried",
            TaskEventKind::DeadLettered => "dead_lettered",
            TaskEventKind::Discarded => "discarded",
            TaskEventKind::Cancelled => "cancelled",
        }
    }
}

/// A fact about one task.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TaskEvent {
    /// What happened.
    pub kind: TaskEventKind,
    /// The task.
    pub id: TaskId,
    /// Its handler.
    pub handler: Arc<str>,
    /// Its queue (or topic).
    pub queue: Arc<str>,
    /// The attempt concerned, from 1 (0 for a task that never started).
    pub attempt: u32,
    /// How the attempt ended, for the events that end one.
    pub outcome: Option<OutcomeKind>,
    /// The error of a retried or dead-lettered attempt, or why it was
    /// discarded or cancelled.
    pub error: Option<String>,
    /// From when the worker took the task to the attempt's start.
    pub queue_wait: Option<Duration>,
    /// How long the attempt ran.
    pub run_time: Option<Duration>,
    /// On `Started`: from when the task became ready to run (enqueued, or
    /// due after a delay or backoff, by the source's clock) to this start —
    /// the time it waited in its queue and in the worker.
    pub since_ready: Option<Duration>,
    /// When it happened.
    pub at: SystemTime,
}

impl TaskEvent {
    /// A task was put in `queue`.
    pub fn enqueued(id: TaskId, handler: Arc<str>, queue: Arc<str>) -> Self {
        TaskEvent {
            kind: TaskEventKind::Enqueued,
            id,
            handler,
            queue,
            attempt: 0,
            outcome: None,
            error: None,
            queue_wait: None,
            run_time: None,
            since_ready: None,
            at: SystemTime::now(),
        }
    }
}

/// What a counter reads of a task event: the event's figures, with its
/// names borrowed from whoever emits it. Counters (metrics) are handed a
/// fact where the event would have to be built, with its names cloned: an
/// event's `Arc` names are shared by every task of a handler or queue, so
/// cloning and dropping them writes one cache line from every worker
/// thread, and a profile of a 500-slot worker put most of an event's cost
/// there.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskFact<'a> {
    /// What happened.
    pub(crate) kind: TaskEventKind,
    /// The task's handler.
    pub(crate) handler: &'a Arc<str>,
    /// Its queue (or topic).
    pub(crate) queue: &'a Arc<str>,
    /// How the attempt ended, for the events that end one.
    pub(crate) outcome: Option<OutcomeKind>,
    /// How long the attempt ran.
    pub(crate) run_time: Option<Duration>,
    /// On `Started`: from when the task became ready to run to this start.
    pub(crate) since_ready: Option<Duration>,
}

impl TaskFact<'_> {
    /// The event of this fact, its names cloned: what observers and
    /// subscribers are given, built from the fact so the two cannot differ.
    pub(crate) fn event(
        &self,
        id: TaskId,
        attempt: u32,
        error: Option<String>,
        queue_wait: Option<Duration>,
        at: SystemTime,
    ) -> Event {
        Event::Task(TaskEvent {
            kind: self.kind,
            id,
            handler: self.handler.clone(),
            queue: self.queue.clone(),
            attempt,
            outcome: self.outcome,
            error,
            queue_wait,
            run_time: self.run_time,
            since_ready: self.since_ready,
            at,
        })
    }
}

impl TaskEvent {
    /// The fact a counter reads of this event.
    pub(crate) fn fact(&self) -> TaskFact<'_> {
        TaskFact {
            kind: self.kind,
            handler: &self.handler,
            queue: &self.queue,
            outcome: self.outcome,
            run_time: self.run_time,
            since_ready: self.since_ready,
        }
    }
}

/// A fact about a worker.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum WorkerEvent {
    /// It began running.
    Started {
        /// Its slots: tasks it runs at once.
        slots: usize,
        /// When.
        at: SystemTime,
    },
    /// It is alive (every heartbeat interval), with its counts so far.
    Heartbeat {
        /// Counts so far.
        stats: RunnerStats,
        /// When.
        at: SystemTime,
    },
    /// It stopped fetching and is draining.
    Stopping {
        /// Tasks still running.
        in_flight: usize,
        /// When.
        at: SystemTime,
    },
    /// It stopped.
    Stopped {
        /// Counts over its life.
        stats: RunnerStats,
        /// True when every running task finished within the grace period.
        drained: bool,
        /// When.
        at: SystemTime,
    },
}

/// A source stopped or resumed handing out work (a Kafka consumer pausing
/// its partitions at the limit, and resuming).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SourceEvent {
    /// It stopped fetching from its broker: everything it may hold is held.
    Paused {
        /// When.
        at: SystemTime,
    },
    /// It fetches again.
    Resumed {
        /// When.
        at: SystemTime,
    },
}
