//! Contracts and plain data shared by every part of conveyor.
//!
//! This crate owns conveyor's vocabulary as types: a [`TaskId`], the per-task
//! [`TaskOptions`], the [`Lane`] a handler runs in, the closed set of
//! [`Outcome`]s, the [`TaskError`] a handler returns, the [`RetryPolicy`],
//! [`next_step`] (what follows an attempt), [`Rate`] and the crate-wide
//! [`Error`]. For durable queues it holds the [`Backend`] core and its optional
//! parts, the
//! records it stores ([`NewTask`], [`Reserved`], [`Finish`], [`TaskRecord`] and
//! its [`AttemptRecord`]s), the
//! task [`TaskState`] machine, the [`Codec`], the injectable [`Clock`], and the
//! [`Scheme`] contract by which each backend opens itself from a URL (read with
//! [`BackendUrl`]), and the [`workflow`] graph with the decisions that move
//! it. It has no runtime and does no I/O (its one dependency on
//! tokio is `tokio::sync`, for the [`FinishBoard`] that backends share), so
//! backends and the runtime can both depend on it without depending on each
//! other.

pub mod attempt;
mod backend;
mod backend_url;
mod clock;
mod codec;
mod durable_task;
mod error;
mod lane;
mod limits;
mod next_step;
mod outcome;
mod rate;
mod receipt;
mod redact;
mod retry;
pub mod schedule;
mod scheme;
mod task;
mod task_error;
mod task_state;
mod trace_context;
mod value_limit;
pub mod workflow;

pub use attempt::{AttemptOutcome, AttemptRecord, CANCELLED_WHILE_RUNNING};
pub use backend::{
    count_by_listing, count_from_stats, page_by_listing, refuse_keep, unsupported,
    validate_queue_name, workers_heard_since, workers_silent_before, Administration, Backend,
    Capabilities, Count, EntryWrite, FailoverMode, FinishBoard, FinishMark, GlobalLimits,
    Inspection, ListOrder, ListParams, Maintenance, Page, Part, QueueControl, RecordKeeper,
    Registry, ReserveParams, ResultStore, Retention, Schedules, Search, WakeBoard, WorkerInfo,
    Workflows, COUNT_BUDGET, FORGET_WORKERS_AFTER, NO_KEEP, SCAN_BUDGET, WORKER_SILENCE,
};
pub use backend::{finished_record, unserved, wait_for_finish, Kept, Unserved, UNSERVED_SCAN};
pub use backend_url::{scheme_of, BackendUrl};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use codec::{Codec, Json};
pub use durable_task::{
    check_name, Enqueued, Finish, FinishAction, Lease, NewTask, QueueStats, Reserved, TaskRecord,
    DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE, MAX_NAME_CHARS,
};
pub use error::{BackendError, BackendErrorKind, Chain, Error};
pub use lane::Lane;
pub use limits::{Admission, HandlerLimits};
pub use next_step::{next_step, NextStep};
pub use outcome::{Outcome, OutcomeKind};
pub use rate::{Gcra, Rate};
pub use receipt::Receipt;
pub use redact::{redact_secrets, redact_url, HIDDEN};
pub use retry::RetryPolicy;
pub use scheme::{opening, OpenFn, OpenFuture, OpenKeepingFn, Scheme};
pub use task::{TaskId, TaskOptions};
pub use task_error::{ErrorKind, TaskError};
pub use task_state::{codes, InvalidTransition, TaskState, Transition};
pub use trace_context::{InvalidTraceContext, TraceContext, MAX_TRACESTATE};
pub use value_limit::ValueLimit;

/// The optional parts of a backend, to bring their methods into scope on a
/// concrete backend type: `use conveyor_core::parts::*;`.
pub mod parts {
    pub use crate::backend::{
        Administration, GlobalLimits, Inspection, Maintenance, QueueControl, RecordKeeper,
        ResultStore, Schedules, Workflows,
    };
}

/// Re-exported for backend implementations: the attribute the [`Backend`] trait uses.
pub use async_trait::async_trait;
