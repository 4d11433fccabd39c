//! `conveyor._native`: the Rust client under the `conveyor` Python package.
//!
//! The Python side (`python/conveyor/`) has the user's API — `App`, the
//! `@app.task` decorator, `delay()`, `get()` — and encodes params as JSON;
//! this module opens a backend by URL through the same schemes as the CLI, so
//! every backend works from Python with no second implementation of any
//! store's protocol. Every call that talks to the store releases the GIL
//! while it waits (`Python::detach`), so Python threads enqueue and wait in
//! parallel, and a blocking wait still answers Ctrl-C.

mod client;
mod errors;
mod options;
mod record;
mod runtime;
mod waiter;

/// The native half of the `conveyor` package (use `conveyor.App`).
#[pyo3::pymodule(name = "_native")]
mod native {
    use pyo3::prelude::*;

    #[pymodule_export]
    use crate::client::Client;
    #[pymodule_export]
    use crate::waiter::Waiter;

    /// Checks a rate such as `10/s` or `100/m`; raises `InvalidConfig`.
    #[pyfunction]
    fn check_rate(rate: &str) -> PyResult<()> {
        rate.parse::<conveyor::Rate>()
            .map(|_| ())
            .map_err(crate::errors::to_py)
    }

    /// The URL a client opens when given none: `CONVEYOR_URL`, else the
    /// embedded store `./conveyor.db`.
    #[pyfunction]
    #[pyo3(signature = (url=None))]
    fn resolve_url(url: Option<&str>) -> String {
        conveyor::durable::resolve_url(url)
    }

    /// Readies the open handles of this process for a fork (registered with
    /// `os.register_at_fork` by the package; the embedded store's database
    /// threads commit, close their connections and wait).
    #[pyfunction]
    fn before_fork() {
        conveyor::durable::fork::before();
    }

    /// In the parent after a fork: its handles go on.
    #[pyfunction]
    fn after_fork_in_parent() {
        conveyor::durable::fork::after_in_parent();
    }

    /// In the child after a fork: handles open as in a new process.
    #[pyfunction]
    fn after_fork_in_child() {
        conveyor::durable::fork::after_in_child();
    }

    /// The version of the Rust crates this module was built from.
    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
