//! Single-task enqueues from many concurrent callers on one backend (group
//! enqueue), with the server's CPU per task and the tasks each script call
//! carried: `enqueue_callers [callers] [tasks] [eval]`. Uses its own key
//! prefix on the Redis at `CONVEYOR_REDIS_URL` (default the local one) and
//! deletes it at the end.

use std::sync::Arc;
use std::time::Instant;

use conveyor_core::{Backend, Error, NewTask, SystemClock};
use conveyor_redis::{RedisBackend, RedisTls, ScriptMode};

#[path = "support/server_cpu.rs"]
mod support;
use support::server_cpu;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let callers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let mode = match args.next().as_deref() {
        Some("eval") => ScriptMode::Eval,
        _ => ScriptMode::Functions,
    };
    let url =
        std::env::var("CONVEYOR_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("conveyor-enq-{}:", std::process::id());
    let b = RedisBackend::connect_using(
        &url,
        &prefix,
        Arc::new(SystemClock),
        &RedisTls::default(),
        mode,
    )
    .await?;
    let mut info = redis::Client::open(url.as_str())
        .map_err(|e| Error::backend_other(e.to_string()))?
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| Error::backend_other(e.to_string()))?;
    let calls_before = script_calls(&mut info).await?;
    let cpu_before = server_cpu(&mut info).await?;
    let per = n / callers;
    let t = Instant::now();
    let mut joins = Vec::new();
    for c in 0..callers {
        let b = b.clone();
        joins.push(tokio::spawn(async move {
            for i in 0..per {
                b.enqueue(NewTask::new("noop", (c * per + i).to_string().into_bytes()))
                    .await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for j in joins {
        j.await.map_err(|e| Error::backend_other(e.to_string()))??;
    }
    let rate = (per * callers) as f64 / t.elapsed().as_secs_f64();
    let server_us = (server_cpu(&mut info).await? - cpu_before) * 1e6 / (per * callers) as f64;
    let calls = script_calls(&mut info)
        .await?
        .saturating_sub(calls_before)
        .max(1);
    b.clear().await?;
    println!(
        "{callers} callers, {mode:?}: {rate:.0} tasks/s, server CPU {server_us:.1} µs/task, {:.1} tasks per script call",
        (per * callers) as f64 / calls as f64
    );
    Ok(())
}

/// Script calls (`FCALL` and `EVALSHA`) the server has run so far, from
/// `INFO commandstats`; between the two readings each is one enqueue call.
async fn script_calls(conn: &mut redis::aio::MultiplexedConnection) -> Result<u64, Error> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .map_err(|e| Error::backend_other(e.to_string()))?;
    Ok(info
        .lines()
        .filter(|l| l.starts_with("cmdstat_fcall:") || l.starts_with("cmdstat_evalsha:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum())
}
