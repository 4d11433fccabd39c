//! A background wait, cancellable from Python.

use pyo3::prelude::*;
use tokio::task::AbortHandle;

/// A wait started by `Client.wait_then`.
#[pyclass(module = "conveyor._native", frozen)]
pub struct Waiter {
    task: AbortHandle,
}

impl Waiter {
    pub(crate) fn new(task: AbortHandle) -> Self {
        Self { task }
    }
}

#[pymethods]
impl Waiter {
    /// Stops waiting; the callback is not called.
    fn cancel(&self) {
        self.task.abort();
    }

    /// True once the wait has ended (its callback called) or was cancelled.
    #[getter]
    fn done(&self) -> bool {
        self.task.is_finished()
    }
}
