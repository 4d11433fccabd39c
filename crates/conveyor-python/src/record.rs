//! A task's record as the dict the Python side reads.

use conveyor::durable::TaskRecord;
use conveyor::Timestamp;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

/// Unix seconds.
fn seconds(t: Timestamp) -> f64 {
    // Milliseconds since 1970 fit an f64 exactly until the year 287,000.
    #[allow(clippy::cast_precision_loss)]
    let ms = t.as_millis() as f64;
    ms / 1000.0
}

/// The record's fields: `id`, `queue`, `handler`, `state`, `attempts`,
/// `max_attempts`, `result` (the encoded result, bytes), `error`,
/// `created_at`, `run_at`, `finished_at`, `expires_at` (Unix seconds: when
/// the finished task may be deleted, if its own keep or its handler's
/// retention set a time), `keep` (seconds, as given at enqueue) and
/// `attempt_errors` (the errors of the attempts the store kept, oldest
/// first).
pub(crate) fn to_dict<'py>(py: Python<'py>, r: &TaskRecord) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("id", r.id.0)?;
    d.set_item("queue", &r.queue)?;
    d.set_item("handler", &r.handler)?;
    d.set_item("state", r.state.as_str())?;
    d.set_item("attempts", r.attempts)?;
    d.set_item("max_attempts", r.max_attempts)?;
    d.set_item("result", r.result.as_deref().map(|b| PyBytes::new(py, b)))?;
    d.set_item("error", r.error.as_deref())?;
    d.set_item("created_at", seconds(r.created_at))?;
    d.set_item("run_at", seconds(r.run_at))?;
    d.set_item("finished_at", r.finished_at.map(seconds))?;
    d.set_item("expires_at", r.expires_at.map(seconds))?;
    d.set_item("keep", r.keep.map(|k| k.as_secs_f64()))?;
    let errors: Vec<Option<&str>> = r.history.iter().map(|a| a.outcome.error()).collect();
    d.set_item("attempt_errors", errors)?;
    Ok(d)
}
