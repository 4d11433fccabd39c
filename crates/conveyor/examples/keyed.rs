//! Per-key ordering: tasks that share a key run one at a time, in submission
//! order; tasks with different keys run in parallel.
//!
//! 20 accounts × 50 updates are submitted interleaved (account 0 update 0,
//! account 1 update 0, ..., account 0 update 1, ...). Inside the handler each
//! account's state checks that its updates arrive in order and never overlap,
//! while a global gauge shows how many accounts were being updated at once.
//!
//! Run: `cargo run --release -p conveyor --example keyed`

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor::{Handler, Pool, TaskError, TaskOptions};

const KEYS: usize = 20;
const PER_KEY: u32 = 50;

/// What the handler checks for one key.
#[derive(Default)]
struct KeyState {
    /// True while one of this key's tasks runs.
    running: AtomicBool,
    /// The sequence number the next task of this key must carry.
    next: AtomicU32,
}

/// Shared by every task: one state per key, and violation counters.
#[derive(Default)]
struct Checks {
    keys: [KeyState; KEYS],
    overlaps: AtomicU32,
    out_of_order: AtomicU32,
    running: AtomicUsize,
    peak: AtomicUsize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::new()?;
    let checks = Arc::new(Checks::default());

    // One account update: params are (account, sequence number).
    let update = Handler::io("update_account", {
        let checks = checks.clone();
        move |(account, seq): (usize, u32), _ctx| {
            let checks = checks.clone();
            async move {
                let key = checks
                    .keys
                    .get(account)
                    .ok_or_else(|| TaskError::permanent("no such account"))?;
                // Never two tasks of one key at once...
                if key.running.swap(true, Ordering::SeqCst) {
                    checks.overlaps.fetch_add(1, Ordering::SeqCst);
                }
                // ...and always in submission order.
                if key.next.swap(seq + 1, Ordering::SeqCst) != seq {
                    checks.out_of_order.fetch_add(1, Ordering::SeqCst);
                }
                let now = checks.running.fetch_add(1, Ordering::SeqCst) + 1;
                checks.peak.fetch_max(now, Ordering::SeqCst);

                // The update itself: 1–3 ms of I/O, varying by task.
                let ms = 1 + (account as u64 * 7 + u64::from(seq)) % 3;
                tokio::time::sleep(Duration::from_millis(ms)).await;

                checks.running.fetch_sub(1, Ordering::SeqCst);
                key.running.store(false, Ordering::SeqCst);
                Ok::<_, TaskError>(())
            }
        }
    });

    // The keys, built once: `TaskOptions::key` takes anything into `Arc<str>`.
    let keys: Vec<Arc<str>> = (0..KEYS)
        .map(|k| Arc::from(format!("account-{k}")))
        .collect();

    let job = pool.job().start()?;
    for seq in 0..PER_KEY {
        for (account, key) in keys.iter().enumerate() {
            let opts = TaskOptions::new().ordering_key(key.clone());
            job.submit_with(&update, (account, seq), opts)
                .await
                .map_err(|r| r.reason)?;
        }
    }
    let summary = job.await;

    let overlaps = checks.overlaps.load(Ordering::SeqCst);
    let out_of_order = checks.out_of_order.load(Ordering::SeqCst);
    let complete = checks
        .keys
        .iter()
        .all(|k| k.next.load(Ordering::SeqCst) == PER_KEY);
    println!(
        "{} tasks: {} succeeded, {} failed in {:.2?}",
        summary.total(),
        summary.succeeded,
        summary.failed,
        summary.wall
    );
    println!(
        "up to {} keys ran in parallel (of {KEYS})",
        checks.peak.load(Ordering::SeqCst)
    );
    let ok = overlaps == 0 && out_of_order == 0 && complete;
    println!(
        "SUMMARY: {KEYS} keys x {PER_KEY} tasks: {} — {overlaps} overlaps, {out_of_order} out of order, \
         every key finished all its tasks: {complete}",
        if ok { "order verified" } else { "ORDER VIOLATED" }
    );
    if !ok {
        return Err("per-key ordering was violated".into());
    }
    Ok(())
}
