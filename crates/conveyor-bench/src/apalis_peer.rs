//! apalis 1.0 on Redis (apalis-redis), the peer subject of `queue` on Redis:
//! the same enqueue and no-op processing measurements on the same server in
//! the same run, each in a queue name of its own whose keys are dropped
//! afterwards. Built only with `--features apalis`. The enqueue rows are
//! measured in alternating rounds, conveyor's and apalis's
//! ([`crate::alternate`]), and compare the medians.
//!
//! apalis runs with its defaults (tasks locked, results persisted, events
//! emitted) and the fetch batch it documents for short tasks, at the slot
//! counts conveyor's rows use, tasks both polled in its worker's stream and
//! spawned on the runtime (`parallelize`); the best of the two is the
//! baseline of each ratio. A third row runs it without task locks
//! (`lock_tasks(false)`): its ceiling, but with no lease a dead worker's
//! tasks are never recovered, so that row is shown and not compared. Taking a
//! lock costs apalis an `LREM` that scans its whole active list, so its
//! processed rate falls as the backlog grows: the full run's backlog is
//! 100,000 tasks, `--quick`'s 20,000. Those calls take longer than the
//! redis crate's default reply timeout, so apalis's connection is given
//! [`RESPONSE_TIMEOUT`].
//!
//! A processed row counts only when every task ran and apalis stored every
//! one as done (its `done` set), within 300 s; otherwise it has no figure
//! and says why (`stopped after 500 of 100000 tasks: …`), as does every
//! ratio to it.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::{
    BoxDynError, ParallelizeExt, TaskSink, WorkerBuilder, WorkerBuilderExt, WorkerContext,
};
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use redis::aio::ConnectionManagerConfig;
use tokio::sync::Notify;

use crate::alternate::alternate;
use crate::queue::{EnqueueRates, Ours};
use crate::report::{better, workload, Measured, Report};

/// Rounds of each side's enqueue measurements.
const ENQUEUE_ROUNDS: usize = 3;

/// apalis's list (a sorted set) of every queue that ever had a worker.
const APALIS_QUEUES: &str = "core:apalis:queues:list";

/// How long apalis's connection waits for a reply. `apalis_redis::connect`
/// takes the redis crate's default, 500 ms, and a call that outlasts it
/// fails with "timed out", which stops the worker for good
/// (`PollNextError(Database(timed out))`). With task locks, one call of
/// apalis's takes the locks of a whole fetched batch and runs an `LREM` over
/// the whole active list for each task (the fetch has already trimmed them
/// off it, so every `LREM` scans to the end): at 500 slots on a 100,000-task
/// backlog that call takes longer than 500 ms, and the worker stopped after
/// its first batch. The call is apalis's own cost and is measured; only
/// the client's patience is raised.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// One Redis queue of apalis's, named for this run; its keys are removed on
/// [`Queue::drop_keys`].
pub(crate) struct Queue {
    conn: ConnectionManager,
    name: String,
}

impl Queue {
    /// A queue named for this run and `tag`, on a connection manager of its
    /// own whose replies may take [`RESPONSE_TIMEOUT`].
    pub(crate) async fn new(url: &str, tag: &str) -> Result<Queue, String> {
        let base = url.split('?').next().unwrap_or(url);
        let client = apalis_redis::Client::open(base)
            .map_err(|e| format!("cannot open {base} for apalis: {e}"))?;
        let config = ConnectionManagerConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| format!("cannot connect apalis to {base}: {e}"))?;
        let name = format!("conveyor-bench-apalis-{}-{tag}", std::process::id());
        Ok(Queue { conn, name })
    }

    pub(crate) fn storage(&self, batch: usize) -> RedisStorage<u64> {
        self.storage_with(batch, true)
    }

    fn storage_with(&self, batch: usize, locks: bool) -> RedisStorage<u64> {
        let config = Config::default()
            .queue(&self.name)
            .batch_size(batch.max(1))
            .lock_tasks(locks);
        RedisStorage::new(self.conn.clone()).with_config(config)
    }

    /// Moves every pushed task from the scheduled set to the active list, as
    /// apalis's fetch does, in steps it can take: apalis 1.0 pushes every task
    /// as scheduled for the current second, and its fetch script promotes all
    /// that are due in one `unpack`, which fails above Lua's ~8,000 values —
    /// a backlog of 20,000 would never run. Done before the clock starts, as
    /// conveyor's backlog is enqueued before its own.
    async fn promote(&mut self, config: &Config) -> Result<(), String> {
        let (scheduled, active) = (config.scheduled_jobs_set(), config.active_jobs_list());
        loop {
            let ids: Vec<String> = redis::cmd("ZRANGE")
                .arg(&scheduled)
                .arg(0)
                .arg(4_999)
                .query_async(&mut self.conn)
                .await
                .map_err(|e| format!("ZRANGE {scheduled}: {e}"))?;
            if ids.is_empty() {
                return Ok(());
            }
            redis::pipe()
                .atomic()
                .cmd("RPUSH")
                .arg(&active)
                .arg(&ids)
                .ignore()
                .cmd("ZREM")
                .arg(&scheduled)
                .arg(&ids)
                .ignore()
                .query_async::<()>(&mut self.conn)
                .await
                .map_err(|e| format!("promoting {} tasks: {e}", ids.len()))?;
        }
    }

    /// Removes every key of the queue (they all start with its name) and its
    /// entry in apalis's shared list of queues, which a worker registers as
    /// `<queue>:workers` (apalis-redis's `register_worker.lua`).
    pub(crate) async fn drop_keys(mut self) {
        let _: Result<(), _> = redis::cmd("ZREM")
            .arg(APALIS_QUEUES)
            .arg(format!("{}:workers", self.name))
            .query_async(&mut self.conn)
            .await;
        let pattern = format!("{}*", self.name);
        let mut cursor: u64 = 0;
        loop {
            let step: Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut self.conn)
                .await;
            let Ok((next, keys)) = step else { return };
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut self.conn)
                    .await;
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

/// apalis's enqueue rates, each in a queue of its own: one task per call
/// from one caller and from 32 concurrent callers (each with its own handle
/// on one connection), and batches of 1,000.
async fn enqueue_rates(url: &str, scale: usize) -> EnqueueRates {
    EnqueueRates {
        single: enqueue_single(url, 2_000 / scale).await,
        concurrent: enqueue_concurrent(url, 20_000 / scale).await,
        batched: enqueue_batched(url, 200_000 / scale).await,
    }
}

/// `n` single pushes from one caller.
async fn enqueue_single(url: &str, n: usize) -> Measured {
    let q = Queue::new(url, "single").await?;
    let mut storage = q.storage(1);
    let t = Instant::now();
    let rate = push_each(&mut storage, 0, n)
        .await
        .map(|()| n as f64 / t.elapsed().as_secs_f64());
    q.drop_keys().await;
    rate
}

/// `n` single pushes from 32 concurrent callers.
async fn enqueue_concurrent(url: &str, n: usize) -> Measured {
    let q = Queue::new(url, "concurrent").await?;
    let rate = from_callers(n, |c, per| {
        let mut storage = q.storage(1);
        async move { push_each(&mut storage, c * per, per).await }
    })
    .await;
    q.drop_keys().await;
    rate
}

/// `n` tasks pushed in batches of 1,000.
async fn enqueue_batched(url: &str, n: usize) -> Measured {
    let q = Queue::new(url, "batched").await?;
    let mut storage = q.storage(1);
    let t = Instant::now();
    let rate = push_batches(&mut storage, n)
        .await
        .map(|()| n as f64 / t.elapsed().as_secs_f64());
    q.drop_keys().await;
    rate
}

/// Measures apalis on the Redis at `url` and adds its rows, and conveyor's
/// ratios to them, to the report. A configuration that does not run its
/// whole workload has no figure: its row says why, and so do the ratios.
pub async fn beside(report: &mut Report, bench: &str, url: &str, scale: usize, ours: &Ours<'_>) {
    // Enqueue, both sides in alternating rounds.
    let (ours_runs, theirs_runs) = alternate(ENQUEUE_ROUNDS, |apalis| async move {
        if apalis {
            enqueue_rates(url, scale).await
        } else {
            crate::queue::enqueue_rates(Some(url), scale).await
        }
    })
    .await;
    for row in &EnqueueRates::ROWS {
        let ours = EnqueueRates::median(&ours_runs, row);
        let theirs = EnqueueRates::median(&theirs_runs, row);
        rows(report, bench, row.0, &ours, &theirs);
    }
    report.note(format!(
        "enqueue rows beside apalis: medians of {ENQUEUE_ROUNDS} alternating rounds each"
    ));

    // Processing pre-enqueued no-op tasks, at conveyor's slot counts.
    let n = 100_000 / scale;
    for row in ours.processed {
        let slots = row.slots;
        let batch = slots.max(256);
        // The best configuration with task locks, the baseline of the ratio.
        let mut best: Option<(String, Measured)> = None;
        for (spawned, locks) in [(false, true), (true, true), (false, false)] {
            let how = if spawned {
                "spawned"
            } else {
                "polled in the worker"
            };
            let lock = if locks { "" } else { ", no task locks" };
            let name = format!("apalis processed, concurrency {slots}, batch {batch}, {how}{lock}");
            let rate = process(url, n, slots, batch, spawned, locks).await;
            report.measured(bench, &name, &rate, "tasks/s");
            if locks && better(&rate, best.as_ref().map(|(_, b)| b)) {
                best = Some((name, rate));
            }
        }
        if let Some((name, rate)) = best {
            report.compared(
                bench,
                &format!("{} vs apalis", row.subject()),
                &row.rate,
                "tasks/s",
                &name,
                &rate,
            );
        }
    }
}

/// Pushes tasks `from..from + n` one call each.
pub(crate) async fn push_each(
    storage: &mut RedisStorage<u64>,
    from: usize,
    n: usize,
) -> Result<(), String> {
    for i in from..from + n {
        storage
            .push(i as u64)
            .await
            .map_err(|e| format!("push {} of {n} failed: {e}", i - from + 1))?;
    }
    Ok(())
}

/// Tasks/s of `total` tasks pushed by 32 concurrent callers, each a task
/// that `caller(c, per)` makes to push its `per` tasks; none when a caller
/// failed.
pub(crate) async fn from_callers<F, Fut>(total: usize, caller: F) -> Measured
where
    F: Fn(usize, usize) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let callers = 32;
    let per = total / callers;
    let t = Instant::now();
    let joins: Vec<_> = (0..callers).map(|c| tokio::spawn(caller(c, per))).collect();
    let mut pushed = Ok(());
    for (c, j) in joins.into_iter().enumerate() {
        let ended = j
            .await
            .map_err(|e| format!("caller {c} {e}"))
            .and_then(|r| r.map_err(|e| format!("caller {c}: {e}")));
        if pushed.is_ok() {
            pushed = ended;
        }
    }
    pushed.map(|()| (per * callers) as f64 / t.elapsed().as_secs_f64())
}

/// apalis's figure for `what`, and conveyor's beside it as a ratio (each,
/// when it has none, saying why).
pub(crate) fn rows(
    report: &mut Report,
    bench: &str,
    what: &str,
    ours: &Measured,
    apalis: &Measured,
) {
    let name = format!("apalis {what}");
    report.measured(bench, &name, apalis, "tasks/s");
    report.compared(
        bench,
        &format!("{what} vs apalis"),
        ours,
        "tasks/s",
        &name,
        apalis,
    );
}

/// Pushes `total` tasks in batches of 1,000.
async fn push_batches(storage: &mut RedisStorage<u64>, total: usize) -> Result<(), String> {
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
async fn process(
    url: &str,
    n: usize,
    slots: usize,
    batch: usize,
    spawned: bool,
    locks: bool,
) -> Measured {
    let tag = format!("e2e{slots}{}{}", u8::from(spawned), u8::from(locks));
    let mut q = Queue::new(url, &tag).await?;
    let rate = process_in(&mut q, n, slots, batch, spawned, locks).await;
    q.drop_keys().await;
    rate
}

async fn process_in(
    q: &mut Queue,
    n: usize,
    slots: usize,
    batch: usize,
    spawned: bool,
    locks: bool,
) -> Measured {
    let mut storage = q.storage_with(batch, locks);
    push_batches(&mut storage, n).await?;
    q.promote(storage.get_config()).await?;
    let done_set = storage.get_config().done_jobs_set();
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
    let name = format!("{}-worker", q.name);
    let t = Instant::now();
    let run = if spawned {
        let worker = WorkerBuilder::new(name)
            .backend(storage)
            .concurrency(slots)
            .parallelize(tokio::spawn)
            .build(noop);
        tokio::spawn(worker.run())
    } else {
        let worker = WorkerBuilder::new(name)
            .backend(storage)
            .concurrency(slots)
            .build(noop);
        tokio::spawn(worker.run())
    };
    // The worker stops itself at the n-th task.
    let (elapsed, ()) = workload(run, || {}, &all, &done, n, t).await?;
    let stored: usize = redis::cmd("SCARD")
        .arg(&done_set)
        .query_async(&mut q.conn)
        .await
        .map_err(|e| format!("SCARD {done_set}: {e}"))?;
    if stored < n {
        return Err(format!(
            "all {n} tasks ran, but apalis stored {stored} as done"
        ));
    }
    Ok(n as f64 / elapsed.as_secs_f64())
}
