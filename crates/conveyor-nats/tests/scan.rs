//! A scan of the ledger (stats, listing, pruning) while workers rewrite the
//! records it covers: every scan ends, without an error, and counts each
//! task once: a record rewritten during the scan is counted at one of its
//! values, never at two and never at none.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Backend, Finish, NewTask, ReserveParams, SystemClock, DEFAULT_QUEUE};

const TASKS: u64 = 3_000;

/// Reserves and completes tasks in batches until none is left or `stop`.
async fn churn(b: Arc<dyn Backend>, stop: Arc<AtomicBool>) -> u64 {
    let queues = vec![DEFAULT_QUEUE.to_string()];
    let mut done = 0;
    while !stop.load(Ordering::Relaxed) {
        let got = b
            .reserve(ReserveParams::new(&queues, 100, Duration::from_secs(60)))
            .await
            .expect("reserve");
        if got.is_empty() {
            break;
        }
        let reports = got.into_iter().map(|r| Finish::complete(r.lease)).collect();
        for out in b.finish(reports).await.expect("finish") {
            out.expect("a live lease completes");
            done += 1;
        }
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_taken_while_records_change_end_and_count_each_task_once() {
    let b = common::scoped(common::fresh(Arc::new(SystemClock)).await);
    let tasks: Vec<NewTask> = (0..TASKS).map(|_| NewTask::new("h", Vec::new())).collect();
    for chunk in tasks.chunks(1_000) {
        b.enqueue_many(chunk.to_vec()).await.expect("enqueue");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|_| tokio::spawn(churn(b.clone(), stop.clone())))
        .collect();
    let mut scans = 0;
    loop {
        let stats = b.stats().await.expect("a scan during writes ends");
        let total: u64 = stats.iter().flat_map(|s| s.counts.values()).sum();
        assert_eq!(total, TASKS, "scan {scans}: each task counted once");
        scans += 1;
        if workers.iter().all(|w| w.is_finished()) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut done = 0;
    for w in workers {
        done += w.await.expect("worker");
    }
    assert_eq!(done, TASKS, "every task completed once");
    let stats = b.stats().await.expect("stats");
    let completed: u64 = stats
        .iter()
        .map(|s| s.count(conveyor_core::TaskState::Completed))
        .sum();
    assert_eq!(completed, TASKS);
    eprintln!("{scans} scans during the writes");
    assert!(scans >= 2, "at least one scan ran during the writes");
}
