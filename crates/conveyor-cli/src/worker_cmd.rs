//! `conveyor worker`: handlers from `conveyor.toml`, each a command run per
//! task or a pool of persistent children, and the tasks of a Python app
//! (`--python MODULE:APP`, [`crate::python_app`]).
//!
//! A handler's `concurrency`, `rate` and `burst` are global — held across every
//! worker sharing the backend — when the backend stores handler limits
//! (the `GlobalLimits` part: memory, embedded, redis, postgres); on a
//! backend without them they fall back to limits of this worker process alone,
//! and the worker says so on stderr.
//!
//! Persistent handlers that run the same program with the same arguments,
//! environment and directory share one pool of children (a Python module
//! serving many tasks starts its children once, not once per task), of
//! `processes` children — by default as many as the machine has cores.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use conveyor::durable::Worker;
use conveyor::durable::{Backend, HandlerLimits, Retention};
use conveyor::{
    Handler, PersistentPool, PersistentProcess, ProcessCommand, Rate, RetryPolicy, TaskError,
};

use crate::cli::WorkerArgs;
use crate::config::{Config, HandlerSection, PythonSection};
use crate::template;

/// The file read when `--config` is not given.
const DEFAULT_CONFIG: &str = "conveyor.toml";

/// What a worker will serve, read before the backend is opened (a Python
/// app may name the backend).
#[derive(Debug)]
pub struct Plan {
    cfg: Config,
    /// The queues to serve when neither `--queue` nor the file names them.
    queues: Option<Vec<String>>,
    /// The Python app's store, if it names one.
    pub url: Option<String>,
}

/// Reads the handlers file and the Python app's tasks.
pub fn plan(args: &WorkerArgs) -> anyhow::Result<Plan> {
    let python_flag = args.python.is_some();
    let mut cfg = match &args.config {
        Some(path) => Config::load(path)?,
        None if python_flag && !Path::new(DEFAULT_CONFIG).exists() => Config::default(),
        None => Config::load(&PathBuf::from(DEFAULT_CONFIG))?,
    };
    let mut section = cfg.python.take();
    if let Some(app) = &args.python {
        section.get_or_insert_with(PythonSection::default).app = app.clone();
    }
    let Some(mut section) = section else {
        if args.interpreter.is_some() || args.processes.is_some() {
            bail!("--interpreter and --processes are for a Python app: add --python MODULE:APP");
        }
        return Ok(Plan {
            cfg,
            queues: None,
            url: None,
        });
    };
    if let Some(i) = &args.interpreter {
        section.interpreter = Some(i.clone());
    }
    if let Some(n) = args.processes {
        if n == 0 {
            bail!("--processes must be at least 1");
        }
        section.processes = Some(n);
    }
    let app = crate::python_app::load(&section)?;
    let mut queues = app.queues;
    let default = conveyor::durable::DEFAULT_QUEUE_NAME;
    if !cfg.handlers.is_empty() && !queues.iter().any(|q| q == default) {
        queues.insert(0, default.to_string());
    }
    for (name, handler) in app.handlers {
        if cfg.handlers.contains_key(&name) {
            bail!(
                "handler {name:?} is both a [handlers.{name}] section and a task of {}: rename \
                 one (@app.task(name=...))",
                section.app
            );
        }
        cfg.handlers.insert(name, handler);
    }
    cfg.python = Some(section);
    Ok(Plan {
        cfg,
        queues: Some(queues),
        url: app.url,
    })
}

/// Runs the worker until SIGINT/SIGTERM.
pub async fn run(
    backend: Arc<dyn Backend>,
    plan: Plan,
    args: WorkerArgs,
) -> anyhow::Result<ExitCode> {
    let cfg = plan.cfg;
    let global = backend.global_limits().is_ok();
    let kind = backend.kind();
    let backend_for_summary = backend.clone();
    let mut builder = Worker::builder(backend);
    let pools = Pools::new(&cfg.handlers)?;
    let slots = args
        .slots
        .or(cfg.worker.slots)
        .unwrap_or_else(|| pools.default_slots(&cfg.handlers));
    let mut described = Vec::new();
    for (name, section) in &cfg.handlers {
        described.push(describe(name, section, global, &pools));
        let limits = handler_limits(section)?;
        if global {
            builder = builder.global_limits(name.clone(), limits);
        } else if !limits.is_unlimited() {
            tracing::warn!(
                "conveyor worker: the {kind} backend has no global handler limits; \
                 handler {name:?}'s concurrency/rate hold for this worker process only"
            );
        }
        builder = if section.persistent {
            let h: Handler<serde_json::Value, serde_json::Value> =
                Handler::persistent_in(name, pools.of(section));
            builder.handler(policy(h, section, !global)?)
        } else {
            builder.handler(command_handler(name, section, !global)?)
        };
    }
    let w = &cfg.worker;
    let queues = if args.queues.is_empty() {
        w.queues.clone().or(plan.queues)
    } else {
        Some(args.queues)
    };
    let queues_shown = queues
        .clone()
        .unwrap_or_else(|| vec![conveyor::durable::DEFAULT_QUEUE_NAME.to_string()]);
    if let Some(q) = queues {
        builder = builder.queues(q);
    }
    builder = builder.slots(slots);
    if let Some(d) = args.lease.or(w.lease) {
        builder = builder.lease(d);
    }
    if let Some(d) = args.grace.or(w.grace) {
        builder = builder.grace(d);
    }
    if let Some(d) = w.poll {
        builder = builder.poll_interval(d);
    }
    let mut retention = Retention::default();
    if let Some(d) = args.keep_completed.or(w.keep_completed) {
        retention.finished = d;
    }
    if let Some(d) = args.keep_dead.or(w.keep_dead) {
        retention.dead = d;
    }
    builder = builder.retention(retention);
    // A handler's own retention, where it sets one (the other half from the
    // worker's).
    for (name, section) in &cfg.handlers {
        if section.keep_completed.is_some() || section.keep_dead.is_some() {
            let own = Retention {
                finished: section.keep_completed.unwrap_or(retention.finished),
                dead: section.keep_dead.unwrap_or(retention.dead),
            };
            builder = builder.handler_retention(name.clone(), own);
        }
    }
    for schedule in cfg.schedules()? {
        builder = builder.schedule(schedule);
    }
    builder = builder.on_task_complete(|settled| crate::task_log::log(&settled));
    let worker = builder.build()?;
    let _metrics = match args.metrics {
        Some(addr) => {
            let metrics = conveyor::metrics::Metrics::for_worker(&worker);
            let endpoint = crate::metrics_endpoint::serve(addr, metrics).await?;
            tracing::info!(
                "conveyor worker: metrics at http://{}/metrics",
                endpoint.addr
            );
            Some(endpoint)
        }
        None => None,
    };
    tracing::info!(
        "conveyor worker: {kind} backend, queues {}, {}; handlers: {}; finished tasks kept {}, \
         dead ones {}",
        queues_shown.join(", "),
        pools.slots_said(&cfg.handlers, slots),
        described.join("; "),
        humantime::format_duration(retention.finished),
        humantime::format_duration(retention.dead),
    );
    let started = std::time::Instant::now();
    let report = worker.run().await?;
    let s = &report.stats;
    tracing::info!(
        "conveyor worker: stopped after {} ({}): this worker settled {} completed, {} retried, \
         {} dead, {} discarded, {} handed back unstarted{}",
        humantime::format_duration(std::time::Duration::from_secs(started.elapsed().as_secs())),
        if report.drained {
            "every running task finished"
        } else {
            "the grace period ran out; unfinished tasks were handed back"
        },
        s.completed,
        s.retried,
        s.dead,
        s.discarded,
        s.released,
        if s.stale > 0 {
            format!(
                "; {} outcomes refused because their lease had run out (the store had taken those \
                 tasks back: they run again, or were dead-lettered if no attempt was left)",
                s.stale
            )
        } else {
            String::new()
        }
    );
    if s.unstored > 0 {
        tracing::warn!(
            "{} outcomes were never stored (the store did not take them before the stop): \
             their tasks run again once their leases run out",
            s.unstored
        );
    }
    if s.callbacks_dropped > 0 {
        tracing::warn!(
            "{} finished tasks were not logged: the log could not keep up",
            s.callbacks_dropped
        );
    }
    // A store that did not take the last outcomes is not asked again: the
    // stop is already past its grace.
    if s.unstored == 0 {
        store_summary(&backend_for_summary, &queues_shown).await;
    }
    Ok(ExitCode::SUCCESS)
}

/// How long the exit summary waits for the store: a worker stopping
/// because its store is unreachable does not wait on it again.
const SUMMARY_WITHIN: std::time::Duration = std::time::Duration::from_millis(500);

/// The queues as the store has them now, so the worker's counts can be read
/// beside the store's (`conveyor status`, `conveyor dead list`); nothing
/// when the store does not answer at once.
async fn store_summary(backend: &Arc<dyn Backend>, queues: &[String]) {
    let Ok(Ok(stats)) = tokio::time::timeout(SUMMARY_WITHIN, backend.stats()).await else {
        return;
    };
    for q in stats.iter().filter(|q| queues.contains(&q.queue)) {
        let parts: Vec<String> = conveyor::TaskState::ALL
            .iter()
            .filter(|st| q.count(**st) > 0)
            .map(|st| format!("{} {}", q.count(*st), st))
            .collect();
        tracing::info!(
            "queue {} now holds: {}",
            q.queue,
            if parts.is_empty() {
                "no tasks".to_string()
            } else {
                parts.join(", ")
            }
        );
    }
}

/// One handler's limits as the start line shows them.
fn describe(name: &str, section: &HandlerSection, global: bool, pools: &Pools) -> String {
    let scope = if global { "all workers" } else { "this worker" };
    let mut parts = Vec::new();
    if section.persistent {
        let group = pools.group_of(section);
        let shared = if group.handlers.len() > 1 {
            format!(", shared by {} handlers", group.handlers.len())
        } else {
            String::new()
        };
        parts.push(format!(
            "persistent, up to {} processes{shared}",
            group.processes
        ));
    }
    if let Some(n) = section.concurrency {
        parts.push(format!("at most {n} at once across {scope}"));
    }
    if let Some(r) = &section.rate {
        parts.push(format!("rate {r} across {scope}"));
    }
    if let Some(k) = section.keep_completed {
        parts.push(format!("completed kept {}", humantime::format_duration(k)));
    }
    if let Some(k) = section.keep_dead {
        parts.push(format!("dead kept {}", humantime::format_duration(k)));
    }
    if parts.is_empty() {
        name.to_string()
    } else {
        format!("{name} ({})", parts.join(", "))
    }
}

/// The handler's `concurrency`, `rate` and `burst` as global limits (none set:
/// unlimited, which also clears limits an earlier configuration stored).
fn handler_limits(section: &HandlerSection) -> anyhow::Result<HandlerLimits> {
    let mut limits = HandlerLimits::none();
    if let Some(n) = section.concurrency {
        limits = limits.concurrency(n);
    }
    if let Some(r) = &section.rate {
        let mut rate: Rate = r.parse()?;
        if let Some(b) = section.burst {
            rate = rate.burst(b);
        }
        limits = limits.rate(rate);
    }
    Ok(limits)
}

/// What makes two persistent handlers share children: the same program,
/// arguments, environment, directory and recycling.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ProgramKey {
    program: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    max_tasks_per_child: Option<u64>,
    max_memory: Option<String>,
}

impl ProgramKey {
    fn of(section: &HandlerSection) -> Self {
        Self {
            program: section.program.clone(),
            args: section.args.clone(),
            env: section.env.clone(),
            cwd: section.cwd.clone(),
            max_tasks_per_child: section.max_tasks_per_child,
            max_memory: section.max_memory.clone(),
        }
    }
}

/// One program's pool and the handlers it serves.
struct PoolGroup {
    pool: PersistentPool,
    processes: usize,
    handlers: Vec<String>,
}

/// The pools of the persistent handlers, one per program.
struct Pools(BTreeMap<ProgramKey, PoolGroup>);

impl Pools {
    /// Groups the persistent handlers by program. A group's children are
    /// the largest `processes` one of its handlers sets, else the core count.
    fn new(handlers: &BTreeMap<String, HandlerSection>) -> anyhow::Result<Self> {
        let mut members: BTreeMap<ProgramKey, Vec<(&String, &HandlerSection)>> = BTreeMap::new();
        for (name, section) in handlers.iter().filter(|(_, s)| s.persistent) {
            members
                .entry(ProgramKey::of(section))
                .or_default()
                .push((name, section));
        }
        let mut groups = BTreeMap::new();
        for (key, list) in members {
            let processes = list
                .iter()
                .filter_map(|(_, s)| s.processes)
                .max()
                .unwrap_or_else(cores);
            let first = list[0].1;
            let mut spec = PersistentProcess::new(&first.program)
                .args(&first.args)
                .processes(processes);
            for (k, v) in &first.env {
                spec = spec.env(k, v);
            }
            if let Some(dir) = &first.cwd {
                spec = spec.current_dir(dir);
            }
            if let Some(n) = first.max_tasks_per_child {
                spec = spec.max_tasks_per_child(n);
            }
            if let Some(bytes) = first.max_memory_bytes()? {
                spec = spec.max_memory(bytes);
            }
            let names: Vec<String> = list.iter().map(|(n, _)| (*n).clone()).collect();
            let label = if names.len() == 1 {
                names[0].clone()
            } else {
                format!("{} (serving {})", first.program, names.join(", "))
            };
            groups.insert(
                key,
                PoolGroup {
                    pool: PersistentPool::new(&label, spec),
                    processes,
                    handlers: names,
                },
            );
        }
        Ok(Self(groups))
    }

    /// The group serving a persistent handler.
    fn group_of(&self, section: &HandlerSection) -> &PoolGroup {
        &self.0[&ProgramKey::of(section)]
    }

    /// The pool serving a persistent handler.
    fn of(&self, section: &HandlerSection) -> &PersistentPool {
        &self.group_of(section).pool
    }

    /// Slots when none are set: [`PREFETCH`] per child when every handler
    /// is persistent, else [`conveyor::DEFAULT_WORKERS`].
    fn default_slots(&self, handlers: &BTreeMap<String, HandlerSection>) -> usize {
        match self.children(handlers) {
            Some(children) => children * PREFETCH,
            None => conveyor::DEFAULT_WORKERS,
        }
    }

    /// Every child of every pool, when every handler is persistent (the
    /// most tasks that can run at once, whatever the slots).
    fn children(&self, handlers: &BTreeMap<String, HandlerSection>) -> Option<usize> {
        (handlers.values().all(|h| h.persistent) && !self.0.is_empty())
            .then(|| self.0.values().map(|g| g.processes).sum())
    }

    /// What `slots` slots mean for these handlers, for the start line.
    fn slots_said(&self, handlers: &BTreeMap<String, HandlerSection>, slots: usize) -> String {
        match self.children(handlers) {
            Some(children) if slots > children => format!(
                "{slots} slots: {children} handler process{} at once, the other tasks fetched \
                 ahead for {}",
                if children == 1 { "" } else { "es" },
                if children == 1 { "it" } else { "them" },
            ),
            _ => format!("{slots} slots: up to {slots} handler processes at once"),
        }
    }
}

/// Slots per persistent child when the slots are not set: a task beyond
/// the children waits, leased but not started (its timeout not running),
/// for a free child, so the next reservation and the last finish travel
/// while the children work (Celery's default prefetch multiplier, 4, for
/// the same reason). `--slots` equal to the children fetches nothing
/// ahead, for long tasks spread over many workers.
const PREFETCH: usize = 4;

/// The machine's cores: a persistent program's children by default.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A process-lane handler running `section.program` with templated args; with
/// `local_limits`, its concurrency and rate are enforced by this process.
fn command_handler(
    name: &str,
    section: &HandlerSection,
    local_limits: bool,
) -> anyhow::Result<Handler<serde_json::Value, conveyor::ProcessOutput>> {
    let program = section.program.clone();
    let args = section.args.clone();
    let env = section.env.clone();
    let cwd = section.cwd.clone();
    let stdin_params = section.stdin_params;
    let h = Handler::process(name, move |params: serde_json::Value| {
        let mut cmd = ProcessCommand::new(&program);
        for a in &args {
            cmd = cmd.arg(template::expand(a, &params).map_err(TaskError::permanent)?);
        }
        for (k, v) in &env {
            cmd = cmd.env(k, v);
        }
        if let Some(dir) = &cwd {
            cmd = cmd.current_dir(dir);
        }
        if stdin_params {
            cmd = cmd.stdin(params.to_string().into_bytes());
        }
        Ok(cmd)
    });
    policy(h, section, local_limits)
}

/// The section's limits (with `local_limits`), retries and timeout on `h`.
fn policy<Out>(
    mut h: Handler<serde_json::Value, Out>,
    section: &HandlerSection,
    local_limits: bool,
) -> anyhow::Result<Handler<serde_json::Value, Out>>
where
    Out: Send + 'static,
{
    if local_limits {
        if let Some(n) = section.concurrency {
            h = h.concurrency(n);
        }
        if let Some(r) = &section.rate {
            let mut rate: Rate = r.parse()?;
            if let Some(b) = section.burst {
                rate = rate.burst(b);
            }
            h = h.rate(rate);
        }
    }
    if let Some(retries) = section.retries {
        let base = section.backoff.unwrap_or(Duration::from_secs(1));
        h = h.retry(
            RetryPolicy::attempts(retries.saturating_add(1))
                .backoff(base, Duration::from_secs(300)),
        );
    }
    if let Some(t) = section.timeout {
        h = h.timeout(t);
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn persistent(processes: usize) -> HandlerSection {
        HandlerSection {
            program: "python3".to_string(),
            persistent: true,
            processes: Some(processes),
            ..HandlerSection::default()
        }
    }

    #[test]
    fn persistent_children_get_tasks_fetched_ahead() {
        let handlers = BTreeMap::from([("a".to_string(), persistent(2))]);
        let pools = Pools::new(&handlers).expect("pools");
        assert_eq!(pools.default_slots(&handlers), 2 * PREFETCH);
        assert_eq!(
            pools.slots_said(&handlers, 8),
            "8 slots: 2 handler processes at once, the other tasks fetched ahead for them"
        );
        // Slots set to the children fetch nothing ahead.
        assert_eq!(
            pools.slots_said(&handlers, 2),
            "2 slots: up to 2 handler processes at once"
        );
    }

    #[test]
    fn a_handler_run_per_task_keeps_the_default_slots() {
        let handlers = BTreeMap::from([
            ("a".to_string(), persistent(2)),
            (
                "b".to_string(),
                HandlerSection {
                    program: "true".to_string(),
                    ..HandlerSection::default()
                },
            ),
        ]);
        let pools = Pools::new(&handlers).expect("pools");
        assert_eq!(pools.default_slots(&handlers), conveyor::DEFAULT_WORKERS);
        assert_eq!(
            pools.slots_said(&handlers, 50),
            "50 slots: up to 50 handler processes at once"
        );
    }
}
