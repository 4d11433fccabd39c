//! `conveyor run`: a command for every input item, with limits, retries,
//! progress and resume.
//!
//! The pieces, each in its own module:
//!
//! ```text
//! reader thread ──items──▶ submitter task ──▶ engine job (process lane, -j slots,
//!   │ (earlier outcomes,                      rate, retries, timeout)
//!   │  bad input)                                   │ on_task_complete
//!   └──────────────────────events──────────▶ reporter thread ◀┘
//!                                  state file · stdout/stderr · --results · progress
//! ```
//!
//! Signals: the first SIGINT/SIGTERM stops starting items and waits for the
//! running ones; a second kills them (their whole process groups).

mod args;
mod input;
#[cfg(feature = "kafka")]
mod kafka_source;
mod order;
mod placeholder;
mod progress;
mod reader;
mod record;
mod report;
mod state;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use conveyor::{
    available_cores, Handler, Pool, ProcessCommand, ProcessOutput, RetryPolicy, TaskId, TaskOptions,
};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Notify};

pub use args::RunArgs;
use input::Items;
use order::Window;
use placeholder::CommandTemplate;
use progress::Progress;
use reader::Reader;
use record::Prepared;
use report::{Event, Reporter, Settings, Totals};
use state::State;

/// Exit status when conveyor itself cannot go on.
const EXIT_FATAL: u8 = 255;
/// A graceful stop waits for running items this long (in effect: until a second
/// signal).
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// Runs `conveyor run` and returns its exit status.
pub async fn run(args: RunArgs) -> ExitCode {
    match execute(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("conveyor run: {e:#}");
            ExitCode::from(EXIT_FATAL)
        }
    }
}

async fn execute(args: RunArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let template =
        CommandTemplate::parse(&args.command, args.shell, args.json).map_err(anyhow::Error::msg)?;
    if let Some(program) = template.fixed_program() {
        check_program(program)?;
    }
    if let Some(url) = &args.from {
        return from_source(&args, template, url).await;
    }
    if args.metrics.is_some() {
        bail!("--metrics serves a Kafka consumer's metrics: it needs --from kafka://");
    }
    let jobs = args.jobs.map_or_else(available_cores, |j| j as usize);
    let input = open_input(args.input.as_deref())?;
    let total = match (&args.input, args.quiet) {
        (Some(path), false) if std::io::IsTerminal::is_terminal(&std::io::stderr()) => {
            count_items(path, args.null).ok()
        }
        _ => None,
    };
    let (state, prior) = match &args.state {
        Some(path) => {
            let (s, prior) = State::open(path, &template.fingerprint())?;
            (Some(s), prior)
        }
        None => (None, HashMap::new()),
    };
    let results = match &args.results {
        Some(path) => Some((open_results(path, args.state.is_some())?, args.results_cap)),
        None => None,
    };

    let pool = Pool::builder()
        .workers(jobs)
        .process_limit(jobs)
        .build()
        .context("cannot start the engine")?;
    let handler = command_handler(&args);
    let window = Arc::new(Window::new(
        args.keep_order.then(|| (jobs as u64 * 32).max(1024)),
    ));
    let halt = Arc::new(Notify::new());
    let settings = Settings {
        keep_order: args.keep_order,
        halt_after: halt_after(&args),
        quiet: args.quiet,
        results,
        state,
        timeout: args.timeout,
    };
    let reporter = Reporter::new(
        settings,
        Progress::new(args.quiet, total),
        pool.clone(),
        window.clone(),
        halt.clone(),
    );
    let (events, events_rx) = std::sync::mpsc::channel();
    let reporter = std::thread::Builder::new()
        .name("conveyor-run-report".into())
        .spawn(move || reporter.run(events_rx))
        .context("cannot start the reporter thread")?;

    let on_done = events.clone();
    let mut job = pool.job();
    if let Some(limit) = halt_after(&args) {
        // The engine stops starting items at the limit itself, before a
        // worker takes another; the reporter's halt then stops the input.
        job = job.halt_after_failures(limit);
    }
    let mut job = job
        .queue_capacity(jobs * 2)
        .on_task_complete(move |r| {
            let _ = on_done.send(Event::Finished(r));
        })
        .start()
        .context("cannot start the job")?;
    let producer = job.producer().context("the job closed at once")?;
    job.close();

    let (to_submit, mut submissions) = tokio::sync::mpsc::channel::<Prepared>(jobs * 2);
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let reader = Reader {
        input,
        nul: args.null,
        json: args.json,
        delimiter: args.delimiter.clone(),
        template,
        prior,
        retry_failed: args.retry_failed,
        window: window.clone(),
    };
    let reader_events = events.clone();
    std::thread::Builder::new()
        .name("conveyor-run-input".into())
        .spawn(move || reader.run(to_submit, reader_events))
        .context("cannot start the input thread")?;
    let submit_events = events.clone();
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                p = submissions.recv() => p,
                _ = stop_rx.wait_for(|stop| *stop) => None,
            };
            let Some(p) = next else { break };
            let id = TaskId::next();
            let p = Arc::new(p);
            let _ = submit_events.send(Event::Registered(id, p.clone()));
            if producer
                .submit_as(id, &handler, p, TaskOptions::default())
                .await
                .is_err()
            {
                let _ = submit_events.send(Event::Unsubmitted(id));
                break;
            }
        }
        // Dropping the producer (and the receiver) lets the job complete.
    });

    let stopping = |why: &str| {
        let _ = stop_tx.send(true);
        window.stop();
        let pool = pool.clone();
        tokio::spawn(async move { pool.shutdown(FOREVER).await });
        if !args.quiet && !why.is_empty() {
            eprintln!("conveyor run: {why}");
        }
    };
    let mut interrupted: Option<i32> = None;
    let mut halting = false;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let wait = job.wait();
    tokio::pin!(wait);
    loop {
        let sig = tokio::select! {
            _ = &mut wait => break,
            _ = sigint.recv() => libc_signal::SIGINT,
            _ = sigterm.recv() => libc_signal::SIGTERM,
            _ = halt.notified(), if !halting => {
                halting = true;
                stopping("");
                continue;
            }
        };
        if interrupted.is_none() {
            interrupted = Some(sig);
            halting = true;
            stopping("stopping: no new items start; waiting for the running ones (signal again to kill them)");
        } else {
            eprintln!("conveyor run: killing the running items");
            pool.shutdown_now();
        }
    }
    let _ = events.send(Event::End);
    drop(events);
    let totals = tokio::task::spawn_blocking(move || reporter.join())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    if !args.quiet {
        eprintln!("conveyor run: {}", summary(&totals, started.elapsed()));
    }
    Ok(exit_status(&totals, interrupted))
}

/// Signal numbers, without a libc dependency for two constants.
mod libc_signal {
    pub const SIGINT: i32 = 2;
    pub const SIGTERM: i32 = 15;
}

/// Items from a source URL instead of a file or stdin.
async fn from_source(
    args: &RunArgs,
    template: CommandTemplate,
    url: &str,
) -> anyhow::Result<ExitCode> {
    if url.starts_with("kafka://") {
        #[cfg(feature = "kafka")]
        return kafka_source::run(args, template, url).await;
        #[cfg(not(feature = "kafka"))]
        bail!("this conveyor was built without Kafka support (cargo feature \"kafka\")");
    }
    let _ = template;
    bail!("--from {url:?}: unknown source (supported: kafka://HOST:PORT/TOPIC?group=G)")
}

/// After how many failures to stop starting items.
fn halt_after(args: &RunArgs) -> Option<u64> {
    if args.halt_on_error {
        Some(1)
    } else {
        args.max_failures
    }
}

/// The process-lane handler running each item's command.
fn command_handler(args: &RunArgs) -> Handler<Arc<Prepared>, ProcessOutput> {
    let cap = args.max_output;
    let h = Handler::process("run", move |p: Arc<Prepared>| {
        let argv = &p.argv.items;
        Ok(ProcessCommand::new(&argv[0])
            .args(&argv[1..])
            .output_cap(cap, cap))
    });
    limits(args, h)
}

/// The retry policy, timeout and rate limit of `args`, on `h`.
fn limits<In, Out>(args: &RunArgs, mut h: Handler<In, Out>) -> Handler<In, Out>
where
    In: Clone + Send + 'static,
    Out: Send + 'static,
{
    h = h.retry(if args.retries == 0 {
        RetryPolicy::none()
    } else {
        RetryPolicy::attempts(args.retries.saturating_add(1))
            .backoff(
                args.retry_delay,
                Duration::from_secs(60).max(args.retry_delay),
            )
            .retry_on(true, false)
    });
    if let Some(t) = args.timeout {
        h = h.timeout(t);
    }
    if let Some(mut rate) = args.rate {
        if let Some(b) = args.burst {
            rate = rate.burst(b);
        }
        h = h.rate(rate);
    }
    h
}

/// Fails early, before any item runs, when the program cannot be found.
fn check_program(program: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        if executable(Path::new(program)) {
            return Ok(());
        }
        bail!("program {program:?} does not exist or is not executable");
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| executable(&dir.join(program))) {
        return Ok(());
    }
    bail!("program {program:?} not found on PATH")
}

fn open_input(path: Option<&Path>) -> anyhow::Result<Box<dyn BufRead + Send>> {
    Ok(match path {
        Some(p) => {
            let f = File::open(p).with_context(|| format!("cannot read {}", p.display()))?;
            if f.metadata().is_ok_and(|m| m.is_dir()) {
                bail!("cannot read {}: it is a directory", p.display());
            }
            Box::new(BufReader::with_capacity(1 << 16, f))
        }
        None => Box::new(BufReader::with_capacity(1 << 16, std::io::stdin())),
    })
}

/// Items in a file, for the progress bar's total.
fn count_items(path: &Path, nul: bool) -> std::io::Result<u64> {
    let f = BufReader::with_capacity(1 << 16, File::open(path)?);
    let mut n = 0;
    for read in Items::new(f, nul, false) {
        read?;
        n += 1;
    }
    Ok(n)
}

fn open_results(path: &Path, append: bool) -> anyhow::Result<BufWriter<File>> {
    let mut opts = OpenOptions::new();
    opts.create(true);
    if append {
        opts.append(true);
    } else {
        opts.write(true).truncate(true);
    }
    let f = opts
        .open(path)
        .with_context(|| format!("cannot write the results file {}", path.display()))?;
    Ok(BufWriter::new(f))
}

/// One line: what ran, how it ended, how long it took.
fn summary(t: &Totals, took: Duration) -> String {
    let ran = t.succeeded + t.failed;
    let mut parts = vec![
        format!("{} succeeded", t.succeeded),
        format!("{} failed", t.failed),
    ];
    if t.timed_out > 0 {
        parts[1].push_str(&format!(" ({} timed out)", t.timed_out));
    }
    if t.not_run > 0 {
        parts.push(format!("{} not run", t.not_run));
    }
    match (t.earlier_succeeded, t.earlier_failed) {
        (0, 0) => {}
        (done, 0) => parts.push(format!("{done} done earlier")),
        (done, failed) => parts.push(format!(
            "{} done earlier ({failed} failed; --retry-failed reruns them)",
            done + failed
        )),
    }
    let secs = took.as_secs_f64();
    let rate = if secs > 0.0 { ran as f64 / secs } else { 0.0 };
    format!("{} in {:.2}s ({rate:.0}/s)", parts.join(", "), secs)
}

/// The exit status convention (see `RunArgs`).
fn exit_status(t: &Totals, interrupted: Option<i32>) -> ExitCode {
    if t.fatal.is_some() {
        return ExitCode::from(EXIT_FATAL);
    }
    if let Some(sig) = interrupted {
        return ExitCode::from(128 + sig as u8);
    }
    if t.output_closed {
        return ExitCode::from(141);
    }
    let failures = t.failed + t.earlier_failed;
    ExitCode::from(failures.min(101) as u8)
}
