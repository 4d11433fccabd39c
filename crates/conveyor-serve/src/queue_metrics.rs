//! `GET /metrics`: Prometheus gauges read from the backend at each scrape —
//! tasks by queue and state, the age of each queue's oldest ready task, and
//! the workers alive — in the OpenMetrics text format. Workers export their
//! own counters on `conveyor worker --metrics`; these are the store's view,
//! one place for every queue whoever works on it. A backend without a part
//! (counts, a worker registry) leaves its series out rather than fail the
//! scrape.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use conveyor_core::WORKER_SILENCE;
use conveyor_core::{TaskState, Timestamp};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::error::ApiError;
use crate::state::AppState;

/// The content type of the exposition.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

/// The gauges as of now.
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut registry = Registry::with_prefix("conveyor");
    let now = Timestamp::now();
    let tasks = Family::<Labels, Gauge>::default();
    let oldest = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    // A backend that cannot count (RabbitMQ) still answers the scrape, with
    // the series it has: a failing scrape would mark the target down.
    let queues = match state.backend.stats().await {
        Ok(queues) => queues,
        Err(conveyor_core::Error::Unsupported(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    for q in queues {
        for s in TaskState::ALL {
            let labels = vec![
                ("queue", q.queue.clone()),
                ("state", s.as_str().to_string()),
            ];
            tasks
                .get_or_create(&labels)
                .set(i64::try_from(q.count(s)).unwrap_or(i64::MAX));
        }
        let age = q.oldest_ready.map_or(0.0, |t| now.since(t).as_secs_f64());
        oldest
            .get_or_create(&vec![("queue", q.queue.clone())])
            .set(age);
    }
    registry.register(
        "queue_tasks",
        "Tasks in the store, by queue and state",
        tasks,
    );
    registry.register_with_unit(
        "queue_oldest_ready_age",
        "How long the oldest ready task of each queue has waited (0 when none waits)",
        Unit::Seconds,
        oldest,
    );
    if let Ok(r) = state.backend.registry() {
        let alive = r
            .workers(now.minus(WORKER_SILENCE))
            .await?
            .into_iter()
            .filter(|w| w.is_alive(now))
            .count();
        let gauge = Gauge::<i64>::default();
        gauge.set(i64::try_from(alive).unwrap_or(i64::MAX));
        registry.register(
            "workers_alive",
            "Workers that sent a heartbeat lately and have not stopped",
            gauge,
        );
    }
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    Ok(([(CONTENT_TYPE, OPENMETRICS)], text).into_response())
}
