//! [`restart_mid_schedule`]: the store restarted under a worker that leads
//! the schedules.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor::durable::schedule::Schedule;
use conveyor::{Handler, TaskError, Timestamp, Worker};
use serde_json::json;

use super::cases::{blocking, SERVER_DOWN};
use super::run::open;
use super::servers::Shared;
use super::{namespace, FaultTarget, RESUME_WITHIN, STOP_SLACK};
use crate::fires::fires_by_time;

/// The schedule's handler.
const TICK: &str = "fault-tick";

/// How long the worker goes on firing after the server is back.
const AFTER: Duration = Duration::from_secs(4);

/// A private server killed and started again on the same data under a
/// worker that fires a schedule every second (misfire `all`: no fire time
/// may be passed over). Within [`RESUME_WITHIN`] of the server's return a
/// fire is enqueued again, and over the whole run every fire time from the
/// first to the last is enqueued exactly once: those of the outage made up
/// when it ends, none twice.
pub async fn restart_mid_schedule(target: FaultTarget) {
    let Some(server) = blocking(target.private_server).await else {
        panic!("{}: the private server's program is missing", target.name);
    };
    let server = Shared::new(server);
    let addr = server.read(|s| s.addr());
    let url = (target.url)(addr, &namespace("restartsched"), true);
    let observer = open(&target, &url).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let tick = Handler::io(TICK, move |_: serde_json::Value, _ctx| {
        let runs = counted.clone();
        async move {
            runs.fetch_add(1, Ordering::Relaxed);
            Ok::<_, TaskError>(())
        }
    });
    let schedule = Schedule::declared(
        "tick",
        json!({"every": "1s", "handler": TICK, "misfire": "all"}),
    )
    .expect("a schedule");
    let worker = Worker::builder(open(&target, &url).await)
        .handler(tick)
        .schedule(schedule)
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap_or_else(|e| panic!("{}: build the worker: {e}", target.name));
    let stopper = worker.stopper();
    let running = tokio::spawn(worker.run_until(std::future::pending()));

    let deadline = Instant::now() + Duration::from_secs(20);
    while runs.load(Ordering::Relaxed) < 2 {
        assert!(Instant::now() < deadline, "{}: no fire ran", target.name);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.step(|s| s.stop()).await;
    tokio::time::sleep(SERVER_DOWN).await;
    server.step(|s| s.start()).await;
    let back = Timestamp::now();
    tokio::time::sleep(AFTER).await;
    stopper.stop();
    let stop = Instant::now();
    match tokio::time::timeout(Duration::from_secs(30) + STOP_SLACK, running).await {
        Ok(Ok(Ok(_))) => {}
        other => panic!(
            "{}: the worker did not stop cleanly: {other:?}",
            target.name
        ),
    }
    let stop_s = stop.elapsed().as_secs_f64();

    let by_fire = fires_by_time(observer.as_ref(), TICK).await;
    let duplicates: usize = by_fire.values().map(|ts| ts.len() - 1).sum();
    let times: Vec<i64> = by_fire.keys().copied().collect();
    let lost: i64 = times.windows(2).map(|w| (w[1] - w[0]) / 1_000 - 1).sum();
    let resumed = by_fire
        .values()
        .flatten()
        .map(|t| t.created_at)
        .filter(|c| c.0 >= back.0)
        .min()
        .map(|c| (c.0 - back.0) as f64 / 1e3);
    eprintln!(
        "FAULT backend={} fault=restart_schedule lost={lost} duplicates={duplicates} in_flight=0 \
         resume_s={} stop_s={stop_s:.2}",
        target.name,
        resumed.map_or("-".to_string(), |s| format!("{s:.2}")),
    );
    assert_eq!(duplicates, 0, "{}: fire times enqueued twice", target.name);
    assert_eq!(lost, 0, "{}: fire times missing: {times:?}", target.name);
    let resumed =
        resumed.unwrap_or_else(|| panic!("{}: nothing fired after the restart", target.name));
    assert!(
        resumed <= RESUME_WITHIN.as_secs_f64(),
        "{}: the first fire after the restart came {resumed:.2} s after it",
        target.name
    );
    server.drop_off_runtime().await;
}
