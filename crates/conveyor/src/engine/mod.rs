//! The engine: how a submitted task waits, starts, runs and reports, shared
//! by every job and source on a pool.
//!
//! It is a layer of its own: it imports nothing of the crate above it (the
//! pool, jobs, map helpers, pipelines, sources and durable workers), only the
//! lanes, [`Output`](crate::Output) and the latency histogram below it. Its
//! vocabulary is what those above it use:
//!
//! - an [`instance`] of the engine ([`Engine`](instance::Engine)): its
//!   workers, dispatcher, cpu lane and stop flags, started by a pool and
//!   stopped by its [`shutdown`];
//! - a job's state ([`JobState`](job_state::JobState)): its cancellation,
//!   queue capacity, result route and failure limit, which a task is
//!   [`submit`]ted to;
//! - a handler as the engine runs it ([`work`]): the erased
//!   [`HandlerCore`](work::HandlerCore), its
//!   [`HandlerConfig`](work::HandlerConfig) and one attempt's
//!   [`Work`](work::Work); and its [`handler_name`];
//! - what a running attempt sees, its [`context`], and what a task reports,
//!   its [`task_result`].
//!
//! Inside, a task is boxed into an [`envelope`]; the [`dispatcher`] applies
//! delays, keys, lane and handler limits and [`rate`]s and hands it to the
//! [`ready_queue`]; one of the engine's [`worker`]s runs its [`attempt`] in a
//! lane (`crate::lane`), watching for cancellation ([`cancel`], [`signal`]);
//! the outcome goes to the job's result queue ([`outbox`], [`result_queue`]),
//! to the task's own reply channel, or straight to a source's sink
//! ([`completion`]); its envelope goes back to the job's producers to be freed
//! ([`spent`]); the job's result thread drains it with pauses that adapt
//! to the flow ([`result_pause`]). [`metrics`] counts it all per worker.

pub(crate) mod attempt;
pub(crate) mod cancel;
pub(crate) mod completion;
pub(crate) mod context;
pub(crate) mod dispatcher;
pub(crate) mod envelope;
pub(crate) mod handler_name;
pub(crate) mod instance;
pub(crate) mod job_ref;
pub(crate) mod job_state;
pub(crate) mod metrics;
pub(crate) mod outbox;
pub(crate) mod rate;
pub(crate) mod ready_queue;
pub(crate) mod result_pause;
pub(crate) mod result_queue;
pub(crate) mod shutdown;
pub(crate) mod signal;
pub(crate) mod spent;
pub(crate) mod submit;
pub(crate) mod task_result;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod work;
pub(crate) mod worker;
