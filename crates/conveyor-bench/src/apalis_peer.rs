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
//! 100,000 tasks, `--quick`'s 20,000.

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
use crate::report::Report;

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
async fn enqueue_rates(url: &str, scale: usize) -> Result<EnqueueRates, String> {
    let q = Queue::new(url, "single").await?;
    let mut storage = q.storage(1);
    let single = 2_000 / scale;
    let t = Instant::now();
    push_each(&mut storage, 0, single).await?;
    let single = single as f64 / t.elapsed().as_secs_f64();
    q.drop_keys().await;

    let q = Queue::new(url, "concurrent").await?;
    let concurrent = from_callers(20_000 / scale, |c, per| {
        let mut storage = q.storage(1);
        async move { push_each(&mut storage, c * per, per).await }
    })
    .await?;
    q.drop_keys().await;

    let q = Queue::new(url, "batched").await?;
    let mut storage = q.storage(1);
    let total = 200_000 / scale;
    let t = Instant::now();
    push_batches(&mut storage, total).await?;
    let batched = total as f64 / t.elapsed().as_secs_f64();
    q.drop_keys().await;
    Ok(EnqueueRates {
        single,
        concurrent,
        batched,
    })
}

/// Measures apalis on the Redis at `url` and adds its rows, and conveyor's
/// ratios to them, to the report.
pub async fn beside(report: &mut Report, bench: &str, url: &str, scale: usize, ours: &Ours<'_>) {
    if let Err(e) = measure(report, bench, url, scale, ours).await {
        report.note(format!("apalis rows skipped: {e}"));
    }
}

async fn measure(
    report: &mut Report,
    bench: &str,
    url: &str,
    scale: usize,
    ours: &Ours<'_>,
) -> Result<(), String> {
    // Enqueue, both sides in alternating rounds.
    let (ours_runs, theirs_runs) = alternate(ENQUEUE_ROUNDS, |apalis| async move {
        if apalis {
            enqueue_rates(url, scale).await
        } else {
            Ok(crate::queue::enqueue_rates(Some(url), scale).await)
        }
    })
    .await;
    let ours_runs: Vec<EnqueueRates> = ours_runs.into_iter().collect::<Result<_, _>>()?;
    let theirs_runs: Vec<EnqueueRates> = theirs_runs.into_iter().collect::<Result<_, _>>()?;
    for row in &EnqueueRates::ROWS {
        let ours = EnqueueRates::median(&ours_runs, row);
        let theirs = EnqueueRates::median(&theirs_runs, row);
        rows(report, bench, row.0, ours, theirs);
    }
    report.note(format!(
        "enqueue rows beside apalis: medians of {ENQUEUE_ROUNDS} alternating rounds each"
    ));

    // Processing pre-enqueued no-op tasks, at conveyor's slot counts.
    let n = 100_000 / scale;
    for row in ours.processed {
        let (subject, ours_rate, slots) = (row.subject(), row.rate, row.slots);
        let batch = slots.max(256);
        let mut best: Option<(String, f64)> = None;
        for (spawned, locks) in [(false, true), (true, true), (false, false)] {
            let how = if spawned {
                "spawned"
            } else {
                "polled in the worker"
            };
            let lock = if locks { "" } else { ", no task locks" };
            let name = format!("apalis processed, concurrency {slots}, batch {batch}, {how}{lock}");
            let rate = match process(url, n, slots, batch, spawned, locks).await {
                Ok(rate) => rate,
                Err(e) => {
                    // apalis failing on this backlog is a finding: say it and go on.
                    report.note(format!("{name}: {e}"));
                    continue;
                }
            };
            report.add(bench, &name, rate, "tasks/s");
            if locks && best.as_ref().is_none_or(|(_, b)| rate > *b) {
                best = Some((name, rate));
            }
        }
        if let Some((name, rate)) = best {
            report.add_vs(
                bench,
                &format!("{subject} vs apalis"),
                ours_rate,
                "tasks/s",
                &name,
                ours_rate / rate,
            );
        }
    }
    Ok(())
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
            .map_err(|e| format!("apalis push: {e}"))?;
    }
    Ok(())
}

/// Tasks/s of `total` tasks pushed by 32 concurrent callers, each a task
/// that `caller(c, per)` makes to push its `per` tasks.
pub(crate) async fn from_callers<F, Fut>(total: usize, caller: F) -> Result<f64, String>
where
    F: Fn(usize, usize) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let callers = 32;
    let per = total / callers;
    let t = Instant::now();
    let joins: Vec<_> = (0..callers).map(|c| tokio::spawn(caller(c, per))).collect();
    for j in joins {
        j.await.map_err(|e| e.to_string())??;
    }
    Ok((per * callers) as f64 / t.elapsed().as_secs_f64())
}

/// Waits for the apalis worker `run` to have run all `n` tasks (`all`
/// notified; `done` counts them) and stops waiting for it; the time from `t`
/// to the n-th task's end, or why it did not come within 300 s.
pub(crate) async fn finished<T: std::fmt::Debug>(
    mut run: tokio::task::JoinHandle<T>,
    all: &Notify,
    done: &AtomicUsize,
    n: usize,
    t: Instant,
) -> Result<Duration, String> {
    let outcome = tokio::select! {
        _ = all.notified() => Ok(t.elapsed()),
        ended = &mut run => Err(format!(
            "the apalis worker ended after {} of {n} tasks: {ended:?}",
            done.load(Ordering::Relaxed)
        )),
        _ = tokio::time::sleep(Duration::from_secs(300)) => Err(format!(
            "apalis processed {} of {n} tasks in 300 s",
            done.load(Ordering::Relaxed)
        )),
    };
    if !run.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(30), &mut run).await;
        run.abort();
    }
    outcome
}

/// apalis's figure for `what`, and conveyor's beside it as a ratio.
pub(crate) fn rows(report: &mut Report, bench: &str, what: &str, ours: f64, apalis: f64) {
    let name = format!("apalis {what}");
    report.add(bench, &name, apalis, "tasks/s");
    report.add_vs(
        bench,
        &format!("{what} vs apalis"),
        ours,
        "tasks/s",
        &name,
        ours / apalis,
    );
}

/// Pushes `total` tasks in batches of 1,000.
async fn push_batches(storage: &mut RedisStorage<u64>, total: usize) -> Result<(), String> {
    for chunk in 0..total / 1000 {
        let tasks = (0..1000).map(|i| (chunk * 1000 + i) as u64).collect();
        storage
            .push_bulk(tasks)
            .await
            .map_err(|e| format!("push_bulk: {e}"))?;
    }
    Ok(())
}

/// Processes `n` pre-enqueued no-op tasks with one apalis worker; tasks/s
/// from its start to the n-th task's end.
async fn process(
    url: &str,
    n: usize,
    slots: usize,
    batch: usize,
    spawned: bool,
    locks: bool,
) -> Result<f64, String> {
    let tag = format!("e2e{slots}{}{}", u8::from(spawned), u8::from(locks));
    let mut q = Queue::new(url, &tag).await?;
    let mut storage = q.storage_with(batch, locks);
    push_batches(&mut storage, n).await?;
    q.promote(storage.get_config()).await?;
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
    let outcome = finished(run, &all, &done, n, t).await;
    q.drop_keys().await;
    Ok(n as f64 / outcome?.as_secs_f64())
}
