//! Fire-time accuracy: `conveyor-bench schedules [--backend URL] [--quick]`.
//!
//! The leader's pass as a worker makes it (`schedules_pass`: fire what is
//! due, sleep until the earliest next fire) over 1,000 schedules that all
//! fire every second on the same instant — the worst case, every fire of a
//! second due at once — against the same pass over one schedule, on the
//! same store, in alternating rounds of 10 s (`--quick` 4 s), each in a
//! namespace of its own. A fire's lateness is from its fire time to the
//! end of the pass that enqueued it (its transaction committed, its script
//! returned): when a worker can first see its task. The figures are the
//! p50, p99 and worst lateness over every fire of the rounds; the ratio
//! compares the 1,000 schedules' p99 with the one schedule's.

use std::time::Duration;

use conveyor::durable::schedule::Schedule;
use conveyor::durable::{schedules_pass, Backend};
use conveyor::Timestamp;
use serde_json::json;

use crate::namespace::Subject;
use crate::report::{Measured, Report};

/// Rounds of each size, alternating which goes first.
const ROUNDS: usize = 3;

/// The schedules of the large size.
const MANY: usize = 1_000;

/// Runs the schedules benchmark.
pub async fn run(report: &mut Report, quick: bool, url: Option<&str>) {
    let secs = if quick { 4 } else { 10 };
    let kind = Subject::new(url, "probe").kind().await;
    let bench = format!("schedules/{kind}");
    let sizes = [1, MANY];
    let mut late: [Vec<f64>; 2] = Default::default();
    let mut failed: [Option<String>; 2] = Default::default();
    for round in 0..ROUNDS {
        for k in 0..sizes.len() {
            let i = (round + k) % sizes.len();
            match measure(url, sizes[i], secs).await {
                Ok(mut ms) => {
                    eprintln!(
                        "  round {}: {} schedules: {} fires, p99 {:.1} ms",
                        round + 1,
                        sizes[i],
                        ms.len(),
                        percentile(&mut ms, 0.99)
                    );
                    late[i].extend(ms);
                }
                Err(e) => {
                    eprintln!("  round {}: {} schedules: {e}", round + 1, sizes[i]);
                    failed[i] = Some(e);
                }
            }
        }
    }
    let mut p99: [Measured; 2] = [Err(String::new()), Err(String::new())];
    for i in 0..2 {
        let what = format!("{} schedule(s) firing every second together", sizes[i]);
        if let Some(e) = &failed[i] {
            report.measured(&bench, &what, &Err(e.clone()), "ms");
            p99[i] = Err(e.clone());
            continue;
        }
        let l = &mut late[i];
        let fires = l.len();
        p99[i] = Ok(percentile(l, 0.99));
        report.add(
            &bench,
            &format!("{what}: p50 lateness"),
            percentile(l, 0.5),
            "ms",
        );
        report.add(
            &bench,
            &format!("{what}: worst of {fires} fires"),
            percentile(l, 1.0),
            "ms",
        );
        if i == 0 {
            report.measured(&bench, &format!("{what}: p99 lateness"), &p99[0], "ms");
        }
    }
    report.compared(
        &bench,
        &format!("{MANY} schedules firing every second together: p99 lateness"),
        &p99[1],
        "ms",
        "one schedule's p99",
        &p99[0],
    );
}

/// The `q` quantile of `values` (sorted here), 0 when empty.
fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let at = ((values.len() as f64 - 1.0) * q).round() as usize;
    values[at.min(values.len() - 1)]
}

/// `n` schedules firing every second on one store for `secs`: the
/// lateness of every fire, in ms.
async fn measure(url: Option<&str>, n: usize, secs: u64) -> Result<Vec<f64>, String> {
    let s = Subject::new(url, &format!("sched{n}"));
    let b = s.open().await;
    let out = fire_for(b.as_ref(), n, secs).await;
    drop(b);
    s.close().await;
    out
}

async fn fire_for(b: &dyn Backend, n: usize, secs: u64) -> Result<Vec<f64>, String> {
    let part = b.schedules().map_err(|e| e.to_string())?;
    for i in 0..n {
        let s = Schedule::declared(
            &format!("s{i:04}"),
            json!({"cron": "* * * * * *", "handler": "noop", "params": i}),
        )
        .map_err(|e| e.to_string())?;
        part.put_schedule(&s).await.map_err(|e| e.to_string())?;
    }
    // Fire times from now on: one that came while declaring is not the
    // pass's lateness.
    let start = Timestamp::now();
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut late = Vec::new();
    while tokio::time::Instant::now() < end {
        let (fired, wait) = schedules_pass(part).await;
        let done = Timestamp::now();
        for f in fired.map_err(|e| e.to_string())? {
            if f.at.0 >= start.0 {
                late.push((done.0 - f.at.0) as f64);
            }
        }
        tokio::time::sleep(wait).await;
    }
    Ok(late)
}
