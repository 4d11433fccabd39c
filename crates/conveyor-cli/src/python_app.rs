//! `conveyor worker --python MODULE:APP`: the `@app.task` functions of an app
//! made with conveyor's Python package, served as persistent handlers.
//!
//! The worker asks the app itself what it declares — `python -m
//! conveyor._manifest MODULE:APP` prints the interpreter, the app's store URL
//! and every task with its decorator's options — and makes one persistent
//! handler per task, all served by one pool of `python -m conveyor._worker
//! MODULE:APP` children (the request names the task). The functions and
//! their options are written once, in Python.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::config::{HandlerSection, PythonSection};

/// The interpreter used when neither `--interpreter`, `[python] interpreter`
/// nor `$CONVEYOR_PYTHON` names one.
const DEFAULT_INTERPRETER: &str = "python3";

/// What `conveyor._manifest` prints.
#[derive(Debug, Deserialize)]
struct Manifest {
    /// The interpreter's own path (`sys.executable`): the children run it.
    executable: String,
    /// The app's store URL, if it names one.
    url: Option<String>,
    tasks: Vec<ManifestTask>,
}

/// One `@app.task`, with the options the worker applies.
#[derive(Debug, Deserialize)]
struct ManifestTask {
    name: String,
    queue: String,
    retries: Option<u32>,
    /// Seconds.
    backoff: Option<f64>,
    /// Seconds.
    timeout: Option<f64>,
    rate: Option<String>,
    burst: Option<u32>,
    concurrency: Option<u32>,
    /// Seconds: how long its completed and cancelled tasks are kept.
    #[serde(default)]
    keep_completed: Option<f64>,
    /// Seconds: how long its dead tasks are kept.
    #[serde(default)]
    keep_dead: Option<f64>,
}

/// An app's tasks as handlers, with the queues they wait in and its URL.
#[derive(Debug)]
pub struct PythonApp {
    /// One persistent handler per task, all running the same children.
    pub handlers: BTreeMap<String, HandlerSection>,
    /// The tasks' queues, `default` first, then by name.
    pub queues: Vec<String>,
    /// The store the app names (`App(url)`), if any.
    pub url: Option<String>,
}

/// Asks the app for its tasks (runs the interpreter once).
pub fn load(section: &PythonSection) -> anyhow::Result<PythonApp> {
    let interpreter = section
        .interpreter
        .clone()
        .or_else(|| std::env::var("CONVEYOR_PYTHON").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_INTERPRETER.to_string());
    let out = Command::new(&interpreter)
        .args(["-m", "conveyor._manifest", &section.app])
        .output()
        .with_context(|| format!("cannot run {interpreter} to read the app {}", section.app))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("No module named 'conveyor'") {
            " (install conveyor's Python package in that interpreter: pip install ./python \
             from a checkout)"
        } else {
            ""
        };
        bail!(
            "cannot read the tasks of {} with {interpreter}{hint}: {}",
            section.app,
            stderr.trim()
        );
    }
    let manifest: Manifest = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "{interpreter} -m conveyor._manifest {} printed no manifest",
            section.app
        )
    })?;
    if manifest.tasks.is_empty() {
        bail!(
            "{} declares no task: decorate functions with @app.task",
            section.app
        );
    }
    let mut handlers = BTreeMap::new();
    let mut queues: Vec<String> = Vec::new();
    for t in manifest.tasks {
        if !queues.contains(&t.queue) {
            queues.push(t.queue.clone());
        }
        handlers.insert(t.name.clone(), handler(&manifest.executable, section, t)?);
    }
    queues.sort_by_key(|q| (q != conveyor::durable::DEFAULT_QUEUE_NAME, q.clone()));
    Ok(PythonApp {
        handlers,
        queues,
        url: manifest.url,
    })
}

/// A task as a persistent handler of the app's children.
fn handler(
    executable: &str,
    section: &PythonSection,
    t: ManifestTask,
) -> anyhow::Result<HandlerSection> {
    let seconds = |what: &str, s: Option<f64>| -> anyhow::Result<Option<Duration>> {
        s.map(|s| {
            Duration::try_from_secs_f64(s)
                .map_err(|_| anyhow::anyhow!("task {:?}: {what} {s} is not a duration", t.name))
        })
        .transpose()
    };
    Ok(HandlerSection {
        program: executable.to_string(),
        args: vec![
            "-m".to_string(),
            "conveyor._worker".to_string(),
            section.app.clone(),
        ],
        concurrency: t.concurrency,
        rate: t.rate.clone(),
        burst: t.burst,
        retries: t.retries,
        backoff: seconds("backoff", t.backoff)?,
        timeout: seconds("timeout", t.timeout)?,
        keep_completed: seconds("keep_completed", t.keep_completed)?,
        keep_dead: seconds("keep_dead", t.keep_dead)?,
        persistent: true,
        processes: section.processes,
        max_tasks_per_child: section.max_tasks_per_child,
        max_memory: section.max_memory.clone(),
        ..HandlerSection::default()
    })
}
