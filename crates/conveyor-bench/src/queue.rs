//! Durable queue benchmarks: `conveyor-bench queue [--backend URL] [--quick]`.
//!
//! - enqueue, one task per call, from one caller and from 32 concurrent callers
//!   (the second shows group commit);
//! - enqueue in batches of 1,000;
//! - end to end: a worker with N slots processes pre-enqueued no-op tasks;
//!   at 500 slots in three alternating rounds with nobody listening, a
//!   subscriber reading every event and Prometheus metrics on, whose cost is
//!   the median of the rounds' ratios;
//! - enqueue→start latency p50/p99 at a steady trickle into an idle worker.
//!
//! A measurement that does not do its whole workload (an enqueue or the
//! worker fails, the worker stops early, or 300 s pass) has no figure: its
//! row says why instead, and so does every ratio to it
//! ([`crate::report`]). That holds for conveyor's rows and every peer's and
//! floor's beside them.
//!
//! Figures carry ratios to the project's targets for the backend (embedded:
//! 200k/s batched enqueue, 100k/s processed; redis 40k/s, postgres 25k/s and
//! amqp and nats 20k/s processed). Every measurement runs in a namespace of its own — a
//! new file, Redis key prefix, PostgreSQL schema or RabbitMQ prefix, added to
//! the URL as `?prefix=` / `?schema=` — dropped when it is done.
//!
//! On RabbitMQ, Celery 5 (from PyPI, in the benchmark's own virtualenv) runs
//! the same no-op tasks on the same broker in the same run — classic and
//! quorum queues, results off and on (`rpc://`) — and conveyor's processed
//! rates are given as ratios to the best Celery figure. A hand-written lapin
//! consumer (publish with confirms, consume and ack, nothing else) runs there
//! too at each slot count, so the broker's own ceiling on this machine is
//! printed beside conveyor's figure. On NATS, a bare async-nats loop
//! (publish to a work-queue stream of its own, then fetch in batches and ack
//! each message; no ledger) gives the JetStream floor on the same server,
//! and conveyor's processed rates are given as ratios to it. On Redis, apalis
//! 1.0 (apalis-redis; built with `--features apalis`) enqueues and processes
//! the same tasks on the same server, and every conveyor row is given as a
//! ratio to its figure; on the embedded backend apalis-sqlite does the same
//! (fsync per commit, as conveyor; and its own default, fsync off, shown
//! only). Also on Redis, the enqueue and processed rows run
//! again with conveyor's Lua code sent as scripts (`?scripts=eval`), each
//! given as the ratio of the default function library to it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor::durable::Worker;
use conveyor::durable::{Backend, NewTask};
use conveyor::{Handler, TaskError};
use tokio::sync::Notify;

use crate::namespace::{micros_now, Subject};
use crate::report::{median_measured, ratio_of, Measured, Report};

/// Targets by backend kind: (batched enqueue/s, processed/s).
fn targets(kind: &str) -> Option<(f64, f64)> {
    match kind {
        "embedded" => Some((200_000.0, 100_000.0)),
        "redis" => Some((200_000.0, 40_000.0)),
        "postgres" => Some((100_000.0, 25_000.0)),
        "amqp" => Some((50_000.0, 20_000.0)),
        "nats" => Some((50_000.0, 20_000.0)),
        _ => None,
    }
}

pub(crate) fn noop_task(i: usize) -> NewTask {
    NewTask::new("noop", i.to_string().into_bytes())
}

/// Runs the queue benchmarks.
pub async fn run(report: &mut Report, quick: bool, url: Option<&str>) {
    let scale = if quick { 5 } else { 1 };
    let kind = Subject::new(url, "probe").kind().await;
    let (enq_target, proc_target) = targets(kind).unwrap_or((1.0, 1.0));
    let has_targets = targets(kind).is_some();
    let bench = format!("queue/{kind}");

    let enqueue = enqueue_rates(url, scale).await;
    let EnqueueRates {
        single: seq,
        concurrent: conc,
        batched,
    } = &enqueue;
    report.measured(&bench, "enqueue 1/call, 1 caller", seq, "tasks/s");
    report.compared(
        &bench,
        "enqueue 1/call, 32 callers",
        conc,
        "tasks/s",
        "1 caller",
        seq,
    );
    if has_targets {
        report.compared(
            &bench,
            "enqueue batches of 1000",
            batched,
            "tasks/s",
            "target",
            &Ok(enq_target),
        );
    } else {
        report.measured(&bench, "enqueue batches of 1000", batched, "tasks/s");
    }

    let target = has_targets.then_some(proc_target);
    let processed = processed_rows(report, &bench, url, scale, target).await;

    if kind == "amqp" {
        bare_beside(
            report,
            &bench,
            url.unwrap_or_default(),
            100_000 / scale,
            &processed,
        )
        .await;
        celery_beside(report, &bench, url.unwrap_or_default(), quick, &processed);
    }
    if kind == "nats" {
        let n = 100_000 / scale;
        crate::nats_floor::beside(report, &bench, url.unwrap_or_default(), n, &processed).await;
    }
    if kind == "postgres" {
        let n = 100_000 / scale;
        crate::pg_floor::beside(report, &bench, url.unwrap_or_default(), n, &processed).await;
    }
    if kind == "embedded" {
        crate::sqlite_floor::beside(report, &bench, 100_000 / scale, &processed).await;
        #[cfg(feature = "apalis")]
        {
            let ours = Ours {
                enqueue: &enqueue,
                processed: &processed,
            };
            crate::apalis_sqlite_peer::beside(report, &bench, scale, &ours).await;
        }
        #[cfg(not(feature = "apalis"))]
        report.note(
            "apalis-sqlite, the embedded peer, runs beside these rows when the bench is built \
             with `--features apalis`",
        );
    }
    if kind == "redis" {
        let ours = Ours {
            enqueue: &enqueue,
            processed: &processed,
        };
        crate::redis_scripts::beside(report, &bench, url.unwrap_or_default(), scale, &ours).await;
        #[cfg(feature = "apalis")]
        crate::apalis_peer::beside(report, &bench, url.unwrap_or_default(), scale, &ours).await;
        #[cfg(not(feature = "apalis"))]
        report.note(
            "apalis, the Redis peer, runs beside these rows when the bench is built with \
             `--features apalis`",
        );
    }

    // Latency at a trickle.
    let s = Subject::new(url, "latency");
    let b = s.open().await;
    let (p50, p99) = latency(b, 1_000 / scale).await;
    s.close().await;
    report.measured(&bench, "enqueue->start p50", &p50, "ms");
    report.measured(&bench, "enqueue->start p99", &p99, "ms");
}

/// conveyor's figures in one run, to set beside a peer's or another
/// configuration's.
pub struct Ours<'a> {
    /// Enqueue rates, measured once at the start of the run: set beside
    /// apalis-sqlite's (whose rates are far apart from these); the Redis
    /// comparisons measure both sides again, alternated.
    #[cfg_attr(not(feature = "apalis"), allow(dead_code))]
    pub enqueue: &'a EnqueueRates,
    /// The `processed, N slots` rows.
    pub processed: &'a [Processed],
}

/// One `processed, N slots` row of conveyor's: its slot count and rate.
pub struct Processed {
    /// Worker slots.
    pub slots: usize,
    /// Tasks/s, or why there is no figure.
    pub rate: Measured,
}

impl Processed {
    /// The row's subject, `processed, N slots`.
    pub fn subject(&self) -> String {
        format!("processed, {} slots", self.slots)
    }
}

/// A floor measured beside conveyor's `processed` rows: what it is called,
/// its unit, and what the rows compared with it say they are compared with.
pub struct Floor<'a> {
    /// The floor's own row.
    pub subject: &'a str,
    /// Its unit (`tasks/s`, `msgs/s`).
    pub unit: &'a str,
    /// Appended to each compared row's subject (`vs bare SQLite`).
    pub versus: &'a str,
    /// What each ratio is to (`bare rusqlite`).
    pub baseline: &'a str,
}

impl Floor<'_> {
    /// Prints the floor's rate (or why it has none), then each of `rows`
    /// with its ratio to it.
    pub fn report<'p>(
        &self,
        report: &mut Report,
        bench: &str,
        floor: Measured,
        rows: impl IntoIterator<Item = &'p Processed>,
    ) {
        report.measured(bench, self.subject, &floor, self.unit);
        for row in rows {
            report.compared(
                bench,
                &format!("{} {}", row.subject(), self.versus),
                &row.rate,
                "tasks/s",
                self.baseline,
                &floor,
            );
        }
    }
}

/// Enqueue rates of the backend at one URL, tasks/s, each or why it has
/// none.
#[derive(Clone, Debug)]
pub struct EnqueueRates {
    /// One task per call, one caller.
    pub single: Measured,
    /// One task per call, 32 concurrent callers.
    pub concurrent: Measured,
    /// Batches of 1,000.
    pub batched: Measured,
}

/// One enqueue row: its subject and its figure.
pub type EnqueueRow = (&'static str, fn(&EnqueueRates) -> &Measured);

impl EnqueueRates {
    /// The three rows, in report order.
    pub const ROWS: [EnqueueRow; 3] = [
        ("enqueue 1/call, 1 caller", |r| &r.single),
        ("enqueue 1/call, 32 callers", |r| &r.concurrent),
        ("enqueue batches of 1000", |r| &r.batched),
    ];

    /// The median of `runs`' figure for `row`: none unless every run has one.
    pub fn median(runs: &[EnqueueRates], row: &EnqueueRow) -> Measured {
        median_measured(&runs.iter().map(|r| row.1(r).clone()).collect::<Vec<_>>())
    }
}

/// Measures enqueue from one caller, from 32 callers and in batches, each in
/// a namespace of its own.
pub async fn enqueue_rates(url: Option<&str>, scale: usize) -> EnqueueRates {
    EnqueueRates {
        single: enqueue_single(url, scale).await,
        concurrent: enqueue_concurrent(url, scale).await,
        batched: enqueue_batched(url, scale).await,
    }
}

/// 2,000 single enqueues from one caller.
async fn enqueue_single(url: Option<&str>, scale: usize) -> Measured {
    let n = 2_000 / scale;
    let s = Subject::new(url, "single");
    let b = s.open().await;
    let t = Instant::now();
    let mut rate = Ok(());
    for i in 0..n {
        if let Err(e) = b.enqueue(noop_task(i)).await {
            rate = Err(format!("enqueue {} of {n} failed: {e}", i + 1));
            break;
        }
    }
    let rate = rate.map(|()| n as f64 / t.elapsed().as_secs_f64());
    drop(b);
    s.close().await;
    rate
}

/// 20,000 single enqueues from 32 concurrent callers.
async fn enqueue_concurrent(url: Option<&str>, scale: usize) -> Measured {
    let s = Subject::new(url, "concurrent");
    let b = s.open().await;
    let callers = 32;
    let per = 20_000 / scale / callers;
    let t = Instant::now();
    let mut joins = Vec::new();
    for c in 0..callers {
        let b = b.clone();
        joins.push(tokio::spawn(async move {
            for i in 0..per {
                b.enqueue(noop_task(c * per + i))
                    .await
                    .map_err(|e| format!("caller {c}: enqueue {} of {per} failed: {e}", i + 1))?;
            }
            Ok::<(), String>(())
        }));
    }
    let mut rate = Ok(());
    for j in joins {
        let ended = j.await.map_err(|e| format!("a caller {e}")).and_then(|r| r);
        if rate.is_ok() {
            rate = ended;
        }
    }
    let rate = rate.map(|()| (per * callers) as f64 / t.elapsed().as_secs_f64());
    drop(b);
    s.close().await;
    rate
}

/// 200,000 tasks enqueued in batches of 1,000.
async fn enqueue_batched(url: Option<&str>, scale: usize) -> Measured {
    let total = 200_000 / scale;
    let s = Subject::new(url, "batched");
    let b = s.open().await;
    let t = Instant::now();
    let rate = enqueue_backlog(b.as_ref(), total)
        .await
        .map(|()| total as f64 / t.elapsed().as_secs_f64());
    drop(b);
    s.close().await;
    rate
}

/// Enqueues `n` no-op tasks in batches of 1,000; why not, when one fails.
pub(crate) async fn enqueue_backlog(b: &dyn Backend, n: usize) -> Result<(), String> {
    for chunk in 0..n / 1000 {
        let tasks = (0..1000).map(|i| noop_task(chunk * 1000 + i)).collect();
        b.enqueue_many(tasks)
            .await
            .map_err(|e| format!("batch {} of {} failed: {e}", chunk + 1, n / 1000))?;
    }
    Ok(())
}

/// Rounds of the 500-slot run with nobody listening, with events listened
/// and with metrics on, each round in another order.
const WATCH_ROUNDS: usize = 3;

/// End to end: 50 slots once; 500 slots in [`WATCH_ROUNDS`] alternating
/// rounds of nobody listening, a subscriber reading every lifecycle event,
/// and Prometheus metrics counting them. The 500-slot row is the median of
/// its quiet runs; what events and metrics cost is the median of each
/// round's ratio to that round's quiet run (one run each would mostly show
/// the machine's drift). Returns the `processed` rows.
async fn processed_rows(
    report: &mut Report,
    bench: &str,
    url: Option<&str>,
    scale: usize,
    target: Option<f64>,
) -> Vec<Processed> {
    let rate_50 = processed_rate(url, scale, 50, Watch::Nobody).await;
    let watches = [Watch::Nobody, Watch::Events, Watch::Metrics];
    let mut runs: [Vec<Measured>; 3] = Default::default();
    let mut ratios: [Vec<Measured>; 2] = Default::default();
    for round in 0..WATCH_ROUNDS {
        let mut rates: [Measured; 3] = std::array::from_fn(|_| Err(String::new()));
        for k in 0..watches.len() {
            let i = (round + k) % watches.len();
            rates[i] = processed_rate(url, scale, 500, watches[i]).await;
        }
        ratios[0].push(ratio_of(&rates[1], &rates[0]));
        ratios[1].push(ratio_of(&rates[2], &rates[0]));
        for (run, rate) in runs.iter_mut().zip(rates) {
            run.push(rate);
        }
    }
    let processed = vec![
        Processed {
            slots: 50,
            rate: rate_50,
        },
        Processed {
            slots: 500,
            rate: median_measured(&runs[0]),
        },
    ];
    for row in &processed {
        match target {
            Some(t) => report.compared(
                bench,
                &row.subject(),
                &row.rate,
                "tasks/s",
                "target",
                &Ok(t),
            ),
            None => report.measured(bench, &row.subject(), &row.rate, "tasks/s"),
        }
    }
    for (i, watched) in ["events listened", "metrics on"].into_iter().enumerate() {
        report.with_ratio(
            bench,
            &format!("processed, 500 slots, {watched}"),
            &median_measured(&runs[i + 1]),
            "tasks/s",
            &format!("nobody listening (median of {WATCH_ROUNDS} alternating rounds)"),
            &median_measured(&ratios[i]),
        );
    }
    processed
}

/// Enqueues 100,000 (`--quick`: 20,000) no-op tasks in a namespace of their
/// own and processes them with a worker of `slots` slots; tasks/s.
async fn processed_rate(url: Option<&str>, scale: usize, slots: usize, watch: Watch) -> Measured {
    let n = 100_000 / scale;
    let s = Subject::new(url, &format!("e2e{slots}{}", watch as u8));
    let b = s.open().await;
    let rate = match enqueue_backlog(b.as_ref(), n).await {
        Ok(()) => process(b.clone(), n, slots, watch).await,
        Err(e) => Err(format!("enqueueing the backlog: {e}")),
    };
    drop(b);
    s.close().await;
    rate
}

/// Processed rate of a worker with `slots` slots and nobody watching, at
/// `url`; tasks/s.
pub async fn processed_quiet(url: &str, scale: usize, slots: usize) -> Measured {
    processed_rate(Some(url), scale, slots, Watch::Nobody).await
}

/// Who watches a measured worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watch {
    /// Nobody: no event is even built.
    Nobody,
    /// A subscriber reads every lifecycle event.
    Events,
    /// Prometheus metrics count every event (and are scraped once at the end).
    Metrics,
}

/// Processes `n` pre-enqueued no-op tasks with a worker; tasks/s, from its
/// start to the n-th task's end, when the worker completed every task and
/// stored every completion.
pub(crate) async fn process(b: Arc<dyn Backend>, n: usize, slots: usize, watch: Watch) -> Measured {
    let done = Arc::new(AtomicUsize::new(0));
    let all = Arc::new(Notify::new());
    let (d, a) = (done.clone(), all.clone());
    let noop = Handler::io("noop", |_: u64, _ctx| async { Ok::<_, TaskError>(()) });
    let worker = match Worker::builder(b)
        .handler(noop)
        .slots(slots)
        .fetch_batch(slots.max(256))
        .on_task_complete(move |_| {
            if d.fetch_add(1, Ordering::Relaxed) + 1 == n {
                a.notify_one();
            }
        })
        .build()
    {
        Ok(w) => w,
        Err(e) => return Err(format!("cannot build the worker: {e}")),
    };
    let stopper = worker.stopper();
    let metrics =
        (watch == Watch::Metrics).then(|| conveyor::metrics::Metrics::for_worker(&worker));
    let reader = (watch == Watch::Events).then(|| {
        let events = worker.events().subscribe(65_536);
        tokio::spawn(async move {
            let mut seen = 0u64;
            while events.recv().await.is_some() {
                seen += 1;
            }
            seen
        })
    });
    let t = Instant::now();
    let run = tokio::spawn(worker.run_until(std::future::pending()));
    let ran = crate::report::workload(run, || stopper.stop(), &all, &done, n, t).await;
    if let Some(metrics) = metrics {
        let text = metrics.encode();
        eprintln!(
            "  metrics: {} lines exposed, {} started counted",
            text.lines().count(),
            text.lines()
                .filter(|l| l.starts_with("conveyor_tasks_started_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum::<u64>()
        );
    }
    if let Some(reader) = reader {
        let seen = reader.await.unwrap_or(0);
        eprintln!(
            "  events read: {seen} ({:.1} per task)",
            seen as f64 / n as f64
        );
    }
    let (elapsed, ended) = ran?;
    if ended.stats.completed < n as u64 {
        return Err(format!(
            "the worker stored {} of {n} completions",
            ended.stats.completed
        ));
    }
    Ok(n as f64 / elapsed.as_secs_f64())
}

/// Enqueue→start latency percentiles (ms) of `n` tasks enqueued 2 ms apart;
/// none when an enqueue or the worker fails or a task has not started within
/// 60 s of the last enqueue.
async fn latency(b: Arc<dyn Backend>, n: usize) -> (Measured, Measured) {
    match latency_of(b, n).await {
        Ok((p50, p99)) => (Ok(p50), Ok(p99)),
        Err(why) => (Err(why.clone()), Err(why)),
    }
}

async fn latency_of(b: Arc<dyn Backend>, n: usize) -> Result<(f64, f64), String> {
    let seen = Arc::new(samples::Samples::default());
    let s2 = seen.clone();
    let probe = Handler::io("probe", move |sent: u64, _ctx| {
        let s = s2.clone();
        async move {
            s.push((micros_now().saturating_sub(sent)) as f64 / 1000.0);
            Ok::<_, TaskError>(())
        }
    });
    let worker = match Worker::builder(b.clone())
        .handler(probe)
        .slots(50)
        .poll_interval(Duration::from_millis(100))
        .build()
    {
        Ok(w) => w,
        Err(e) => return Err(format!("cannot build the worker: {e}")),
    };
    let stopper = worker.stopper();
    let run = tokio::spawn(worker.run_until(std::future::pending()));
    let probed = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut tick = tokio::time::interval(Duration::from_millis(2));
        for i in 0..n {
            tick.tick().await;
            let payload = micros_now().to_string().into_bytes();
            b.enqueue(NewTask::new("probe", payload))
                .await
                .map_err(|e| format!("enqueue {} of {n} failed: {e}", i + 1))?;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.len() < n {
            if run.is_finished() {
                return Err(format!(
                    "the worker stopped after {} of {n} tasks",
                    seen.len()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("{} of {n} tasks started within 60 s", seen.len()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
    .await;
    stopper.stop();
    let ended = crate::report::stopped(run).await;
    probed?;
    ended?;
    Ok(seen.percentiles())
}

mod samples {
    //! A tiny mutex-guarded sample list (latencies are recorded off the hot path).
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct Samples(Mutex<Vec<f64>>);

    impl Samples {
        pub fn push(&self, v: f64) {
            if let Ok(mut s) = self.0.lock() {
                s.push(v);
            }
        }

        pub fn len(&self) -> usize {
            self.0.lock().map(|s| s.len()).unwrap_or(0)
        }

        pub fn percentiles(&self) -> (f64, f64) {
            let mut v = self.0.lock().map(|s| s.clone()).unwrap_or_default();
            if v.is_empty() {
                return (0.0, 0.0);
            }
            v.sort_by(|a, b| a.total_cmp(b));
            let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
            (at(0.5), at(0.99))
        }
    }
}

/// The hand-written lapin floor on the same RabbitMQ at the same prefetch,
/// and conveyor's `processed` rates as ratios to it.
async fn bare_beside(
    report: &mut Report,
    bench: &str,
    url: &str,
    n: usize,
    processed: &[Processed],
) {
    for row in processed {
        let subject = row.subject();
        let Ok(slots) = u16::try_from(row.slots) else {
            continue;
        };
        for (acks, how) in [
            (crate::amqp_floor::Acks::Each, "ack each"),
            (crate::amqp_floor::Acks::Batched, "acks batched"),
        ] {
            let bare = crate::amqp_floor::consume_rate(url, n, slots, acks).await;
            let name = format!("bare lapin, prefetch {slots}, {how}");
            report.measured(bench, &name, &bare, "msgs/s");
            report.compared(
                bench,
                &format!("{subject} vs bare lapin, {how}"),
                &row.rate,
                "tasks/s",
                &name,
                &bare,
            );
        }
    }
}

/// Celery on the same RabbitMQ, and conveyor's `processed` rates as ratios
/// to its best figure with results off.
fn celery_beside(
    report: &mut Report,
    bench: &str,
    url: &str,
    quick: bool,
    processed: &[Processed],
) {
    let dir = std::env::temp_dir().join(format!("conveyor-bench-queue-{}", std::process::id()));
    let python = crate::celery::python().and_then(|python| {
        std::fs::create_dir_all(&dir)
            .map(|()| python)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))
    });
    let broker = url.split('?').next().unwrap_or(url);
    let n = if quick { 2_000 } else { 6_000 };
    // The best configuration with results off, the baseline of the ratios.
    let mut best: Option<(String, Measured)> = None;
    let configs = [
        ("prefork", 2, false, "classic"),
        ("prefork", 2, true, "classic"),
        ("prefork", 2, false, "quorum"),
        ("solo", 1, false, "classic"),
    ];
    for (pool, concurrency, results, queue_type) in configs {
        let config = crate::celery::CeleryConfig {
            pool,
            concurrency,
            results,
            queue_type,
        };
        let subject = format!("{}, {queue_type} queue", config.subject());
        let rate = match &python {
            Ok(python) => {
                crate::celery::measure(python, &dir, broker, n, config).map(|r| r.processed_per_s)
            }
            Err(e) => Err(format!("no Python with Celery: {e}")),
        };
        report.measured(bench, &subject, &rate, "tasks/s");
        if !results && crate::report::better(&rate, best.as_ref().map(|(_, b)| b)) {
            best = Some((subject, rate));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some((name, celery)) = best {
        for row in processed {
            report.compared(
                bench,
                &format!("{} vs Celery", row.subject()),
                &row.rate,
                "tasks/s",
                &name,
                &celery,
            );
        }
    }
}
