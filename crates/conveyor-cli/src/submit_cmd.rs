//! `conveyor submit`: enqueue one task; with `--wait`, print its result.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use conveyor::durable::Backend;
use conveyor::{Client, EnqueueOptions, TaskType};
use serde_json::Value;

use crate::cli::SubmitArgs;
use crate::verdict::{decoded, line, Verdict};
use crate::waiting::Waiter;

/// Enqueues the task (or, with `--lines`, one task per stdin line).
pub async fn run(backend: Arc<dyn Backend>, args: SubmitArgs) -> anyhow::Result<ExitCode> {
    if let Some(file) = args.workflow {
        let args = crate::cli::WorkflowSubmitArgs {
            file,
            wait: args.wait,
            timeout: args.timeout,
        };
        return crate::workflow_cmd::submit(backend, args).await;
    }
    let Some(handler) = args.handler.as_deref() else {
        anyhow::bail!("give a handler, or --workflow FILE");
    };
    let opts = options(&args);
    let ty: TaskType<Value, Value> = TaskType::named(handler);
    let client = Client::new(backend);
    if args.lines {
        let wait = args
            .wait
            .then(|| Waiter::new(client.backend().clone(), args.timeout, args.warn_after));
        return submit_lines(&client, &ty, &opts, args.batch.max(1), wait).await;
    }
    let params: Value = match &args.params {
        Some(text) => serde_json::from_str(text)
            .with_context(|| format!("PARAMS_JSON is not valid JSON: {text}"))?,
        None => Value::Null,
    };
    let handle = client.enqueue_with(&ty, &params, &opts).await?;
    if !args.wait {
        println!("{}", handle.id());
        if handle.is_duplicate() {
            eprintln!("conveyor: an unfinished task with this unique key exists; that is its id");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let waiter = Waiter::new(client.backend().clone(), args.timeout, args.warn_after);
    let record = waiter.wait(handle.id()).await?;
    let verdict = Verdict::of(record.as_ref());
    match (verdict, record) {
        (Verdict::Completed, Some(r)) => {
            let v = r.result.as_deref().map(decoded).unwrap_or(Value::Null);
            let mut out = std::io::stdout().lock();
            writeln!(out, "{v}")?;
        }
        (Verdict::Unfinished, _) => {
            eprintln!(
                "conveyor: task {} has not finished yet (still queued or running)",
                handle.id()
            );
        }
        (_, Some(r)) => eprintln!(
            "conveyor: task {} ended {}: {}",
            r.id,
            r.state,
            r.error.as_deref().unwrap_or("no error recorded")
        ),
        (_, None) => eprintln!("conveyor: task {} is gone (pruned)", handle.id()),
    }
    Ok(Verdict::exit([verdict]))
}

/// The enqueue options the flags describe.
fn options(args: &SubmitArgs) -> EnqueueOptions {
    let mut opts = EnqueueOptions::new()
        .queue(&args.queue)
        .priority(args.priority)
        .max_attempts(args.max_attempts);
    if let Some(d) = args.delay {
        opts = opts.delay(d);
    }
    if let Some(at) = args.at {
        opts = opts.run_at(at);
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
    if let Some(k) = args.keep {
        opts = opts.keep(k);
    }
    opts
}

/// `--lines`: one task per stdin line, in atomic batches; each id is printed once
/// its batch is stored, so a killed producer has printed only stored ids. With
/// `wait`, nothing is printed while enqueueing: once every line is stored, each
/// task's result line, in input order, and the worst outcome's exit status.
async fn submit_lines(
    client: &Client,
    ty: &TaskType<Value, Value>,
    opts: &EnqueueOptions,
    batch: usize,
    wait: Option<Waiter>,
) -> anyhow::Result<ExitCode> {
    let mut ids = Vec::new();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut pending: Vec<Value> = Vec::with_capacity(batch);
    let mut line_no = 0usize;
    let mut out = std::io::stdout();
    loop {
        let line = lines.next_line().await.context("reading stdin")?;
        let done = line.is_none();
        if let Some(line) = line {
            line_no += 1;
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(&line)
                .with_context(|| format!("stdin line {line_no} is not valid JSON: {line}"))?;
            pending.push(v);
        }
        if pending.len() >= batch || (done && !pending.is_empty()) {
            let handles = client.enqueue_many(ty, &pending, opts).await?;
            if wait.is_some() {
                ids.extend(handles.iter().map(|h| h.id()));
                pending.clear();
                if done {
                    break;
                }
                continue;
            }
            let mut text = String::new();
            for h in &handles {
                text.push_str(&h.id().to_string());
                text.push('\n');
            }
            out.write_all(text.as_bytes())?;
            out.flush()?;
            pending.clear();
        }
        if done {
            break;
        }
    }
    let Some(waiter) = wait else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut verdicts = Vec::with_capacity(ids.len());
    for id in ids {
        let record = waiter.wait(id).await?;
        verdicts.push(Verdict::of(record.as_ref()));
        let mut text = line(id, record.as_ref()).to_string();
        text.push('\n');
        out.write_all(text.as_bytes())?;
    }
    out.flush()?;
    Ok(Verdict::exit(verdicts))
}
