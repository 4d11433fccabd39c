//! Durable task queues: a client enqueues tasks by handler name into a backend; a
//! worker (in this or another process) reserves them under a lease, runs them
//! through the engine and stores the outcome, which the client can wait for.
//!
//! The backend contract is defined in `conveyor-core` and re-exported here: the
//! required core [`Backend`], its optional parts ([`ResultStore`],
//! [`Inspection`], [`Administration`], [`Maintenance`], [`GlobalLimits`]) and
//! the records it stores. This module has the runtime around it: [`Client`],
//! [`Worker`] (the source runner around a backend), the
//! [`MemoryBackend`] (from `conveyor-memory`) and [`connect`] to open a backend
//! by URL through the [`Schemes`] registry, where each backend crate's own
//! [`Scheme`] reads its URL.

mod backend_source;
mod client;
mod connect;
pub mod fork;
mod heartbeat;
mod maintenance;
mod scheduler;
mod schemes;
mod task_type;
mod worker;

pub use client::{Client, DurableHandle};
pub use connect::{connect, connect_existing, resolve_url, DEFAULT_URL, URL_ENV};
/// Periodic schedules: cron expressions and intervals, fired once per fire
/// time by the worker that leads the `schedules` role.
pub use conveyor_core::schedule;
/// Workflows: graphs of tasks moved forward by their finishes.
pub use conveyor_core::workflow;
/// The backend contract: the core, its optional parts, the records it stores.
pub use conveyor_core::{
    attempt, check_name, finished_record, parts, unserved, wait_for_finish, Administration,
    AttemptOutcome, AttemptRecord, Backend, BackendUrl, Capabilities, Count, Enqueued, Finish,
    FinishAction, GlobalLimits, HandlerLimits, Inspection, Lease, ListOrder, ListParams,
    Maintenance, NewTask, OpenFuture, Page, Part, QueueControl, QueueStats, Registry,
    ReserveParams, Reserved, ResultStore, Retention, Schedules, Scheme, Search, TaskRecord,
    Unserved, WorkerInfo, COUNT_BUDGET, FORGET_WORKERS_AFTER, MAX_NAME_CHARS, SCAN_BUDGET,
    UNSERVED_SCAN, WORKER_SILENCE,
};
pub use conveyor_memory::MemoryBackend;
pub use heartbeat::HEARTBEAT_EVERY;
pub use scheduler::{schedules_pass, SCHEDULES_ASK_EVERY, SCHEDULES_TERM};
pub use schemes::Schemes;
pub use task_type::{EnqueueOptions, TaskType};
/// The queue a task goes to when none is named.
pub const DEFAULT_QUEUE_NAME: &str = conveyor_core::DEFAULT_QUEUE;
/// Attempts a task gets when none are given.
pub const DEFAULT_ATTEMPTS: u32 = conveyor_core::DEFAULT_MAX_ATTEMPTS;

#[cfg(feature = "amqp")]
pub use conveyor_amqp::{AmqpBackend, AmqpOptions};
#[cfg(feature = "embedded")]
pub use conveyor_embedded::EmbeddedBackend;
#[cfg(feature = "nats")]
pub use conveyor_nats::{NatsBackend, NatsOptions};
#[cfg(feature = "postgres")]
pub use conveyor_postgres::PostgresBackend;
#[cfg(feature = "redis")]
pub use conveyor_redis::RedisBackend;

pub use worker::{
    shutdown_signal, DurableResult, OnDurableComplete, Worker, WorkerBuilder, WorkerProbe,
    WorkerReport, WorkerStats, WorkerStopper, DEFAULT_GRACE, DEFAULT_LEASE, DEFAULT_POLL,
};
