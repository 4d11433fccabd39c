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
use conveyor::{Handler, ProcessCommand, Rate, RetryPolicy, TaskError};

use crate::cli::WorkerArgs;
use crate::config::{Config, HandlerSection};
use crate::template;

/// Runs the worker until SIGINT/SIGTERM.
pub async fn run(backend: Arc<dyn Backend>, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(&args.config)?;
    let global = backend.global_limits().is_some();
    let kind = backend.kind();
    let mut builder = Worker::builder(backend);
    let mut described = Vec::new();
    for (name, section) in &cfg.handlers {
        described.push(describe(name, section, global));
        let limits = handler_limits(section)?;
        if global {
            builder = builder.global_limits(name.clone(), limits);
        } else if !limits.is_unlimited() {
            eprintln!(
                "conveyor worker: the {kind} backend has no global handler limits; \
                 handler {name:?}'s concurrency/rate hold for this worker process only"
            );
        }
        builder = builder.handler(command_handler(name, section, !global)?);
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
    let slots = args.slots.or(w.slots).unwrap_or(conveyor::DEFAULT_WORKERS);
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
    let worker = builder.build()?;
    eprintln!(
        "conveyor worker: {kind} backend, queues {}, {slots} slots: up to {slots} handler \
         processes at once; handlers: {}",
        queues_shown.join(", "),
        described.join("; ")
    );
    let report = worker.run().await?;
    eprintln!(
        "conveyor worker: stopped ({}): {} completed, {} retried, {} dead, {} released",
        if report.drained {
            "drained"
        } else {
            "grace period over"
        },
        report.stats.completed,
        report.stats.retried,
        report.stats.dead,
        report.stats.released
    );
    Ok(ExitCode::SUCCESS)
}

/// One handler's limits as the start line shows them.
fn describe(name: &str, section: &HandlerSection, global: bool) -> String {
    let scope = if global { "all workers" } else { "this worker" };
    let mut parts = Vec::new();
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
    let mut h = Handler::process(name, move |params: serde_json::Value| {
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
