//! Prometheus metrics of a worker (cargo feature `metrics`).
//!
//! Two kinds of series, all under the `conveyor_` prefix and named after
//! Prometheus conventions (`_total` for counters, `_seconds` for times):
//!
//! - **per task, by `queue` and `handler`**: attempts started, tasks
//!   succeeded, failed attempts, retries, dead letters, discards and
//!   cancellations, and histograms of run time and queue wait. They are
//!   counted from the worker's lifecycle events by a counter that runs in
//!   place on each task event, so a busy worker never loses a count (and
//!   where nothing else listens, the events are never built).
//! - **per worker**: slots, tasks in flight and running, and its counters of
//!   fetched tasks, lost leases, backend errors, stale settlements and
//!   dropped callbacks — read from the worker's own counts at each scrape.
//!
//! ```no_run
//! # async fn demo(worker: conveyor::durable::Worker) {
//! let metrics = conveyor::metrics::Metrics::for_worker(&worker);
//! // Serve `metrics.encode()` on /metrics, then:
//! let report = worker.run().await;
//! # let _ = (metrics, report); }
//! ```
//!
//! The exposition is the OpenMetrics text format (served with
//! [`CONTENT_TYPE`]), which Prometheus reads natively.

mod duration_histogram;
pub mod encode;
mod task_series;
mod worker_gauges;

use prometheus_client::registry::Registry;

use crate::durable::{Worker, WorkerProbe};
use crate::events::{EventBus, Observer};
use task_series::TaskSeries;
use worker_gauges::WorkerGauges;

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A registry of conveyor's series and the observer counting them: a
/// worker's ([`Metrics::for_worker`]), or the task series of any event bus
/// ([`Metrics::for_events`], e.g. a Kafka consumer's, which adds its own).
pub struct Metrics {
    registry: Registry,
    _observer: Observer,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics of `worker`, counting from now: build them before
    /// [`Worker::run`] so that no task goes uncounted.
    pub fn for_worker<C: conveyor_core::Codec>(worker: &Worker<C>) -> Self {
        let mut metrics = Self::for_events(&worker.events());
        metrics.registry.register_collector(Box::new(WorkerGauges {
            probe: worker.probe(),
        }));
        metrics
    }

    /// The per-task series counted from the events on `bus`, alone.
    pub fn for_events(bus: &EventBus) -> Self {
        let mut registry = Registry::with_prefix("conveyor");
        let observer = register_tasks(&mut registry, bus);
        Metrics {
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

/// Registers the per-task series in a registry of your own (give it the
/// `conveyor` prefix for the documented names); counting lasts as long as
/// the returned [`Observer`] is kept.
pub fn register_tasks(registry: &mut Registry, bus: &EventBus) -> Observer {
    let series = TaskSeries::register(registry);
    bus.count_tasks(move |fact| series.count(fact))
}

/// Registers a worker's series (per task, and its own) in a registry of
/// your own; counting lasts as long as the returned [`Observer`] is kept.
pub fn register(registry: &mut Registry, bus: &EventBus, probe: WorkerProbe) -> Observer {
    registry.register_collector(Box::new(WorkerGauges { probe }));
    register_tasks(registry, bus)
}
