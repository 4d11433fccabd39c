//! `conveyor worker`: handlers from `conveyor.toml`, each a command run per task.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use conveyor::durable::Worker;
use conveyor::{Backend, Handler, ProcessCommand, Rate, RetryPolicy, TaskError};

use crate::cli::WorkerArgs;
use crate::config::{Config, HandlerSection};
use crate::template;

/// Runs the worker until SIGINT/SIGTERM.
pub async fn run(backend: Arc<dyn Backend>, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(&args.config)?;
    let mut builder = Worker::builder(backend);
    for (name, section) in &cfg.handlers {
        builder = builder.handler(command_handler(name, section)?);
    }
    let w = &cfg.worker;
    let queues = if args.queues.is_empty() {
        w.queues.clone()
    } else {
        Some(args.queues)
    };
    if let Some(q) = queues {
        builder = builder.queues(q);
    }
    if let Some(n) = args.slots.or(w.slots) {
        builder = builder.slots(n);
    }
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

/// A process-lane handler running `section.program` with templated args.
fn command_handler(
    name: &str,
    section: &HandlerSection,
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
