//! `conveyor submit`: enqueue one task; with `--wait`, print its result.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use conveyor::{Backend, Client, EnqueueOptions, Error, TaskType};
use serde_json::Value;

use crate::cli::SubmitArgs;

/// Exit status when `--wait` ends with a failed task.
const TASK_FAILED: u8 = 1;
/// Exit status when `--wait --timeout` runs out.
const WAIT_TIMED_OUT: u8 = 3;

/// Enqueues the task.
pub async fn run(backend: Arc<dyn Backend>, args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let params: Value = match &args.params {
        Some(text) => serde_json::from_str(text)
            .with_context(|| format!("PARAMS_JSON is not valid JSON: {text}"))?,
        None => Value::Null,
    };
    let mut opts = EnqueueOptions::new()
        .queue(&args.queue)
        .priority(args.priority)
        .max_attempts(args.max_attempts);
    if let Some(d) = args.delay {
        opts = opts.delay(d);
    }
    if let Some(k) = &args.key {
        opts = opts.ordering_key(k);
    }
    if let Some(k) = &args.unique {
        opts = opts.unique_key(k);
    }
    if let Some(t) = args.task_timeout {
        opts = opts.timeout(t);
    }
    let ty: TaskType<Value, Value> = TaskType::named(&args.handler);
    let client = Client::new(backend);
    let handle = client.enqueue_with(&ty, &params, &opts).await?;
    if !args.wait {
        println!("{}", handle.id());
        if handle.is_duplicate() {
            eprintln!("conveyor: an unfinished task with this unique key exists; that is its id");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let result = match args.timeout {
        Some(t) => handle.wait_timeout(t).await,
        None => handle.wait().await,
    };
    match result {
        Ok(v) => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{v}")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::TaskFailed { id, state, error }) => {
            eprintln!("conveyor: task {id} ended {state}: {error}");
            Ok(ExitCode::from(TASK_FAILED))
        }
        Err(Error::WaitTimeout(id)) => {
            eprintln!("conveyor: task {id} has not finished yet (still queued or running)");
            Ok(ExitCode::from(WAIT_TIMED_OUT))
        }
        Err(e) => Err(e.into()),
    }
}
