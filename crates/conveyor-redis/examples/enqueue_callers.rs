//! Single-task enqueues from many concurrent callers on one backend (group
//! enqueue), with the server's CPU per task: `enqueue_callers [callers]
//! [tasks] [eval]`. Uses its own key prefix on the Redis at
//! `CONVEYOR_REDIS_URL` (default the local one) and deletes it at the end.

use std::sync::Arc;
use std::time::Instant;

use conveyor_core::{Backend, Error, NewTask, SystemClock};
use conveyor_redis::{RedisBackend, RedisTls, ScriptMode};

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
    b.clear().await?;
    println!("{callers} callers, {mode:?}: {rate:.0} tasks/s");
    Ok(())
}
