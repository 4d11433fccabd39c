//! Fire-time accuracy: `conveyor-bench schedules [--backend URL] [--quick]`.
//!
//! The leader's pass as a worker makes it (`schedules_pass`: fire what is
//! due, sleep until the earliest next fire) on one store, three ways, in
//! alternating rounds of 10 s (`--quick` 4 s), each in a namespace of its
//! own:
//!
//! - one schedule firing every second: the baseline;
//! - 1,000 schedules each firing once a minute, spread over its seconds
//!   (schedule `i` at second `i mod 60`): about 17 fires a second, as a
//!   leader of many schedules meets them;
//! - 1,000 schedules all firing every second on the same instant: the worst
//!   case, 1,000 fires due at once, every second.
//!
//! A fire's lateness is from its fire time to the end of the pass that
//! enqueued it (its transaction committed, its script returned): when a
//! worker can first see its task. The figures are the p50, p99 and worst
//! lateness over every fire of the rounds, and each p99's ratio to the one
//! schedule's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use conveyor::durable::schedule::Schedule;
use conveyor::durable::{schedules_pass, Backend};
use conveyor::Timestamp;
use serde_json::json;

use crate::namespace::Subject;
use crate::report::{Measured, Report};

/// Rounds of each shape, alternating which goes first.
const ROUNDS: usize = 3;

/// The schedules of the large shapes.
const MANY: usize = 1_000;

/// How the schedules fire.
#[derive(Debug, Clone, Copy)]
enum Shape {
    One,
    Spread,
    Together,
}

impl Shape {
    fn name(self) -> String {
        match self {
            Shape::One => "1 schedule firing every second".into(),
            Shape::Spread => format!("{MANY} schedules firing once a minute, spread"),
            Shape::Together => format!("{MANY} schedules firing every second together"),
        }
    }

    /// Schedule `i`'s declaration.
    fn declared(self, i: usize) -> serde_json::Value {
        let cron = match self {
            Shape::Spread => format!("{} * * * * *", i % 60),
            Shape::One | Shape::Together => "* * * * * *".to_string(),
        };
        json!({"cron": cron, "handler": "noop", "params": i})
    }

    fn count(self) -> usize {
        match self {
            Shape::One => 1,
            Shape::Spread | Shape::Together => MANY,
        }
    }
}

/// Runs the schedules benchmark.
pub async fn run(report: &mut Report, quick: bool, url: Option<&str>) {
    let secs = if quick { 4 } else { 10 };
    let kind = Subject::new(url, "probe").kind().await;
    let bench = format!("schedules/{kind}");
    let shapes = [Shape::One, Shape::Spread, Shape::Together];
    let mut late: [Vec<f64>; 3] = Default::default();
    let mut failed: [Option<String>; 3] = Default::default();
    for round in 0..ROUNDS {
        for k in 0..shapes.len() {
            let i = (round + k) % shapes.len();
            match measure(url, shapes[i], secs).await {
                Ok(mut ms) => {
                    eprintln!(
                        "  round {}: {}: {} fires, p99 {:.1} ms",
                        round + 1,
                        shapes[i].name(),
                        ms.len(),
                        percentile(&mut ms, 0.99)
                    );
                    late[i].extend(ms);
                }
                Err(e) => {
                    eprintln!("  round {}: {}: {e}", round + 1, shapes[i].name());
                    failed[i] = Some(e);
                }
            }
        }
    }
    let mut p99: [Measured; 3] = std::array::from_fn(|_| Err(String::new()));
    for (i, shape) in shapes.iter().enumerate() {
        let what = shape.name();
        if let Some(e) = &failed[i] {
            p99[i] = Err(e.clone());
            report.measured(&bench, &what, &p99[i], "ms");
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
        } else {
            report.compared(
                &bench,
                &format!("{what}: p99 lateness"),
                &p99[i],
                "ms",
                "one schedule's p99",
                &p99[0],
            );
        }
    }
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

/// `shape`'s schedules on one store for `secs`: the lateness of every
/// fire, in ms.
async fn measure(url: Option<&str>, shape: Shape, secs: u64) -> Result<Vec<f64>, String> {
    let s = Subject::new(url, &format!("sched{}", shape as u8));
    let b = s.open().await;
    let out = fire_for(b.as_ref(), shape, secs).await;
    drop(b);
    s.close().await;
    out
}

async fn fire_for(b: &dyn Backend, shape: Shape, secs: u64) -> Result<Vec<f64>, String> {
    let part = b.schedules().map_err(|e| e.to_string())?;
    for i in 0..shape.count() {
        let s = Schedule::declared(&format!("s{i:04}"), shape.declared(i))
            .map_err(|e| e.to_string())?;
        part.put_schedule(&s).await.map_err(|e| e.to_string())?;
    }
    // Fire times from now on: one that came while declaring is not the
    // pass's lateness.
    let start = Timestamp::now();
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut late = Vec::new();
    let errors = AtomicU64::new(0);
    while tokio::time::Instant::now() < end {
        let (fired, wait) = schedules_pass(part, &errors).await;
        let done = Timestamp::now();
        for f in fired.map_err(|e| e.to_string())? {
            if f.at.0 >= start.0 {
                late.push((done.0 - f.at.0) as f64);
            }
        }
        tokio::time::sleep(wait).await;
    }
    match errors.load(Ordering::Relaxed) {
        0 => Ok(late),
        n => Err(format!("{n} of the passes' calls failed")),
    }
}
