//! Prometheus metrics of a worker (cargo feature `metrics`).
//!
//! Two kinds of series, all under the `conveyor_` prefix and named after
//! Prometheus conventions (`_total` for counters, `_seconds` for times):
//!
//! - **per task, by `queue` and `handler`**: attempts started, tasks
//!   succeeded, failed attempts, retries, dead letters, discards and
//!   cancellations, and histograms of run time and queue wait. They are
//!   counted from the worker's lifecycle events by an observer that runs in
//!   place on each event, so a busy worker never loses a count.
//! - **per worker**: slots, tasks in flight and running, and its counters of
//!   fetched tasks, lost leases, backend errors, stale settlements and
//!   dropped callbacks — read from the worker's own counts at each scrape.
//!
//! ```no_run
//! # async fn demo(worker: conveyor::durable::Worker) {
//! let metrics = conveyor::metrics::WorkerMetrics::for_worker(&worker);
//! // Serve `metrics.encode()` on /metrics, then:
//! let report = worker.run().await;
//! # let _ = (metrics, report); }
//! ```
//!
//! The exposition is the OpenMetrics text format (served with
//! [`CONTENT_TYPE`]), which Prometheus reads natively.

mod task_series;
mod worker_gauges;

use prometheus_client::registry::Registry;

use crate::durable::{Worker, WorkerProbe};
use crate::events::{EventBus, Observer};
use task_series::TaskSeries;
use worker_gauges::WorkerGauges;

/// The content type of [`WorkerMetrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics of one worker, and the registry they are encoded from.
pub struct WorkerMetrics {
    registry: Registry,
    _observer: Observer,
}

impl std::fmt::Debug for WorkerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerMetrics").finish_non_exhaustive()
    }
}

impl WorkerMetrics {
    /// Metrics of `worker`, counting from now: build them before
    /// [`Worker::run`] so that no task goes uncounted.
    pub fn for_worker<C: conveyor_core::Codec>(worker: &Worker<C>) -> Self {
        Self::new(&worker.events(), worker.probe())
    }

    /// Metrics counted from the events on `bus`, with the worker series read
    /// from `probe`.
    pub fn new(bus: &EventBus, probe: WorkerProbe) -> Self {
        let mut registry = Registry::with_prefix("conveyor");
        let observer = register(&mut registry, bus, probe);
        WorkerMetrics {
            registry,
            _observer: observer,
        }
    }

    /// The registry, to add series of your own before encoding.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The exposition, in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Registers a worker's series in a registry of your own (give it the
/// `conveyor` prefix for the documented names); counting lasts as long as
/// the returned [`Observer`] is kept.
pub fn register(registry: &mut Registry, bus: &EventBus, probe: WorkerProbe) -> Observer {
    let series = TaskSeries::register(registry);
    registry.register_collector(Box::new(WorkerGauges { probe }));
    bus.observe(move |event| series.record(event))
}
