//! No-op tasks through the full path: producer → bounded queue → 50 workers →
//! result handler → callback, for conveyor and for the same engine written by
//! hand three ways (same process, same allocator): tokio's mpsc behind a mutex,
//! and the lock-free MPMC channels `async-channel` and `flume`, which a user who
//! hand-writes the lean version would reach for. Then Python asyncio and
//! `ThreadPoolExecutor` baselines (see [`crate::python`]) when `python3` exists.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use conveyor::{Handler, Pool, TaskError};
use tokio::sync::{mpsc, Mutex};

use crate::python::{self, Baseline};
use crate::report::Report;

const WORKERS: usize = 50;
const CAPACITY: usize = 1000;

/// conveyor: one producer submits `n` no-op tasks; the callback counts them.
pub async fn conveyor_noop(n: u64) -> f64 {
    let pool = Pool::builder().workers(WORKERS).build().expect("pool");
    let noop = Handler::io("noop", |i: u64, _ctx| async move { Ok::<_, TaskError>(i) });
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    let start = Instant::now();
    let job = pool
        .job()
        .queue_capacity(CAPACITY)
        .result_capacity(CAPACITY)
        .on_task_complete(move |_r| {
            counter.fetch_add(1, Ordering::Relaxed);
        })
        .start()
        .expect("job");
    for i in 0..n {
        if job.submit(&noop, i).await.is_err() {
            break;
        }
    }
    let summary = job.await;
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(seen.load(Ordering::Relaxed), n);
    assert_eq!(summary.succeeded, n);
    n as f64 / secs
}

/// The hand-written tokio equivalent: a bounded mpsc shared by 50 worker tasks
/// behind a mutex, a bounded result channel and a result handler task.
pub async fn tokio_noop(n: u64) -> f64 {
    let start = Instant::now();
    let (tx, rx) = mpsc::channel::<u64>(CAPACITY);
    let (res_tx, mut res_rx) = mpsc::channel::<Result<u64, String>>(CAPACITY);
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = Vec::with_capacity(WORKERS);
    for _ in 0..WORKERS {
        let rx = rx.clone();
        let res_tx = res_tx.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some(i) = next else { break };
                let out = async move { Ok::<u64, String>(i) }.await;
                if res_tx.send(out).await.is_err() {
                    break;
                }
            }
        }));
    }
    drop(res_tx);
    let handler = tokio::spawn(async move {
        let mut seen = 0u64;
        while let Some(r) = res_rx.recv().await {
            if r.is_ok() {
                seen += 1;
            }
        }
        seen
    });
    for i in 0..n {
        if tx.send(i).await.is_err() {
            break;
        }
    }
    drop(tx);
    for w in workers {
        let _ = w.await;
    }
    let seen = handler.await.unwrap_or(0);
    assert_eq!(seen, n);
    n as f64 / start.elapsed().as_secs_f64()
}

/// The hand-written engine on an MPMC channel: 50 workers each receive from
/// the same bounded channel (no mutex), send to a bounded result channel, and
/// one result handler task counts. `C` picks the channel crate.
async fn mpmc_noop<C: Mpmc>(n: u64) -> f64 {
    let start = Instant::now();
    let (tx, rx) = C::bounded::<u64>(CAPACITY);
    let (res_tx, res_rx) = C::bounded::<Result<u64, String>>(CAPACITY);
    let mut workers = Vec::with_capacity(WORKERS);
    for _ in 0..WORKERS {
        let rx = rx.clone();
        let res_tx = res_tx.clone();
        workers.push(tokio::spawn(async move {
            while let Some(i) = C::recv(&rx).await {
                let out = async move { Ok::<u64, String>(i) }.await;
                if !C::send(&res_tx, out).await {
                    break;
                }
            }
        }));
    }
    drop((rx, res_tx));
    let handler = tokio::spawn(async move {
        let mut seen = 0u64;
        while let Some(r) = C::recv(&res_rx).await {
            if r.is_ok() {
                seen += 1;
            }
        }
        seen
    });
    for i in 0..n {
        if !C::send(&tx, i).await {
            break;
        }
    }
    drop(tx);
    for w in workers {
        let _ = w.await;
    }
    let seen = handler.await.unwrap_or(0);
    assert_eq!(seen, n);
    n as f64 / start.elapsed().as_secs_f64()
}

/// A bounded MPMC channel crate, as the hand-written engines use it.
trait Mpmc {
    type Tx<T: Send + 'static>: Clone + Send + 'static;
    type Rx<T: Send + 'static>: Clone + Send + 'static;
    fn bounded<T: Send + 'static>(cap: usize) -> (Self::Tx<T>, Self::Rx<T>);
    fn send<T: Send + 'static>(tx: &Self::Tx<T>, item: T) -> impl Future<Output = bool> + Send;
    fn recv<T: Send + 'static>(rx: &Self::Rx<T>) -> impl Future<Output = Option<T>> + Send;
}

/// `async-channel` (smol's; a lock-free concurrent queue with event listeners).
struct AsyncChannel;

impl Mpmc for AsyncChannel {
    type Tx<T: Send + 'static> = async_channel::Sender<T>;
    type Rx<T: Send + 'static> = async_channel::Receiver<T>;
    fn bounded<T: Send + 'static>(cap: usize) -> (Self::Tx<T>, Self::Rx<T>) {
        async_channel::bounded(cap)
    }
    async fn send<T: Send + 'static>(tx: &Self::Tx<T>, item: T) -> bool {
        tx.send(item).await.is_ok()
    }
    async fn recv<T: Send + 'static>(rx: &Self::Rx<T>) -> Option<T> {
        rx.recv().await.ok()
    }
}

/// `flume` (a spin-locked queue with a list of waiters).
struct Flume;

impl Mpmc for Flume {
    type Tx<T: Send + 'static> = flume::Sender<T>;
    type Rx<T: Send + 'static> = flume::Receiver<T>;
    fn bounded<T: Send + 'static>(cap: usize) -> (Self::Tx<T>, Self::Rx<T>) {
        flume::bounded(cap)
    }
    async fn send<T: Send + 'static>(tx: &Self::Tx<T>, item: T) -> bool {
        tx.send_async(item).await.is_ok()
    }
    async fn recv<T: Send + 'static>(rx: &Self::Rx<T>) -> Option<T> {
        rx.recv_async().await.ok()
    }
}

/// One subject of the no-op benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// conveyor's full path.
    Conveyor,
    /// Hand-written: tokio mpsc behind a mutex.
    Tokio,
    /// Hand-written: async-channel MPMC.
    AsyncChannel,
    /// Hand-written: flume MPMC.
    Flume,
}

impl Subject {
    /// Every subject, conveyor first.
    pub const ALL: [Subject; 4] = [
        Subject::Conveyor,
        Subject::Tokio,
        Subject::AsyncChannel,
        Subject::Flume,
    ];

    /// Its name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Subject::Conveyor => "conveyor",
            Subject::Tokio => "tokio hand-written",
            Subject::AsyncChannel => "async-channel hand-written",
            Subject::Flume => "flume hand-written",
        }
    }

    /// The subject whose command-line word (`conveyor`, `tokio`,
    /// `async-channel`, `flume`) is `word`.
    pub fn parse(word: &str) -> Option<Subject> {
        Subject::ALL
            .into_iter()
            .find(|s| s.name().split(' ').next() == Some(word))
    }

    /// Runs `n` no-op tasks through it; tasks per second.
    pub async fn measure(self, n: u64) -> f64 {
        match self {
            Subject::Conveyor => conveyor_noop(n).await,
            Subject::Tokio => tokio_noop(n).await,
            Subject::AsyncChannel => mpmc_noop::<AsyncChannel>(n).await,
            Subject::Flume => mpmc_noop::<Flume>(n).await,
        }
    }
}

/// Runs conveyor against the three hand-written engines (best of 5 each, after
/// a warm-up, the subjects taking turns so drift hits all alike), then against
/// the Python baselines when `python3` is available.
pub async fn run(report: &mut Report, quick: bool) {
    let n = if quick { 100_000 } else { 1_000_000 };
    for subject in Subject::ALL {
        subject.measure(n / 10).await;
    }
    let mut best = [0.0f64; Subject::ALL.len()];
    for _ in 0..5 {
        for (i, subject) in Subject::ALL.into_iter().enumerate() {
            best[i] = best[i].max(subject.measure(n).await);
        }
    }
    let conveyor = best[0];
    for (i, subject) in Subject::ALL.into_iter().enumerate().skip(1) {
        report.add("noop_full_path", subject.name(), best[i], "tasks/s");
    }
    for (i, subject) in Subject::ALL.into_iter().enumerate().skip(1) {
        report.add_vs(
            "noop_full_path",
            "conveyor",
            conveyor,
            "tasks/s",
            subject.name(),
            conveyor / best[i],
        );
    }
    python_baselines(report, quick, conveyor).await;
}

/// Python asyncio (best of 3, like the Rust subjects) and `ThreadPoolExecutor` (one run: it is slow),
/// each with conveyor's ratio to it; skipped with a note without `python3`.
async fn python_baselines(report: &mut Report, quick: bool, conveyor: f64) {
    let Some(version) = python::available() else {
        report.note("python3 not found on PATH: Python baselines skipped");
        return;
    };
    let runs = [
        (Baseline::Asyncio, if quick { 50_000 } else { 200_000 }, 3),
        (
            Baseline::ThreadPool,
            if quick { 20_000 } else { 100_000 },
            1,
        ),
    ];
    let mut sizes = Vec::new();
    for (baseline, n, repeat) in runs {
        let mut best: Option<f64> = None;
        for _ in 0..repeat {
            let result = tokio::task::spawn_blocking(move || python::run(baseline, n))
                .await
                .unwrap_or_else(|e| Err(format!("the python runner panicked: {e}")));
            match result {
                Ok(rate) => best = Some(best.map_or(rate, |b: f64| b.max(rate))),
                Err(e) => {
                    report.note(format!("{}: {e}", baseline.subject()));
                    break;
                }
            }
        }
        let Some(rate) = best else { continue };
        let subject = baseline.subject();
        sizes.push(format!("{subject}: {n} tasks"));
        report.add("noop_full_path", subject, rate, "tasks/s");
        report.add_vs(
            "noop_full_path",
            "conveyor",
            conveyor,
            "tasks/s",
            subject,
            conveyor / rate,
        );
    }
    report.note(format!("{version}; {}", sizes.join(", ")));
}
