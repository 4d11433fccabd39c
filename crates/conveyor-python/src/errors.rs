//! conveyor's errors as the Python exceptions of `conveyor.errors`, each
//! carrying the Rust error's kind.

use conveyor::Error;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;

/// `conveyor.errors`, imported once.
static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// An exception of class `class` from `conveyor.errors`, made with `args`.
fn raise<'py, A>(py: Python<'py>, class: &str, args: A) -> PyErr
where
    A: pyo3::call::PyCallArgs<'py>,
{
    let made = ERRORS
        .get_or_try_init(py, || {
            PyModule::import(py, "conveyor.errors").map(Bound::unbind)
        })
        .and_then(|m| m.bind(py).getattr(class))
        .and_then(|c| c.call1(args));
    match made {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

/// A conveyor error as its Python exception.
pub(crate) fn to_py(e: Error) -> PyErr {
    Python::attach(|py| to_py_in(py, e))
}

/// [`to_py`] with the GIL already held.
pub(crate) fn to_py_in(py: Python<'_>, e: Error) -> PyErr {
    // The error and its causes (the driver's), on one line.
    let message = e.chain().to_string();
    match e {
        Error::Backend(b) => {
            let kind = b.kind().as_str();
            let class = if b.is_transient() {
                "BackendUnavailable"
            } else {
                "BackendError"
            };
            raise(py, class, (message, kind))
        }
        Error::InvalidConfig(_) => raise(py, "InvalidConfig", (message,)),
        Error::Unsupported(_) => raise(py, "Unsupported", (message,)),
        Error::NotFound(id) => raise(py, "TaskNotFound", (message, id.0)),
        Error::WaitTimeout(id) => raise(py, "Timeout", (message, id.0)),
        Error::TaskFailed { id, state, error } => {
            raise(py, "TaskFailed", (message, id.0, state.as_str(), error))
        }
        Error::Codec(_) => raise(py, "ConveyorError", (message,)),
        _ => raise(py, "ConveyorError", (message,)),
    }
}

/// A `ConveyorError` with this message.
pub(crate) fn conveyor_error(message: &str) -> PyErr {
    Python::attach(|py| raise(py, "ConveyorError", (message.to_string(),)))
}
