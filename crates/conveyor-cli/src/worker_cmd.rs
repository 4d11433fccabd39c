//! `conveyor worker`: handlers from `conveyor.toml`, each a command run per task.
//!
//! A handler's `concurrency`, `rate` and `burst` are global — held across every
//! worker sharing the backend — when the backend stores handler limits
//! (the `GlobalLimits` part: memory, embedded, redis, postgres); on a
//! backend without them they fall back to limits of this worker process alone,
//! and the worker says so on stderr.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use conveyor::durable::Worker;
use conveyor::durable::{Backend, HandlerLimits};
use conveyor::{Handler, PersistentProcess, ProcessCommand, Rate, RetryPolicy, TaskError};

use crate::cli::WorkerArgs;
use crate::config::{Config, HandlerSection};
use crate::template;

/// Runs the worker until SIGINT/SIGTERM.
pub async fn run(backend: Arc<dyn Backend>, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(&args.config)?;
    let global = backend.global_limits().is_ok();
    let kind = backend.kind();
    let backend_for_summary = backend.clone();
    let mut builder = Worker::builder(backend);
    let slots = args
        .slots
        .or(cfg.worker.slots)
        .unwrap_or(conveyor::DEFAULT_WORKERS);
    let mut described = Vec::new();
    for (name, section) in &cfg.handlers {
        described.push(describe(name, section, global, slots));
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
            builder.handler(persistent_handler(name, section, !global, slots)?)
        } else {
            builder.handler(command_handler(name, section, !global)?)
        };
    }
    let w = &cfg.worker;
    let queues = if args.queues.is_empty() {
        w.queues.clone()
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
        "conveyor worker: {kind} backend, queues {}, {slots} slots: up to {slots} handler \
         processes at once; handlers: {}",
        queues_shown.join(", "),
        described.join("; ")
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
fn describe(name: &str, section: &HandlerSection, global: bool, slots: usize) -> String {
    let scope = if global { "all workers" } else { "this worker" };
    let mut parts = Vec::new();
    if section.persistent {
        parts.push(format!(
            "persistent, up to {} processes",
            processes(section, slots)
        ));
    }
    if let Some(n) = section.concurrency {
        parts.push(format!("at most {n} at once across {scope}"));
    }
    if let Some(r) = &section.rate {
        parts.push(format!("rate {r} across {scope}"));
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

/// How many children a persistent handler may have: `processes`, else its
/// `concurrency`, else one per slot.
fn processes(section: &HandlerSection, slots: usize) -> usize {
    section
        .processes
        .or(section.concurrency.map(|n| n as usize))
        .unwrap_or(slots)
}

/// A persistent handler: up to `processes` (else `concurrency`, else the
/// worker's slots) long-lived children of `section.program`, each fed task
/// after task over the line protocol.
fn persistent_handler(
    name: &str,
    section: &HandlerSection,
    local_limits: bool,
    slots: usize,
) -> anyhow::Result<Handler<serde_json::Value, serde_json::Value>> {
    let processes = processes(section, slots);
    let mut spec = PersistentProcess::new(&section.program)
        .args(&section.args)
        .processes(processes);
    for (k, v) in &section.env {
        spec = spec.env(k, v);
    }
    if let Some(dir) = &section.cwd {
        spec = spec.current_dir(dir);
    }
    if let Some(n) = section.max_tasks_per_child {
        spec = spec.max_tasks_per_child(n);
    }
    if let Some(bytes) = section.max_memory_bytes()? {
        spec = spec.max_memory(bytes);
    }
    policy(Handler::persistent(name, spec), section, local_limits)
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
