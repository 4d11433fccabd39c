//! Hidden `enqueue-rounds` (built with `--features apalis`): one task per
//! enqueue call, conveyor on Redis against apalis-redis on the same server,
//! from one caller and from 32, alternated round by round (the side that goes
//! first alternates too). `queue` measures each side once, seconds apart, and
//! single rounds here move by ±15%: rounds side by side, with the server's
//! CPU and this process's CPU per task, separate a real change from the
//! machine's phases.
//!
//! ```text
//! cargo run --release -p conveyor-bench --features apalis -- enqueue-rounds \
//!     [--backend redis://127.0.0.1:6379] [--rounds 5] [--tasks 5000]
//! ```
//!
//! `--tasks` is the single caller's count per round; the 32 callers enqueue
//! eight times as many.

use std::time::Instant;

use crate::apalis_peer::{from_callers, push_each, Queue};
use crate::cpu_time;
use crate::namespace::Subject;
use crate::queue::noop_task;
use crate::report::median;

/// One side's figures for one measurement: tasks/s, the server's CPU per
/// task and this process's CPU per task (µs).
#[derive(Clone, Copy)]
struct Figures {
    rate: f64,
    server_us: f64,
    client_us: f64,
}

/// The Redis server's main-thread CPU seconds so far.
async fn server_cpu(conn: &mut redis::aio::MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(conn)
        .await
        .unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| *k == "used_cpu_sys_main_thread" || *k == "used_cpu_user_main_thread")
        .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
        .sum()
}

/// Runs `work` (which enqueues `n` tasks) and measures it.
async fn measured<F, Fut>(
    conn: &mut redis::aio::MultiplexedConnection,
    n: usize,
    work: F,
) -> Figures
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let (server, client) = (server_cpu(conn).await, cpu_time::own());
    let t = Instant::now();
    if let Err(e) = work().await {
        eprintln!("enqueue-rounds: {e}");
        std::process::exit(2);
    }
    let secs = t.elapsed().as_secs_f64();
    let per = |d: f64| d * 1e6 / n as f64;
    Figures {
        rate: n as f64 / secs,
        server_us: per(server_cpu(conn).await - server),
        client_us: per(cpu_time::own() - client),
    }
}

/// conveyor: `n` single enqueues from `callers` callers, in a fresh namespace.
async fn conveyor(
    url: &str,
    conn: &mut redis::aio::MultiplexedConnection,
    callers: usize,
    n: usize,
) -> Figures {
    let s = Subject::new(Some(url), "rounds");
    let b = s.open().await;
    let per = n / callers;
    let f = measured(conn, per * callers, || async {
        let joins: Vec<_> = (0..callers)
            .map(|c| {
                let b = b.clone();
                tokio::spawn(async move {
                    for i in 0..per {
                        b.enqueue(noop_task(c * per + i))
                            .await
                            .map_err(|e| format!("conveyor enqueue: {e}"))?;
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        for j in joins {
            j.await.map_err(|e| e.to_string())??;
        }
        Ok(())
    })
    .await;
    drop(b);
    s.close().await;
    f
}

/// apalis: the same, in a queue of its own.
async fn apalis(
    url: &str,
    conn: &mut redis::aio::MultiplexedConnection,
    callers: usize,
    n: usize,
) -> Figures {
    let q = match Queue::new(url, "rounds").await {
        Ok(q) => q,
        Err(e) => {
            eprintln!("enqueue-rounds: {e}");
            std::process::exit(2);
        }
    };
    let per = n / callers;
    let f = if callers == 1 {
        let mut storage = q.storage(1);
        measured(conn, per, || push_each(&mut storage, 0, per)).await
    } else {
        measured(conn, per * callers, || async {
            from_callers(per * callers, |c, per| {
                let mut storage = q.storage(1);
                async move { push_each(&mut storage, c * per, per).await }
            })
            .await
            .map(|_| ())
        })
        .await
    };
    q.drop_keys().await;
    f
}

/// Runs the rounds and prints each, then the medians.
pub async fn rounds(url: &str, rounds: usize, single: usize) {
    let mut conn = match redis::Client::open(url.split('?').next().unwrap_or(url)) {
        Ok(c) => match c.get_multiplexed_async_connection().await {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("enqueue-rounds: cannot connect to {url}: {e}");
                std::process::exit(2);
            }
        },
        Err(e) => {
            eprintln!("enqueue-rounds: {url}: {e}");
            std::process::exit(2);
        }
    };
    for (callers, n) in [(1, single), (32, single * 8)] {
        println!("enqueue 1/call, {callers} caller(s), {n} tasks per round:");
        println!("round  conveyor/s  apalis/s  ratio   server µs/task (ours, apalis)  client µs/task (ours, apalis)");
        let mut ratios = Vec::new();
        let mut ours_all = Vec::new();
        let mut theirs_all = Vec::new();
        for r in 0..rounds {
            let (ours, theirs) = if r % 2 == 0 {
                let o = conveyor(url, &mut conn, callers, n).await;
                (o, apalis(url, &mut conn, callers, n).await)
            } else {
                let t = apalis(url, &mut conn, callers, n).await;
                (conveyor(url, &mut conn, callers, n).await, t)
            };
            let ratio = ours.rate / theirs.rate;
            println!(
                "{r:>5}  {:>10.0}  {:>8.0}  {ratio:>5.2}x  {:>14.1} {:>8.1}  {:>20.1} {:>8.1}",
                ours.rate,
                theirs.rate,
                ours.server_us,
                theirs.server_us,
                ours.client_us,
                theirs.client_us
            );
            ratios.push(ratio);
            ours_all.push(ours);
            theirs_all.push(theirs);
        }
        let med =
            |v: &[Figures], f: fn(&Figures) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
        println!(
            "median {:>10.0}  {:>8.0}  {:>5.2}x  {:>14.1} {:>8.1}  {:>20.1} {:>8.1}",
            med(&ours_all, |f| f.rate),
            med(&theirs_all, |f| f.rate),
            median(&ratios),
            med(&ours_all, |f| f.server_us),
            med(&theirs_all, |f| f.server_us),
            med(&ours_all, |f| f.client_us),
            med(&theirs_all, |f| f.client_us),
        );
    }
}
