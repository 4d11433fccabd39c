//! Measures the Redis server's CPU time per task on the hot path: for each
//! phase (`enqueue_many` ×1000, `reserve(batch)` (default 500), `finish` of each reserved
//! batch) the difference of the server's main-thread CPU (`INFO cpu`) around the
//! calls, divided by the tasks. Server CPU is much steadier than throughput on
//! a loaded machine, so it is the figure to compare script changes by. Prints
//! the median over the rounds. Uses its own key prefix on the Redis at
//! `CONVEYOR_REDIS_URL` (default the local one) and deletes it at the end.
//!
//! ```text
//! cargo run --release -p conveyor-redis --example redis_cpu [tasks] [rounds] [batch]
//! ```

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Backend, Error, Finish, NewTask, SystemClock};
use conveyor_redis::RedisBackend;

const LEASE: Duration = Duration::from_secs(60);

/// The server's main-thread CPU seconds so far.
async fn server_cpu(conn: &mut redis::aio::MultiplexedConnection) -> Result<f64, Error> {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(conn)
        .await
        .map_err(|e| Error::backend_other(e.to_string()))?;
    let mut total = 0.0;
    for line in info.lines() {
        if let Some((k, v)) = line.split_once(':') {
            if k == "used_cpu_sys_main_thread" || k == "used_cpu_user_main_thread" {
                total += v.trim().parse::<f64>().unwrap_or(0.0);
            }
        }
    }
    Ok(total)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let batch: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let url =
        std::env::var("CONVEYOR_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client =
        redis::Client::open(url.as_str()).map_err(|e| Error::backend_other(e.to_string()))?;
    let mut info = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| Error::backend_other(e.to_string()))?;
    let queues = vec![conveyor_core::DEFAULT_QUEUE.to_string()];
    let (mut enq, mut res, mut fin) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let prefix = format!("conveyor-cpu-{}-{round}:", std::process::id());
        let b = RedisBackend::connect_with(&url, &prefix, Arc::new(SystemClock)).await?;
        let tasks: Vec<NewTask> = (0..n)
            .map(|i| NewTask::new("bench", i.to_string().into_bytes()))
            .collect();
        let c0 = server_cpu(&mut info).await?;
        for batch in tasks.chunks(1000) {
            b.enqueue_many(batch.to_vec()).await?;
        }
        let c1 = server_cpu(&mut info).await?;
        let (mut r_cpu, mut f_cpu) = (0.0, 0.0);
        loop {
            let a = server_cpu(&mut info).await?;
            let got = b.reserve(&queues, batch, LEASE).await?;
            let m = server_cpu(&mut info).await?;
            r_cpu += m - a;
            if got.is_empty() {
                break;
            }
            let reports = got
                .iter()
                .map(|r| Finish::complete(r.lease.clone()))
                .collect();
            let m = server_cpu(&mut info).await?;
            for r in b.finish(reports).await? {
                r?;
            }
            f_cpu += server_cpu(&mut info).await? - m;
        }
        b.clear().await?;
        let us = |s: f64| s * 1e6 / n as f64;
        enq.push(us(c1 - c0));
        res.push(us(r_cpu));
        fin.push(us(f_cpu));
    }
    println!(
        "server CPU per task, median of {rounds} rounds of {n}, batches of {batch}: enqueue {:.2} µs, reserve {:.2} µs, finish {:.2} µs, reserve+finish {:.2} µs",
        median(enq),
        median(res.clone()),
        median(fin.clone()),
        median(res.iter().zip(&fin).map(|(a, b)| a + b).collect())
    );
    Ok(())
}
