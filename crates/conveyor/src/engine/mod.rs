//! The engine's internals: how a submitted task waits, starts, runs and
//! reports, shared by every job and source on a pool.
//!
//! A task is boxed into an [`envelope`]; the [`dispatcher`] applies delays,
//! keys, lane and handler limits and [`rate`]s and hands it to the
//! [`ready_queue`]; one of the pool's [`worker`]s runs its [`attempt`] in a lane
//! (`crate::lane`), watching for cancellation ([`cancel`], [`signal`]); the
//! outcome goes to the job's result queue ([`outbox`], [`result_queue`]), to
//! the task's own reply channel, or straight to a source's sink
//! ([`completion`]); its envelope goes back to the job's producers to be freed
//! ([`spent`]); the job's result thread drains it with pauses that adapt
//! to the flow ([`result_pause`]). [`metrics`] counts it all per worker.

pub(crate) mod attempt;
pub(crate) mod cancel;
pub(crate) mod completion;
pub(crate) mod dispatcher;
pub(crate) mod envelope;
pub(crate) mod job_ref;
pub(crate) mod metrics;
pub(crate) mod outbox;
pub(crate) mod rate;
pub(crate) mod ready_queue;
pub(crate) mod result_pause;
pub(crate) mod result_queue;
pub(crate) mod signal;
pub(crate) mod spent;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod worker;
