//! Measures the PostgreSQL backend's hot path on this machine and prints tasks/s:
//! `enqueue_many` in batches of 1000, then `reserve(256)` → `finish(batch)`
//! loops (one loop, then several side by side, as a worker's fetcher and
//! completer overlap). Timings are printed, never asserted.
//!
//! ```text
//! cargo run --release -p conveyor-postgres --example postgres_throughput [-- TASKS [LOOPS]]
//! ```
//!
//! Uses `CONVEYOR_POSTGRES_URL` (default: the local server, database `test`) and a
//! fresh schema that is dropped at the end. A background task calls
//! `recover_expired` every second, as a worker's maintenance loop does (which
//! lets the backend vacuum; `CONVEYOR_BENCH_NO_VACUUM=1` turns that off).

use conveyor_core::parts::*;
use std::time::{Duration, Instant};

use conveyor_core::{Backend, Finish, NewTask, ReserveParams};
use conveyor_postgres::tokio_postgres::{self, NoTls};
use conveyor_postgres::PostgresBackend;

const ENQUEUE_BATCH: usize = 1000;
const RESERVE_BATCH: usize = 256;
const LEASE: Duration = Duration::from_secs(60);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let total: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let loops: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(4);
    let url = std::env::var("CONVEYOR_POSTGRES_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_string());
    let schema = format!("conveyor_bench_{:08x}", fastrand::u32(..));
    // CONVEYOR_BENCH_NO_VACUUM=1 leaves vacuuming to autovacuum, to see the
    // difference the backend's own vacuuming makes.
    let vacuum =
        std::env::var("CONVEYOR_BENCH_NO_VACUUM").map_or(true, |v| v.is_empty() || v == "0");
    let backend = PostgresBackend::builder(&url)
        .schema(&schema)
        .vacuum_every(vacuum.then_some(conveyor_postgres::DEFAULT_VACUUM_EVERY))
        .connect()
        .await?;
    println!("backend vacuuming: {}", if vacuum { "on" } else { "off" });
    // The maintenance a worker runs: recover expired leases every second.
    let upkeep = {
        let b = backend.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Err(e) = b.recover_expired().await {
                    eprintln!("maintenance: {e}");
                }
            }
        })
    };
    let result = run(&backend, total, loops).await;
    upkeep.abort();
    drop(backend);
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await?;
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await?;
    result
}

/// CPU time (user + system) used so far by this process and by every local
/// `postgres` process (backends, WAL writer, checkpointer, autovacuum), read
/// from /proc; zeros where /proc cannot tell. Per-task CPU is what a busy
/// machine cannot distort much, unlike wall-clock rates.
fn cpu() -> (Duration, Duration) {
    fn ticks(stat: &str) -> Option<(String, u64)> {
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat.get(open + 1..close)?.to_string();
        let rest: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
        let utime: u64 = rest.get(11)?.parse().ok()?;
        let stime: u64 = rest.get(12)?.parse().ok()?;
        Some((comm, utime + stime))
    }
    let tick = |t: u64| Duration::from_millis(t * 10);
    let own = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| ticks(&s))
        .map_or(0, |(_, t)| t);
    let mut server = 0;
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) {
                if let Some((comm, t)) = ticks(&stat) {
                    if comm == "postgres" {
                        server += t;
                    }
                }
            }
        }
    }
    (tick(own), tick(server))
}

/// Runs `f`, then prints its wall-clock rate and CPU per task.
async fn measure<F, Fut>(label: &str, f: F) -> Result<(), Box<dyn std::error::Error>>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<usize, conveyor_core::Error>>,
{
    let (c0, s0) = cpu();
    let began = Instant::now();
    let n = f().await?;
    let wall = began.elapsed();
    let (c1, s1) = cpu();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n.max(1) as f64;
    println!(
        "{label:<44} {:>8.0} tasks/s   CPU/task: client {:>5.1} µs, server {:>5.1} µs",
        n as f64 / wall.as_secs_f64(),
        per(c1.saturating_sub(c0)),
        per(s1.saturating_sub(s0)),
    );
    Ok(())
}

async fn enqueue(backend: &PostgresBackend, total: usize) -> Result<(), conveyor_core::Error> {
    let mut left = total;
    let mut n = 0usize;
    while left > 0 {
        let k = left.min(ENQUEUE_BATCH);
        let tasks = (0..k)
            .map(|_| {
                n += 1;
                NewTask::new(
                    "bench",
                    format!("{{\"n\":{n},\"pad\":\"0123456789abcdef\"}}").into_bytes(),
                )
            })
            .collect();
        backend.enqueue_many(tasks).await?;
        left -= k;
    }
    Ok(())
}

/// Reserve → complete until the queue is empty; returns how many this loop did.
async fn drain(backend: PostgresBackend) -> Result<usize, conveyor_core::Error> {
    let queues = vec![conveyor_core::DEFAULT_QUEUE.to_string()];
    let mut done = 0;
    loop {
        let got = backend
            .reserve(ReserveParams::new(&queues, RESERVE_BATCH, LEASE))
            .await?;
        if got.is_empty() {
            return Ok(done);
        }
        let reports = got
            .iter()
            .map(|r| Finish::complete(r.lease.clone()))
            .collect::<Vec<_>>();
        done += reports.len();
        for r in backend.finish(reports).await? {
            r?;
        }
    }
}

async fn drain_with(
    backend: &PostgresBackend,
    loops: usize,
) -> Result<usize, conveyor_core::Error> {
    let mut joins = Vec::new();
    for _ in 0..loops {
        joins.push(tokio::spawn(drain(backend.clone())));
    }
    let mut done = 0;
    for j in joins {
        done += j
            .await
            .map_err(|e| conveyor_core::Error::backend_other(e.to_string()))??;
    }
    Ok(done)
}

async fn run(
    backend: &PostgresBackend,
    total: usize,
    loops: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    println!("conveyor-postgres throughput: {total} tasks per step, payload ~45 bytes");
    measure(
        &format!("enqueue_many ({ENQUEUE_BATCH}/batch, 1 producer)"),
        || async { enqueue(backend, total).await.map(|_| total) },
    )
    .await?;
    measure(
        &format!("reserve({RESERVE_BATCH}) → finish, 1 loop"),
        || async { drain_with(backend, 1).await },
    )
    .await?;
    enqueue(backend, total).await?;
    measure(
        &format!("reserve({RESERVE_BATCH}) → finish, {loops} loops"),
        || async { drain_with(backend, loops).await },
    )
    .await?;
    // Producer and consumers at once: the end-to-end figure of one process.
    measure(
        &format!("enqueue + reserve → finish at once ({loops} loops)"),
        || async {
            let producer = {
                let b = backend.clone();
                tokio::spawn(async move { enqueue(&b, total).await })
            };
            let mut consumed = 0;
            while consumed < total {
                let n = drain_with(backend, loops).await?;
                consumed += n;
                if n == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            producer
                .await
                .map_err(|e| conveyor_core::Error::backend_other(e.to_string()))??;
            Ok(total)
        },
    )
    .await?;
    Ok(())
}
