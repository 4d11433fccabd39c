//! Measures the Redis backend's hot path on this machine and prints tasks/s,
//! side by side with a bare Redis list queue on the same server (`LPUSH` 1000
//! per call, `RPOP` 256 per call: no leases, no fencing, no record of a task
//! once popped) as the machine's yardstick:
//! `enqueue_many` in batches of 1000, then `reserve(256)` → `finish(batch)`
//! loops (one, then several sharing the connection); then the same loop with
//! every report carrying a handler's retention, and over tasks with a keep of
//! their own, each beside a plain loop in the same run. Uses its own key prefix on
//! the Redis at `CONVEYOR_REDIS_URL` (default the local one) and deletes it at
//! the end.
//!
//! ```text
//! cargo run --release -p conveyor-redis --example redis_throughput [tasks]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor_core::{Backend, Error, Finish, NewTask, ReserveParams, Retention, SystemClock};
use conveyor_redis::RedisBackend;

const ENQUEUE_BATCH: usize = 1000;
const RESERVE_BATCH: usize = 256;
const LEASE: Duration = Duration::from_secs(60);

fn payload(i: usize) -> Vec<u8> {
    format!("{{\"n\":{i},\"pad\":\"xxxxxxxxxxxx\"}}").into_bytes()
}

async fn enqueue(b: &RedisBackend, n: usize) -> Result<f64, Error> {
    enqueue_kept(b, n, None).await
}

/// Enqueues n tasks, each with `keep` as its own keep.
async fn enqueue_kept(b: &RedisBackend, n: usize, keep: Option<Duration>) -> Result<f64, Error> {
    let tasks: Vec<NewTask> = (0..n)
        .map(|i| {
            let t = NewTask::new("bench", payload(i));
            match keep {
                Some(k) => t.keep(k),
                None => t,
            }
        })
        .collect();
    let start = Instant::now();
    for batch in tasks.chunks(ENQUEUE_BATCH) {
        b.enqueue_many(batch.to_vec()).await?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Reserve → finish until the queue is empty; returns tasks handled.
async fn drain(b: RedisBackend) -> Result<usize, Error> {
    drain_retained(b, None).await
}

/// As [`drain`], each report carrying `retention` (a handler's).
async fn drain_retained(b: RedisBackend, retention: Option<Retention>) -> Result<usize, Error> {
    let queues = vec![conveyor_core::DEFAULT_QUEUE.to_string()];
    let mut n = 0;
    loop {
        let got = b
            .reserve(ReserveParams::new(&queues, RESERVE_BATCH, LEASE))
            .await?;
        if got.is_empty() {
            return Ok(n);
        }
        n += got.len();
        let reports = got
            .iter()
            .map(|r| {
                let f = Finish::complete(r.lease.clone());
                match retention {
                    Some(ret) => f.with_retention(ret),
                    None => f,
                }
            })
            .collect();
        for r in b.finish(reports).await? {
            r?;
        }
    }
}

async fn cycle(b: &RedisBackend, loops: usize) -> Result<f64, Error> {
    let start = Instant::now();
    let mut joins = Vec::new();
    for _ in 0..loops {
        joins.push(tokio::spawn(drain(b.clone())));
    }
    let mut n = 0;
    for j in joins {
        n += j.await.map_err(|e| Error::backend_other(e.to_string()))??;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// The yardstick: a plain list queue. Returns (push tasks/s, pop tasks/s).
async fn list_queue(url: &str, key: &str, n: usize) -> Result<(f64, f64), Error> {
    let e = |e: redis::RedisError| Error::backend_other(e.to_string());
    let client = redis::Client::open(url).map_err(e)?;
    let mut conn = client.get_multiplexed_async_connection().await.map_err(e)?;
    let items: Vec<Vec<u8>> = (0..n).map(payload).collect();
    let start = Instant::now();
    for batch in items.chunks(ENQUEUE_BATCH) {
        let _: u64 = redis::cmd("LPUSH")
            .arg(key)
            .arg(batch)
            .query_async(&mut conn)
            .await
            .map_err(e)?;
    }
    let push = n as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut popped = 0;
    loop {
        let got: Option<Vec<Vec<u8>>> = redis::cmd("RPOP")
            .arg(key)
            .arg(RESERVE_BATCH)
            .query_async(&mut conn)
            .await
            .map_err(e)?;
        match got {
            Some(v) if !v.is_empty() => popped += v.len(),
            _ => break,
        }
    }
    Ok((push, popped as f64 / start.elapsed().as_secs_f64()))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let url = std::env::var("CONVEYOR_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    let prefix = format!("conveyor-bench-{:08x}:", std::process::id());
    let b = RedisBackend::connect_with(&url, &prefix, Arc::new(SystemClock)).await?;
    b.clear().await?;
    println!("{n} tasks, payload ~40 bytes, Redis at {url}");
    let (push, pop) = list_queue(&url, &format!("{prefix}baseline"), n).await?;
    println!("yardstick: list LPUSH x{ENQUEUE_BATCH}:        {push:>9.0} tasks/s");
    println!("yardstick: list RPOP x{RESERVE_BATCH}:          {pop:>9.0} tasks/s");
    let rate = enqueue(&b, n).await?;
    println!(
        "enqueue_many x{ENQUEUE_BATCH}:              {rate:>9.0} tasks/s  ({:.2} of LPUSH)",
        rate / push
    );
    let rate = cycle(&b, 1).await?;
    println!(
        "reserve({RESERVE_BATCH}) -> finish, 1 loop:  {rate:>9.0} tasks/s  ({:.2} of RPOP)",
        rate / pop
    );
    for loops in [2, 4] {
        enqueue(&b, n).await?;
        let rate = cycle(&b, loops).await?;
        println!("reserve({RESERVE_BATCH}) -> finish, {loops} loops: {rate:>9.0} tasks/s");
    }
    // Expiries of their own, beside plain tasks: three rounds of the three
    // loops in turn, medians.
    let (mut plain, mut retained, mut kept) = (Vec::new(), Vec::new(), Vec::new());
    let (mut plain_enq, mut kept_enq) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        plain_enq.push(enqueue(&b, n).await?);
        plain.push(cycle(&b, 1).await?);
        enqueue(&b, n).await?;
        let start = Instant::now();
        let done = drain_retained(b.clone(), Some(Retention::default())).await?;
        retained.push(done as f64 / start.elapsed().as_secs_f64());
        kept_enq.push(enqueue_kept(&b, n, Some(Duration::from_secs(3600))).await?);
        kept.push(cycle(&b, 1).await?);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (plain, plain_enq) = (median(&mut plain), median(&mut plain_enq));
    for (what, rate, base) in [
        (
            "with a handler's retention, 1 loop:",
            median(&mut retained),
            plain,
        ),
        (
            "tasks with a keep: enqueue_many   ",
            median(&mut kept_enq),
            plain_enq,
        ),
        (
            "tasks with a keep: 1 loop:        ",
            median(&mut kept),
            plain,
        ),
    ] {
        println!(
            "  {what} {rate:>9.0} tasks/s  ({:.2} of plain, {base:.0}; medians of 3)",
            rate / base
        );
    }
    b.clear().await?;
    Ok(())
}
