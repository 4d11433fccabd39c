//! `conveyor run`'s reporter: one thread that receives every item's outcome,
//! records it in the state file, prints the task's output, writes the results
//! file, moves the progress bar and decides when to halt.
//!
//! It takes outcomes in batches: one state-file transaction per batch, and only
//! then is the batch's output printed, so any output a user has seen belongs to
//! an outcome that is on disk. Each task's stdout (and stderr) is written in one
//! piece, ending with a newline, so two tasks' lines never mix.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor::{Pool, TaskId, TaskResult};
use tokio::sync::Notify;

use super::order::Window;
use super::progress::Progress;
use super::record::{Prepared, Record, Status, WallClock};
use super::state::{Prior, State};

/// Most outcomes taken into one batch.
const BATCH: usize = 512;

/// What the reporter hears about.
pub enum Event {
    /// A task is about to be submitted for this item.
    Registered(TaskId, Arc<Prepared>),
    /// A task's final result.
    Finished(TaskResult),
    /// The task registered under this id was refused (the run is stopping).
    Unsubmitted(TaskId),
    /// An item settled without a task (bad input, earlier outcome).
    Settled(Record),
    /// The input ended after this many items.
    InputEnd(u64),
    /// Reading the input failed.
    InputFailed(String),
    /// Nothing more will be reported.
    End,
}

/// How the reporter behaves.
pub struct Settings {
    /// Print in input order.
    pub keep_order: bool,
    /// Halt after this many failures.
    pub halt_after: Option<u64>,
    /// No messages of our own but the errors.
    pub quiet: bool,
    /// The `--results` file and its output cap.
    pub results: Option<(BufWriter<File>, usize)>,
    /// The state file.
    pub state: Option<State>,
    /// The attempt timeout, for messages.
    pub timeout: Option<Duration>,
}

/// What happened, for the summary and the exit status.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    /// Items read.
    pub items: u64,
    /// Succeeded in this run.
    pub succeeded: u64,
    /// Failed in this run (including timeouts).
    pub failed: u64,
    /// Of those, timed out.
    pub timed_out: u64,
    /// Not run (interrupted or halted).
    pub not_run: u64,
    /// Settled by an earlier run: succeeded.
    pub earlier_succeeded: u64,
    /// Settled by an earlier run: failed (not retried).
    pub earlier_failed: u64,
    /// stdout was closed by the reader (a broken pipe).
    pub output_closed: bool,
    /// Why the run could not go on (state file or input error).
    pub fatal: Option<String>,
}

/// The reporter's state.
pub struct Reporter {
    settings: Settings,
    clock: WallClock,
    tasks: HashMap<TaskId, Arc<Prepared>>,
    waiting: BTreeMap<u64, Record>,
    next_seq: u64,
    window: Arc<Window>,
    progress: Progress,
    pool: Pool,
    halt: Arc<Notify>,
    halted: bool,
    totals: Totals,
    last_metrics: Option<Instant>,
}

impl Reporter {
    /// A reporter; `halt` is notified when the run must stop taking new items.
    pub fn new(
        settings: Settings,
        progress: Progress,
        pool: Pool,
        window: Arc<Window>,
        halt: Arc<Notify>,
    ) -> Self {
        Self {
            settings,
            clock: WallClock::now(),
            tasks: HashMap::new(),
            waiting: BTreeMap::new(),
            next_seq: 1,
            window,
            progress,
            pool,
            halt,
            halted: false,
            totals: Totals::default(),
            last_metrics: None,
        }
    }

    /// Runs until [`Event::End`] (or every sender is gone); returns the totals.
    pub fn run(mut self, rx: Receiver<Event>) -> Totals {
        let mut batch = Vec::with_capacity(BATCH);
        let mut open = true;
        while open {
            let Ok(first) = rx.recv() else { break };
            open = self.take(first, &mut batch);
            while open && batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(ev) => open = self.take(ev, &mut batch),
                    Err(_) => break,
                }
            }
            self.settle(&mut batch);
        }
        for (_, task) in std::mem::take(&mut self.tasks) {
            // Registered but never reported: only when the run was cut short.
            let p = unwrap_prepared(task);
            batch.push(Record::settled(p.item, Status::NotRun, None));
        }
        self.settle(&mut batch);
        self.progress.finish();
        self.totals
    }

    /// Turns an event into records; false on [`Event::End`].
    fn take(&mut self, ev: Event, batch: &mut Vec<Record>) -> bool {
        match ev {
            Event::Registered(id, p) => {
                self.tasks.insert(id, p);
            }
            Event::Finished(result) => {
                if let Some(p) = self.tasks.remove(&result.id) {
                    let rec = Record::from_result(
                        unwrap_prepared(p),
                        result,
                        &self.clock,
                        self.settings.timeout,
                    );
                    batch.push(rec);
                }
            }
            Event::Unsubmitted(id) => {
                if let Some(p) = self.tasks.remove(&id) {
                    batch.push(Record::settled(
                        unwrap_prepared(p).item,
                        Status::NotRun,
                        None,
                    ));
                }
            }
            Event::Settled(rec) => batch.push(rec),
            Event::InputEnd(n) => {
                self.totals.items = n;
                self.progress.set_total(n);
            }
            Event::InputFailed(msg) => {
                self.fail(msg);
            }
            Event::End => return false,
        }
        true
    }

    /// Records a batch durably, then reports each record.
    fn settle(&mut self, batch: &mut Vec<Record>) {
        if batch.is_empty() {
            return;
        }
        if let Some(state) = self.settings.state.as_mut() {
            let entries: Vec<_> = batch.iter().filter_map(Record::entry).collect();
            if let Err(e) = state.record(&entries) {
                // Not recorded: so not reported as done either (it runs again on resume).
                let msg = format!("cannot write the state file: {e}");
                self.fail(msg);
                for rec in batch.iter_mut() {
                    if rec.entry().is_some() {
                        rec.status = Status::NotRun;
                        rec.stdout.clear();
                        rec.stderr.clear();
                    }
                }
            }
        }
        let progress = std::mem::replace(&mut self.progress, Progress::new(true, None));
        progress.suspend(|| {
            for rec in batch.drain(..) {
                let status = rec.status;
                if self.settings.keep_order {
                    self.waiting.insert(rec.item.seq, rec);
                    while let Some(rec) = self.waiting.remove(&self.next_seq) {
                        self.next_seq += 1;
                        self.emit(rec);
                    }
                    self.window.printed(self.next_seq - 1);
                } else {
                    self.emit(rec);
                }
                self.count(status);
            }
            let _ = io::stdout().flush();
        });
        self.progress = progress;
        if let Some((file, _)) = self.settings.results.as_mut() {
            if let Err(e) = file.flush() {
                let msg = format!("cannot write the results file: {e}");
                self.settings.results = None;
                self.fail(msg);
            }
        }
        self.show_progress();
    }

    /// Counts an outcome once its record is out; halts at the failure limit.
    fn count(&mut self, status: Status) {
        let t = &mut self.totals;
        match status {
            Status::Succeeded => t.succeeded += 1,
            Status::Failed => t.failed += 1,
            Status::TimedOut => {
                t.failed += 1;
                t.timed_out += 1;
            }
            Status::NotRun => t.not_run += 1,
            Status::Earlier(Prior::Succeeded) => t.earlier_succeeded += 1,
            Status::Earlier(Prior::Failed) => t.earlier_failed += 1,
        }
        if status.is_failure() {
            if let Some(limit) = self.settings.halt_after {
                if t.failed >= limit && !self.halted {
                    self.halted = true;
                    if !self.settings.quiet {
                        eprintln!(
                            "conveyor run: {} failed: halting (no new items start; running ones finish)",
                            t.failed
                        );
                    }
                    self.halt.notify_one();
                }
            }
        }
    }

    /// Prints one record's output and writes its results line.
    fn emit(&mut self, rec: Record) {
        if matches!(rec.status, Status::NotRun | Status::Earlier(_)) {
            return;
        }
        if !self.totals.output_closed && !rec.stdout.is_empty() {
            if let Err(e) = write_whole(&mut io::stdout().lock(), &rec.stdout) {
                self.output_closed(e);
            }
        }
        if !rec.stderr.is_empty() {
            let _ = write_whole(&mut io::stderr().lock(), &rec.stderr);
        }
        if rec.stdout_truncated {
            eprintln!(
                "conveyor run: item {} (line {}): stdout was longer than --max-output; the rest was dropped",
                rec.item.seq, rec.item.line
            );
        }
        if rec.status.is_failure() && !self.settings.quiet {
            let error = rec.error.as_deref().unwrap_or("failed");
            let attempts = match rec.attempts {
                0 | 1 => String::new(),
                n => format!(" after {n} attempts"),
            };
            if rec.argv.is_none() {
                eprintln!("conveyor run: item {} failed: {error}", rec.item.seq);
            } else {
                eprintln!(
                    "conveyor run: item {} (line {}) failed{attempts}: {error}",
                    rec.item.seq, rec.item.line
                );
            }
        }
        if let Some((file, cap)) = self.settings.results.as_mut() {
            let line = rec.to_json(*cap).to_string();
            if let Err(e) = writeln!(file, "{line}") {
                let msg = format!("cannot write the results file: {e}");
                self.settings.results = None;
                self.fail(msg);
            }
        }
    }

    fn output_closed(&mut self, e: io::Error) {
        self.totals.output_closed = true;
        if e.kind() != io::ErrorKind::BrokenPipe {
            self.fail(format!("cannot write to stdout: {e}"));
        } else {
            self.stop();
        }
    }

    /// A problem that stops the run: no new items start.
    fn fail(&mut self, msg: String) {
        eprintln!("conveyor run: {msg}");
        if self.totals.fatal.is_none() {
            self.totals.fatal = Some(msg);
        }
        self.stop();
    }

    fn stop(&mut self) {
        if !self.halted {
            self.halted = true;
            self.halt.notify_one();
        }
    }

    fn show_progress(&mut self) {
        let now = Instant::now();
        if self
            .last_metrics
            .is_some_and(|t| now - t < Duration::from_millis(100))
        {
            return;
        }
        self.last_metrics = Some(now);
        let t = &self.totals;
        let done = t.succeeded + t.failed + t.not_run + t.earlier_succeeded + t.earlier_failed;
        let running = self.pool.metrics().in_flight_process;
        self.progress
            .update(done, t.failed + t.earlier_failed, running);
    }
}

/// The item and command back out of the shared params (the engine may still hold
/// a clone for a moment after reporting).
fn unwrap_prepared(p: Arc<Prepared>) -> Prepared {
    Arc::try_unwrap(p).unwrap_or_else(|shared| Prepared {
        item: shared.item.clone(),
        argv: shared.argv.clone(),
    })
}

/// Writes `bytes` in one piece, adding a final newline when missing.
pub fn write_whole(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    if bytes.ends_with(b"\n") {
        out.write_all(bytes)
    } else {
        let mut whole = Vec::with_capacity(bytes.len() + 1);
        whole.extend_from_slice(bytes);
        whole.push(b'\n');
        out.write_all(&whole)
    }
}
