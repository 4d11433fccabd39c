//! conveyor runs lots of work concurrently without hand-rolled thread pools,
//! semaphores and retry loops.
//!
//! A [`Pool`] has N workers (default 50) and three lanes: `io` (async on the
//! tokio runtime), `cpu` (a bounded pool of OS threads) and `process` (child
//! processes, killable). Producers submit tasks — a [`Handler`] plus params —
//! into a [`Job`]'s bounded queue; the dispatcher applies limits (global, per
//! lane, per handler, per key, rate) and starts what may start; outcomes flow
//! through the job's result queue to a dedicated result handler that calls
//! `on_task_complete`, and `on_job_complete` fires once producers are done and
//! every task has an outcome.
//!
//! ```no_run
//! use conveyor::{Handler, Pool, TaskError};
//!
//! # async fn demo() -> Result<(), conveyor::Error> {
//! let pool = Pool::new()?;
//! let double = Handler::io("double", |n: u64, _ctx| async move { Ok::<_, TaskError>(n * 2) });
//! let job = pool
//!     .job()
//!     .on_task_complete(|r| println!("{} -> {:?}", r.id, r.output::<u64>()))
//!     .start()?;
//! for n in 0..100 {
//!     job.submit(&double, n).await.map_err(|r| r.reason)?;
//! }
//! let summary = job.await;
//! assert_eq!(summary.succeeded, 100);
//! # Ok(()) }
//! ```

pub mod durable;
mod engine;
pub mod events;
mod handler;
mod job;
pub mod lane;
mod latency_histogram;
mod map;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "otel")]
pub mod otel;
mod output;
mod pipeline;
mod pool;
mod results;
pub mod source;
mod summary;

pub use engine::context::TaskContext;
// What a user of the engine and the queues names; the durable backend contract
// (Backend, its parts and records) is under `durable`.
pub use conveyor_core::{
    redact_secrets, redact_url, BackendError, BackendErrorKind, Clock, Codec, Error, ErrorKind,
    Json, Lane, ManualClock, NextStep, Outcome, OutcomeKind, Rate, RetryPolicy, SystemClock,
    TaskError, TaskId, TaskOptions, TaskState, Timestamp,
};
pub use durable::{Client, DurableHandle, EnqueueOptions, MemoryBackend, TaskType, Worker};
pub use engine::handler_name::HandlerName;
pub use engine::metrics::MetricsSnapshot;
pub use engine::submit::{Rejected, TaskHandle};
pub use engine::work::HandlerConfig;
pub use handler::Handler;
pub use job::{Job, JobBuilder, Producer, DEFAULT_QUEUE_CAPACITY, DEFAULT_RESULT_CAPACITY};
pub use output::Output;
pub use pipeline::{OnFailure, Pipeline, PipelineBuilder, PipelineInput, StageFailure, StageStats};

pub use engine::shutdown::ShutdownReport;
pub use engine::task_result::TaskResult;
pub use lane::cpu::available_cores;
pub use lane::persistent::{PersistentPool, PersistentProcess};
pub use lane::process::{
    exit_to_result, ProcessCommand, ProcessOutput, RunningProcess, DEFAULT_OUTPUT_CAP,
};
pub use latency_histogram::LatencyStats;
pub use pool::{Pool, PoolBuilder, PoolConfig, DEFAULT_WORKERS};
pub use results::{OnJobComplete, OnTaskComplete};
pub use summary::JobSummary;

/// Re-exported for [`source::Source`] implementations: the attribute the trait uses.
pub use conveyor_core::async_trait;

/// Re-exported so map helpers and pipeline outputs can be consumed without
/// another dependency.
pub use futures_util::{Stream, StreamExt};
