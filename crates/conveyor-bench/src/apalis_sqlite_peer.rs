//! apalis 1.0 on SQLite (apalis-sqlite), the peer subject of `queue` on the
//! embedded backend: the same enqueue and no-op processing measurements in
//! the same run, each on a database file of its own in the temp directory,
//! deleted afterwards. Built only with `--features apalis`.
//!
//! apalis-sqlite's `setup` turns fsync off (`synchronous = OFF`, on the
//! connection that runs it). conveyor's embedded backend fsyncs every commit
//! (`synchronous = FULL`), so the compared rows run apalis with every pool
//! connection at `synchronous = FULL` too (WAL, as its setup sets); a second
//! set of rows runs it with fsync off on every connection, its ceiling, shown
//! and not compared: a task it acknowledged can be lost with the machine.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use apalis::prelude::{BoxDynError, TaskSink, WorkerBuilder, WorkerBuilderExt, WorkerContext};
use apalis_sqlite::{Config, SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteStorage};
use tokio::sync::Notify;

use crate::apalis_peer::{from_callers, rows};
use crate::queue::{EnqueueRates, Ours};
use crate::report::{workload, Measured, Report};

/// How apalis's connections write: fsync per commit (as conveyor) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sync {
    Full,
    Off,
}

impl Sync {
    fn pragma(self) -> &'static str {
        match self {
            Sync::Full => "FULL",
            Sync::Off => "OFF",
        }
    }
}

/// One database file of apalis's, removed with its WAL on drop.
struct Db {
    path: PathBuf,
    pool: SqlitePool,
}

impl Db {
    async fn new(tag: &str, sync: Sync) -> Result<Db, String> {
        let path = std::env::temp_dir().join(format!(
            "conveyor-bench-apalis-{}-{tag}.db",
            std::process::id()
        ));
        crate::namespace::remove_db(&path);
        let options = |p: &Path| -> Result<SqliteConnectOptions, String> {
            Ok(
                SqliteConnectOptions::from_str(&format!("sqlite://{}", p.display()))
                    .map_err(|e| format!("sqlite options: {e}"))?
                    .create_if_missing(true)
                    .pragma("journal_mode", "WAL")
                    .pragma("synchronous", sync.pragma()),
            )
        };
        // The schema from a pool of its own: setup sets `synchronous = OFF` on
        // the connection it runs on, which must not be one of the measured.
        let setup = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options(&path)?)
            .await
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        SqliteStorage::setup(&setup)
            .await
            .map_err(|e| format!("apalis-sqlite setup: {e}"))?;
        setup.close().await;
        let pool = SqlitePoolOptions::new()
            .connect_with(options(&path)?)
            .await
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Ok(Db { path, pool })
    }

    fn storage(&self, batch: usize) -> SqliteStorage<u64> {
        let config = Config::default().queue("bench").batch_size(batch.max(1));
        SqliteStorage::new(&self.pool).with_config(config)
    }

    async fn close(self) {
        self.pool.close().await;
        crate::namespace::remove_db(&self.path);
    }
}

/// Measures apalis-sqlite and adds its rows, and conveyor's ratios to the
/// fsync-per-commit ones, to the report. A measurement that does not run its
/// whole workload has no figure: its row says why, and so do the ratios.
pub async fn beside(report: &mut Report, bench: &str, scale: usize, ours: &Ours<'_>) {
    for sync in [Sync::Full, Sync::Off] {
        let label = match sync {
            Sync::Full => "sqlite fsync",
            Sync::Off => "sqlite no fsync",
        };
        let show = |report: &mut Report, what: &str, ours_rate: &Measured, rate: &Measured| {
            if sync == Sync::Full {
                rows(report, bench, &format!("{what} ({label})"), ours_rate, rate);
            } else {
                let name = format!("apalis {what} ({label})");
                report.measured(bench, &name, rate, "tasks/s");
            }
        };

        let theirs = enqueue_rates(sync, scale).await;
        for (what, figure) in &EnqueueRates::ROWS {
            show(report, what, figure(ours.enqueue), figure(&theirs));
        }

        // Processing pre-enqueued no-op tasks, at conveyor's slot counts.
        let n = 100_000 / scale;
        for row in ours.processed {
            let slots = row.slots;
            let batch = slots.max(256);
            let name = format!("processed, concurrency {slots}, batch {batch}");
            let rate = process(n, slots, batch, sync).await;
            show(report, &name, &row.rate, &rate);
        }
    }
}

/// apalis-sqlite's enqueue rates, each in a file of its own: one task per
/// call from one caller and from 32 concurrent callers (each with its own
/// handle on the pool), and batches of 1,000.
async fn enqueue_rates(sync: Sync, scale: usize) -> EnqueueRates {
    EnqueueRates {
        single: enqueue_single(sync, 2_000 / scale).await,
        concurrent: enqueue_concurrent(sync, 20_000 / scale).await,
        batched: enqueue_batched(sync, 200_000 / scale).await,
    }
}

/// `n` single pushes from one caller.
async fn enqueue_single(sync: Sync, n: usize) -> Measured {
    let db = Db::new("single", sync).await?;
    let mut storage = db.storage(1);
    let t = Instant::now();
    let mut rate = Ok(());
    for i in 0..n {
        if let Err(e) = storage.push(i as u64).await {
            rate = Err(format!("push {} of {n} failed: {e}", i + 1));
            break;
        }
    }
    let rate = rate.map(|()| n as f64 / t.elapsed().as_secs_f64());
    db.close().await;
    rate
}

/// `n` single pushes from 32 concurrent callers.
async fn enqueue_concurrent(sync: Sync, n: usize) -> Measured {
    let db = Db::new("concurrent", sync).await?;
    let rate = from_callers(n, |c, per| {
        let mut storage = db.storage(1);
        async move {
            for i in 0..per {
                storage
                    .push((c * per + i) as u64)
                    .await
                    .map_err(|e| format!("push {} of {per} failed: {e}", i + 1))?;
            }
            Ok(())
        }
    })
    .await;
    db.close().await;
    rate
}

/// `n` tasks pushed in batches of 1,000.
async fn enqueue_batched(sync: Sync, n: usize) -> Measured {
    let db = Db::new("batched", sync).await?;
    let mut storage = db.storage(1);
    let t = Instant::now();
    let rate = push_batches(&mut storage, n)
        .await
        .map(|()| n as f64 / t.elapsed().as_secs_f64());
    db.close().await;
    rate
}

/// Pushes `total` tasks in batches of 1,000.
async fn push_batches(storage: &mut SqliteStorage<u64>, total: usize) -> Result<(), String> {
    for chunk in 0..total / 1000 {
        let tasks = (0..1000).map(|i| (chunk * 1000 + i) as u64).collect();
        storage
            .push_bulk(tasks)
            .await
            .map_err(|e| format!("push_bulk {} of {}: {e}", chunk + 1, total / 1000))?;
    }
    Ok(())
}

/// Processes `n` pre-enqueued no-op tasks with one apalis worker; tasks/s
/// from its start to the n-th task's end, when every task ran and apalis
/// stored every one as done.
async fn process(n: usize, slots: usize, batch: usize, sync: Sync) -> Measured {
    let db = Db::new(&format!("e2e{slots}{}", sync.pragma()), sync).await?;
    let rate = process_in(&db, n, slots, batch).await;
    db.close().await;
    rate
}

async fn process_in(db: &Db, n: usize, slots: usize, batch: usize) -> Measured {
    let mut storage = db.storage(batch);
    push_batches(&mut storage, n).await?;
    let done = Arc::new(AtomicUsize::new(0));
    let all = Arc::new(Notify::new());
    let (d, a) = (done.clone(), all.clone());
    let noop = move |_task: u64, worker: WorkerContext| {
        let (d, a) = (d.clone(), a.clone());
        async move {
            if d.fetch_add(1, Ordering::Relaxed) + 1 == n {
                a.notify_one();
                let _ = worker.stop();
            }
            Ok::<(), BoxDynError>(())
        }
    };
    let t = Instant::now();
    let worker = WorkerBuilder::new(format!("conveyor-bench-{slots}"))
        .backend(storage)
        .concurrency(slots)
        .build(noop);
    let run = tokio::spawn(worker.run());
    // The worker stops itself at the n-th task.
    let (elapsed, ()) = workload(run, || {}, &all, &done, n, t).await?;
    let stored = stored_done(&db.path)?;
    if stored < n {
        return Err(format!(
            "all {n} tasks ran, but apalis stored {stored} as done"
        ));
    }
    Ok(n as f64 / elapsed.as_secs_f64())
}

/// How many tasks apalis-sqlite's file at `path` holds as done.
fn stored_done(path: &Path) -> Result<usize, String> {
    let conn =
        rusqlite::Connection::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    conn.query_row("SELECT COUNT(*) FROM Jobs WHERE status = 'Done'", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|count| usize::try_from(count).unwrap_or(0))
    .map_err(|e| format!("count the done tasks: {e}"))
}
