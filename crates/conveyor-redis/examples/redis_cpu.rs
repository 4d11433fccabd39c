//! Measures the Redis server's CPU time per task on the hot path: for each
//! phase (`enqueue` one task per call, `enqueue_many` ×1000, `reserve(batch)`
//! (default 500), `finish` of each reserved batch, every other batch
//! completed with a result) the difference of the
//! server's main-thread CPU (`INFO cpu`) around the calls, divided by the
//! tasks. Server CPU is much steadier than throughput on a loaded machine, so
//! it is the figure to compare script changes by. Runs each round twice, with
//! the Lua code as a function library and as scripts (`EVALSHA`), and prints
//! the median over the rounds of each with the ratio of scripts to functions.
//! Uses its own key prefixes on the Redis at `CONVEYOR_REDIS_URL` (default the
//! local one) and deletes them at the end.
//!
//! ```text
//! cargo run --release -p conveyor-redis --example redis_cpu [tasks] [rounds] [batch]
//! ```

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Backend, Error, Finish, FinishAction, NewTask, ReserveParams, SystemClock};
use conveyor_redis::{RedisBackend, RedisTls, ScriptMode};

#[path = "support/server_cpu.rs"]
mod support;
use support::server_cpu;

const LEASE: Duration = Duration::from_secs(60);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Server CPU per task (µs) of each phase in one round.
#[derive(Default)]
struct Round {
    single: Vec<f64>,
    enqueue: Vec<f64>,
    reserve: Vec<f64>,
    finish: Vec<f64>,
    finish_result: Vec<f64>,
}

async fn round(
    url: &str,
    prefix: &str,
    mode: ScriptMode,
    n: usize,
    batch: usize,
    info: &mut redis::aio::MultiplexedConnection,
    out: &mut Round,
) -> Result<(), Error> {
    let b = RedisBackend::connect_using(
        url,
        prefix,
        Arc::new(SystemClock),
        &RedisTls::default(),
        mode,
    )
    .await?;
    assert_eq!(b.script_mode(), mode, "the server took the mode asked for");
    let queues = vec![conveyor_core::DEFAULT_QUEUE.to_string()];
    let singles = (n / 10).max(1);
    let c0 = server_cpu(info).await?;
    for i in 0..singles {
        b.enqueue(NewTask::new("bench", i.to_string().into_bytes()))
            .await?;
    }
    let c1 = server_cpu(info).await?;
    let tasks: Vec<NewTask> = (0..n)
        .map(|i| NewTask::new("bench", i.to_string().into_bytes()))
        .collect();
    let c2 = server_cpu(info).await?;
    for batch in tasks.chunks(1000) {
        b.enqueue_many(batch.to_vec()).await?;
    }
    let c3 = server_cpu(info).await?;
    // Reserved batches alternate: completed with no result, then with one.
    let (mut r_cpu, mut done) = (0.0, 0usize);
    let mut finished = [(0.0, 0usize); 2];
    for k in 0.. {
        let a = server_cpu(info).await?;
        let got = b.reserve(ReserveParams::new(&queues, batch, LEASE)).await?;
        let m = server_cpu(info).await?;
        r_cpu += m - a;
        if got.is_empty() {
            break;
        }
        done += got.len();
        let with_result = k % 2 == 1;
        let reports = got
            .iter()
            .map(|r| {
                let result = with_result.then(|| r.lease.id.0.to_string().into_bytes());
                Finish::new(r.lease.clone(), FinishAction::Complete { result })
            })
            .collect();
        let m = server_cpu(info).await?;
        for r in b.finish(reports).await? {
            r?;
        }
        let f = &mut finished[usize::from(with_result)];
        f.0 += server_cpu(info).await? - m;
        f.1 += got.len();
    }
    b.clear().await?;
    let us = |s: f64, k: usize| s * 1e6 / k as f64;
    out.single.push(us(c1 - c0, singles));
    out.enqueue.push(us(c3 - c2, n));
    out.reserve.push(us(r_cpu, done));
    out.finish.push(us(finished[0].0, finished[0].1.max(1)));
    out.finish_result
        .push(us(finished[1].0, finished[1].1.max(1)));
    Ok(())
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
    let (mut functions, mut scripts) = (Round::default(), Round::default());
    for r in 0..rounds {
        // Alternating which goes first, so neither always runs on a warmer server.
        let modes = if r % 2 == 0 {
            [ScriptMode::Functions, ScriptMode::Eval]
        } else {
            [ScriptMode::Eval, ScriptMode::Functions]
        };
        for mode in modes {
            let prefix = format!("conveyor-cpu-{}-{r}-{mode:?}:", std::process::id());
            let out = if mode == ScriptMode::Functions {
                &mut functions
            } else {
                &mut scripts
            };
            round(&url, &prefix, mode, n, batch, &mut info, out).await?;
        }
    }
    println!(
        "server CPU per task, median of {rounds} rounds of {n} tasks, reserve batches of {batch}:"
    );
    println!(
        "{:<28} {:>10} {:>10} {:>8}",
        "phase", "functions", "scripts", "ratio"
    );
    let rows = [
        ("enqueue, 1 task per call", functions.single, scripts.single),
        (
            "enqueue_many, 1000 per call",
            functions.enqueue,
            scripts.enqueue,
        ),
        (
            "reserve",
            functions.reserve.clone(),
            scripts.reserve.clone(),
        ),
        ("finish", functions.finish.clone(), scripts.finish.clone()),
        (
            "finish, with a result",
            functions.finish_result.clone(),
            scripts.finish_result.clone(),
        ),
        (
            "reserve + finish",
            sum(&functions.reserve, &functions.finish),
            sum(&scripts.reserve, &scripts.finish),
        ),
    ];
    for (phase, f, s) in rows {
        let (f, s) = (median(f), median(s));
        println!("{phase:<28} {f:>8.2}µs {s:>8.2}µs {:>7.2}x", s / f);
    }
    Ok(())
}

fn sum(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}
