//! `conveyor run --from kafka://HOST:PORT/TOPIC?group=G`: the command runs once
//! per record of a topic, with conveyor-kafka's guarantees — at most `-j`
//! records in flight (held, then paused, when full), per-key, per-partition or no
//! order (`--ordering`), offsets committed only below the lowest unfinished
//! record, retries, then the dead-letter topic.
//!
//! The record's payload is the item: `{}` the payload, `{1}`… its fields,
//! `{.field}` with `--json`, `{#}` its offset. The committed offsets are the
//! resume state (so no `--state`), the stream has no end (so no progress bar and
//! no `--keep-order`: `--ordering` says what order means here). A record whose
//! command fails after its retries, or whose payload does not fit the
//! placeholders, goes to the dead-letter topic with the error in its headers.
//! A command's stdout is printed, in one piece, when it succeeds; its stderr
//! after every attempt.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

use anyhow::{bail, Context};
use conveyor::{exit_to_result, Handler, Pool, ProcessCommand, TaskError};
use conveyor_kafka::{Disposition, KafkaConsumer, Message};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;

use super::args::RunArgs;
use super::input::Item;
use super::placeholder::CommandTemplate;
use super::report::write_whole;

/// Consumes `url` until SIGINT/SIGTERM (or `--halt-on-error`/`--max-failures`).
pub async fn run(args: &RunArgs, template: CommandTemplate, url: &str) -> anyhow::Result<ExitCode> {
    for (given, option, why) in [
        (args.input.is_some(), "--input", "the topic is the input"),
        (
            args.state.is_some(),
            "--state",
            "committed offsets are the resume state",
        ),
        (
            args.keep_order,
            "--keep-order",
            "use --ordering key|partition|unordered",
        ),
        (args.null, "-0", "records are items already"),
        (
            args.results.is_some(),
            "--results",
            "outcomes go to the dead-letter topic",
        ),
    ] {
        if given {
            bail!("--from kafka:// does not take {option}: {why}");
        }
    }
    let mut config = conveyor_kafka::parse_url(url)?;
    if let Some(ordering) = &args.ordering {
        config.ordering = ordering.parse()?;
    }
    if let Some(j) = args.jobs {
        config.max_in_flight = j as usize;
    }
    let jobs = config.max_in_flight;
    let pool = Pool::builder()
        .workers(jobs)
        .build()
        .context("cannot start the engine")?;
    let handler = super::limits(args, record_handler(args, template));

    let failures = Arc::new(AtomicU64::new(0));
    let halt = Arc::new(Notify::new());
    let halt_after = super::halt_after(args);
    let (seen, stop) = (failures.clone(), halt.clone());
    let quiet = args.quiet;
    let consumer = KafkaConsumer::builder(config)
        .pool(pool.clone())
        .on_complete(move |c| {
            if c.disposition != Disposition::DeadLettered {
                return;
            }
            let n = seen.fetch_add(1, AtomicOrdering::Relaxed) + 1;
            if !quiet {
                let m = &c.message;
                eprintln!(
                    "conveyor run: {}/{}@{} failed after {} attempt(s), sent to the dead-letter topic: {}",
                    m.topic(),
                    m.partition(),
                    m.offset(),
                    c.attempts,
                    c.error.as_deref().unwrap_or("failed")
                );
            }
            if halt_after.is_some_and(|limit| n >= limit) {
                stop.notify_one();
            }
        })
        .handler(handler)?;
    let handle = consumer.handle();
    let _metrics = match args.metrics {
        Some(addr) => {
            let metrics = conveyor_kafka::prometheus::metrics(&consumer);
            let endpoint = crate::metrics_endpoint::serve(addr, metrics).await?;
            if !quiet {
                eprintln!("conveyor run: metrics at http://{}/metrics", endpoint.addr);
            }
            Some(endpoint)
        }
        None => None,
    };
    let mut consuming = tokio::spawn(consumer.run());

    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupted: Option<i32> = None;
    let report = loop {
        let sig = tokio::select! {
            done = &mut consuming => break done.context("the consumer task failed")??,
            _ = sigint.recv() => 2,
            _ = sigterm.recv() => 15,
            _ = halt.notified() => {
                if !quiet {
                    eprintln!("conveyor run: halting: no new records start; running ones finish");
                }
                handle.shutdown();
                continue;
            }
        };
        if interrupted.is_none() {
            interrupted = Some(sig);
            if !quiet {
                eprintln!("conveyor run: stopping: running records finish, safe offsets are committed (signal again to kill them)");
            }
            handle.shutdown();
        } else {
            eprintln!("conveyor run: killing the running commands");
            pool.shutdown_now();
        }
    };
    let c = report.counters;
    if !quiet {
        eprintln!(
            "conveyor run: {} succeeded, {} failed (dead-lettered, {} undecodable), {} left uncommitted for the next run",
            report.runner.completed, c.dead_lettered, c.undecodable, report.runner.released
        );
    }
    if let Some(sig) = interrupted {
        return Ok(ExitCode::from(128 + sig as u8));
    }
    Ok(ExitCode::from(c.dead_lettered.min(101) as u8))
}

/// An io-lane handler that runs one record's command.
fn record_handler(args: &RunArgs, template: CommandTemplate) -> Handler<Message, ()> {
    let template = Arc::new(template);
    let json = args.json;
    let delimiter: Option<Arc<str>> = args.delimiter.as_deref().map(Arc::from);
    let cap = args.max_output;
    Handler::io("run", move |m: Message, _ctx| {
        let template = template.clone();
        let delimiter = delimiter.clone();
        async move {
            let raw = m.payload().unwrap_or_default().to_vec();
            let where_ = format!("{}/{}@{}", m.topic(), m.partition(), m.offset());
            let parsed =
                match json {
                    true => Some(serde_json::from_slice(&raw).map_err(|e| {
                        TaskError::permanent(format!("{where_}: invalid JSON: {e}"))
                    })?),
                    false => None,
                };
            let item = Item {
                seq: u64::try_from(m.offset()).unwrap_or(0),
                line: 0,
                raw,
                json: parsed,
            };
            let argv = template
                .expand(&item, delimiter.as_deref())
                .map_err(|e| TaskError::permanent(format!("{where_}: {e}")))?;
            let out = ProcessCommand::new(&argv.items[0])
                .args(&argv.items[1..])
                .output_cap(cap, cap)
                .run()
                .await?;
            if !out.stderr.is_empty() {
                let _ = write_whole(&mut std::io::stderr().lock(), &out.stderr);
            }
            let out = exit_to_result(out)?;
            if !out.stdout.is_empty() {
                let _ = write_whole(&mut std::io::stdout().lock(), &out.stdout);
            }
            Ok::<_, TaskError>(())
        }
    })
}
