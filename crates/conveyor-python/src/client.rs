//! `conveyor._native.Client`: one backend, opened by URL, and the calls the
//! Python package makes on it.

use std::sync::Arc;
use std::time::Duration;

use conveyor::durable::workflow::{self, WorkflowId, WorkflowRecord};
use conveyor::durable::{finished_record, Backend, Enqueued, NewTask};
use conveyor::{Error, TaskId, TaskState};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::errors::{conveyor_error, to_py, to_py_in};
use crate::options::enqueue_options;
use crate::record::to_dict;
use crate::runtime::{block_on, runtime};
use crate::waiter::Waiter;

/// An open backend. Made by `conveyor.App`; every method that talks to the
/// store releases the GIL while it waits.
#[pyclass(module = "conveyor._native", frozen)]
pub struct Client {
    backend: Arc<dyn Backend>,
    url: String,
    /// The process that opened it: its connections and runtime do not
    /// survive a fork.
    pid: u32,
}

impl Client {
    /// The backend, refused in a forked child of the process that opened it.
    fn backend(&self) -> PyResult<&Arc<dyn Backend>> {
        if std::process::id() != self.pid {
            return Err(crate::errors::conveyor_error(
                "this client was opened before a fork; its connections belong to the parent \
                 process (conveyor.App reconnects by itself in the child)",
            ));
        }
        Ok(&self.backend)
    }
}

/// The timeout as a duration (`None`: wait as long as it takes).
fn wait_limit(timeout: Option<f64>) -> PyResult<Duration> {
    match timeout {
        None => Ok(Duration::MAX),
        Some(s) => Duration::try_from_secs_f64(s).map_err(|_| {
            to_py(Error::InvalidConfig(format!(
                "timeout must be a finite number of seconds, at least 0 (got {s})"
            )))
        }),
    }
}

/// Waits for task `id` to finish, up to `limit`.
async fn finished(
    backend: Arc<dyn Backend>,
    id: TaskId,
    limit: Duration,
) -> Result<conveyor::durable::TaskRecord, Error> {
    finished_record(backend.result_store()?, id, limit).await
}

#[pymethods]
impl Client {
    /// Opens the backend `url` names (`None`: `CONVEYOR_URL`, else the
    /// embedded store `./conveyor.db`).
    #[new]
    #[pyo3(signature = (url=None))]
    fn new(py: Python<'_>, url: Option<&str>) -> PyResult<Self> {
        let url = conveyor::durable::resolve_url(url);
        let target = url.clone();
        let backend = block_on(py, async move {
            conveyor::durable::connect(&target).await.map_err(to_py)
        })?;
        Ok(Self {
            backend,
            url,
            pid: std::process::id(),
        })
    }

    /// The URL it was opened with (secrets hidden).
    #[getter]
    fn url(&self) -> String {
        conveyor::redact_url(&self.url)
    }

    /// The backend's kind: `embedded`, `redis`, `postgres`, …
    #[getter]
    fn kind(&self) -> String {
        self.backend.kind().to_string()
    }

    /// Enqueues one task: `(id, duplicate)`, where `duplicate` says an
    /// unfinished task with the same unique key was found instead.
    #[pyo3(signature = (handler, payload, options=None))]
    fn enqueue(
        &self,
        py: Python<'_>,
        handler: &str,
        payload: &[u8],
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<(u64, bool)> {
        let task = enqueue_options(options)?.to_task(handler, payload.to_vec());
        let backend = self.backend()?.clone();
        let e = block_on(
            py,
            async move { backend.enqueue(task).await.map_err(to_py) },
        )?;
        Ok((e.id.0, e.duplicate))
    }

    /// Enqueues one task per payload, all with the same options, in one
    /// atomic batch: `[(id, duplicate), …]` in the payloads' order.
    #[pyo3(signature = (handler, payloads, options=None))]
    fn enqueue_many(
        &self,
        py: Python<'_>,
        handler: &str,
        payloads: Vec<Vec<u8>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Vec<(u64, bool)>> {
        let opts = enqueue_options(options)?;
        let tasks: Vec<NewTask> = payloads
            .into_iter()
            .map(|p| opts.to_task(handler, p))
            .collect();
        let backend = self.backend()?.clone();
        let done: Vec<Enqueued> = block_on(py, async move {
            backend.enqueue_many(tasks).await.map_err(to_py)
        })?;
        Ok(done.into_iter().map(|e| (e.id.0, e.duplicate)).collect())
    }

    /// The task's record as a dict, or `None` when the store has none (never
    /// enqueued, or pruned after its retention).
    fn get<'py>(&self, py: Python<'py>, id: u64) -> PyResult<Option<Bound<'py, PyDict>>> {
        let backend = self.backend()?.clone();
        let record = block_on(
            py,
            async move { backend.get(TaskId(id)).await.map_err(to_py) },
        )?;
        record.map(|r| to_dict(py, &r)).transpose()
    }

    /// Waits until the task has finished and returns its record; raises
    /// `Timeout` after `timeout` seconds, `TaskNotFound` for an unknown id.
    #[pyo3(signature = (id, timeout=None))]
    fn wait<'py>(
        &self,
        py: Python<'py>,
        id: u64,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let limit = wait_limit(timeout)?;
        let backend = self.backend()?.clone();
        let record = block_on(py, async move {
            finished(backend, TaskId(id), limit).await.map_err(to_py)
        })?;
        to_dict(py, &record)
    }

    /// Waits in the background and calls `callback(record, None)` once the
    /// task has finished, or `callback(None, exception)`; the call comes from
    /// a thread of the runtime (asyncio callers hop back to their loop with
    /// `call_soon_threadsafe`). `Waiter.cancel()` stops waiting.
    #[pyo3(signature = (id, callback, timeout=None))]
    fn wait_then(&self, id: u64, callback: Py<PyAny>, timeout: Option<f64>) -> PyResult<Waiter> {
        let limit = wait_limit(timeout)?;
        let backend = self.backend()?.clone();
        let task = runtime()?.spawn(async move {
            let out = finished(backend, TaskId(id), limit).await;
            Python::attach(|py| {
                let args = match out {
                    Ok(r) => match to_dict(py, &r) {
                        Ok(d) => (d.into_any().unbind(), py.None()),
                        Err(e) => (py.None(), e.into_value(py).into_any()),
                    },
                    Err(e) => (py.None(), to_py_in(py, e).into_value(py).into_any()),
                };
                if let Err(e) = callback.call1(py, args) {
                    e.write_unraisable(py, None);
                }
            });
        });
        Ok(Waiter::new(task.abort_handle()))
    }

    /// Cancels a waiting or running task; returns its state afterwards
    /// (`cancelled`, or the finished state it had reached). A running
    /// task's worker stops it within about a second.
    fn cancel(&self, py: Python<'_>, id: u64) -> PyResult<String> {
        let backend = self.backend()?.clone();
        let state: TaskState = block_on(py, async move {
            backend.cancel(TaskId(id)).await.map_err(to_py)
        })?;
        Ok(state.as_str().to_string())
    }

    /// Submits a workflow declared as JSON (the form `conveyor workflow
    /// submit` reads): `(id, [(node, task id), …])` for the nodes started
    /// at once. Raises `InvalidConfig` naming what is wrong, `Unsupported`
    /// on a backend without workflows.
    fn submit_workflow(
        &self,
        py: Python<'_>,
        declaration: &[u8],
    ) -> PyResult<(u64, Vec<(String, u64)>)> {
        let spec = workflow::declared::from_json(declaration).map_err(to_py)?;
        let backend = self.backend()?.clone();
        let submitted = block_on(py, async move {
            backend.submit_workflow(spec).await.map_err(to_py)
        })?;
        Ok((
            submitted.id.0,
            submitted
                .started
                .into_iter()
                .map(|(node, task)| (node, task.0))
                .collect(),
        ))
    }

    /// Workflow `id` as a dict (`id`, `state`, `nodes`: each with `name`,
    /// `state`, `task`, `after`, `callback`), or `None` when there is none.
    fn workflow<'py>(&self, py: Python<'py>, id: u64) -> PyResult<Option<Bound<'py, PyDict>>> {
        let backend = self.backend()?.clone();
        let record = block_on(py, async move {
            backend.workflow(WorkflowId(id)).await.map_err(to_py)
        })?;
        record.map(|w| workflow_dict(py, &w)).transpose()
    }

    /// Cancels every node of workflow `id` that has not settled: how many
    /// (0 once it had ended), or `None` when there is no such workflow.
    fn cancel_workflow(&self, py: Python<'_>, id: u64) -> PyResult<Option<u64>> {
        let backend = self.backend()?.clone();
        block_on(py, async move {
            backend.cancel_workflow(WorkflowId(id)).await.map_err(to_py)
        })
    }

    /// The workflows, newest first: at most `limit`, only those in `state`
    /// (`running`, `succeeded`, `failed`, `cancelled`) when given, older
    /// than workflow `before` when given. Each a dict: `id`, `state`,
    /// `nodes`, `left`, `created_at`, `ended_at` (seconds).
    #[pyo3(signature = (state=None, limit=50, before=None))]
    fn list_workflows<'py>(
        &self,
        py: Python<'py>,
        state: Option<&str>,
        limit: usize,
        before: Option<u64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let state = state
            .map(|s| {
                workflow::WorkflowState::parse(s).ok_or_else(|| {
                    to_py_in(
                        py,
                        Error::InvalidConfig(format!(
                            "{s:?} is not a workflow state (running, succeeded, failed, cancelled)"
                        )),
                    )
                })
            })
            .transpose()?;
        if limit == 0 {
            return Err(to_py_in(
                py,
                Error::InvalidConfig("limit must be at least 1".into()),
            ));
        }
        let filter = workflow::WorkflowFilter {
            state,
            limit,
            before: before.map(WorkflowId),
        };
        let backend = self.backend()?.clone();
        let page = block_on(py, async move {
            backend.list_workflows(&filter).await.map_err(to_py)
        })?;
        let out = PyList::empty(py);
        for w in &page {
            let d = PyDict::new(py);
            d.set_item("id", w.id.0)?;
            d.set_item("state", w.state.as_str())?;
            d.set_item("nodes", w.nodes)?;
            d.set_item("left", w.left)?;
            d.set_item("created_at", seconds(w.created_at))?;
            d.set_item("ended_at", w.ended_at.map(seconds))?;
            out.append(d)?;
        }
        Ok(out)
    }

    /// Puts the failed part of the ended workflow `id` back to run: how
    /// many nodes (0 when nothing had failed), or `None` when there is no
    /// such workflow; raises `ConveyorError` while it still runs.
    fn retry_workflow(&self, py: Python<'_>, id: u64) -> PyResult<Option<u64>> {
        let backend = self.backend()?.clone();
        let retried = block_on(py, async move {
            backend.retry_workflow(WorkflowId(id)).await.map_err(to_py)
        })?;
        match retried {
            None => Ok(None),
            Some(workflow::Retried::Nodes(n)) => Ok(Some(n)),
            Some(workflow::Retried::Running) => Err(conveyor_error(
                &workflow::Retried::running_refusal(WorkflowId(id)),
            )),
        }
    }

    fn __repr__(&self) -> String {
        format!("Client({:?})", conveyor::redact_url(&self.url))
    }
}

/// A workflow's record as the Python package reads it.
fn workflow_dict<'py>(py: Python<'py>, w: &WorkflowRecord) -> PyResult<Bound<'py, PyDict>> {
    let nodes = PyList::empty(py);
    for n in &w.nodes {
        let node = PyDict::new(py);
        node.set_item("name", &n.name)?;
        node.set_item("state", n.state.as_str())?;
        node.set_item("task", n.task.map(|t| t.0))?;
        node.set_item("after", &n.after)?;
        node.set_item("callback", n.callback.map(|c| c.key()))?;
        match &n.expanded {
            Some((output, last)) => {
                let e = PyDict::new(py);
                e.set_item("output", output.as_str())?;
                e.set_item("last", last)?;
                node.set_item("expanded", e)?;
            }
            None => node.set_item("expanded", py.None())?,
        }
        nodes.append(node)?;
    }
    let d = PyDict::new(py);
    d.set_item("id", w.id.0)?;
    d.set_item("state", w.state.as_str())?;
    d.set_item("created_at", seconds(w.created_at))?;
    d.set_item("ended_at", w.ended_at.map(seconds))?;
    d.set_item("nodes", nodes)?;
    Ok(d)
}

/// A time as Python reads it: seconds since the epoch.
fn seconds(t: conveyor::Timestamp) -> f64 {
    t.as_millis() as f64 / 1000.0
}
