//! The options of `apply_async` as the Python side passes them: a dict of
//! plain values (seconds as floats, a start time as Unix seconds).

use std::time::Duration;

use conveyor::{EnqueueOptions, Error, Timestamp};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Reads `opts` (`None`: the defaults). Unknown keys are refused, so a typo
/// is an error rather than an option silently ignored.
pub(crate) fn enqueue_options(opts: Option<&Bound<'_, PyDict>>) -> PyResult<EnqueueOptions> {
    let mut out = EnqueueOptions::new();
    let Some(opts) = opts else {
        return Ok(out);
    };
    for (key, value) in opts.iter() {
        let key: String = key.extract()?;
        if value.is_none() {
            continue;
        }
        out = match key.as_str() {
            "queue" => out.queue(value.extract::<String>()?),
            "priority" => out.priority(value.extract::<i32>()?),
            "delay" => out.delay(seconds("delay", value.extract()?)?),
            "run_at" => out.run_at(unix_time(value.extract()?)?),
            "max_attempts" => out.max_attempts(value.extract::<u32>()?),
            "timeout" => out.timeout(seconds("timeout", value.extract()?)?),
            "unique_key" => out.unique_key(value.extract::<String>()?),
            "ordering_key" => out.ordering_key(value.extract::<String>()?),
            "keep" => out.keep(seconds("keep", value.extract()?)?),
            other => {
                return Err(crate::errors::to_py(Error::InvalidConfig(format!(
                    "unknown enqueue option {other:?}"
                ))))
            }
        };
    }
    Ok(out)
}

/// A non-negative, finite number of seconds.
fn seconds(what: &str, s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| {
        crate::errors::to_py(Error::InvalidConfig(format!(
            "{what} must be a finite number of seconds, at least 0 (got {s})"
        )))
    })
}

/// Unix seconds as a timestamp (millisecond precision).
fn unix_time(s: f64) -> PyResult<Timestamp> {
    if !s.is_finite() || s.abs() > 1e14 {
        return Err(crate::errors::to_py(Error::InvalidConfig(format!(
            "run_at must be a time (Unix seconds), got {s}"
        ))));
    }
    // In range: |s| ≤ 1e14 s is ≤ 1e17 ms, well inside an i64.
    #[allow(clippy::cast_possible_truncation)]
    Ok(Timestamp((s * 1000.0).round() as i64))
}
