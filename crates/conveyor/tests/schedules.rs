//! Schedules through the worker: a declared schedule is stored when the
//! worker starts and fired by the leader of the `schedules` role, each fire
//! time's task run once; three workers on one store fire each fire time
//! once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor::durable::schedule::Schedule;
use conveyor::durable::Backend;
use conveyor::{Handler, MemoryBackend, TaskError, TaskState, Worker};
use serde_json::{json, Value};

/// Runs of `tick`, by the params each got.
type Runs = Arc<Mutex<HashMap<String, usize>>>;

fn tick(runs: Runs) -> Handler<Value, ()> {
    Handler::io("tick", move |v: Value, _ctx| {
        let runs = runs.clone();
        async move {
            *runs.lock().expect("lock").entry(v.to_string()).or_default() += 1;
            Ok::<_, TaskError>(())
        }
    })
}

fn every_second() -> Schedule {
    Schedule::declared(
        "tick",
        json!({"every": "1s", "handler": "tick", "params": ["t"]}),
    )
    .expect("a schedule")
}

/// Three workers share one store and declare the same schedule; for about
/// three seconds each fire time is enqueued once and its task runs once:
/// the fires run equal the fire times from the first to the last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_fire_each_fire_time_once() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let runs: Runs = Arc::default();
    let mut stoppers = Vec::new();
    let mut joins = Vec::new();
    for _ in 0..3 {
        let w = Worker::builder(backend.clone())
            .handler(tick(runs.clone()))
            .schedule(every_second())
            .poll_interval(Duration::from_millis(20))
            .build()
            .expect("a valid worker");
        stoppers.push(w.stopper());
        joins.push(tokio::spawn(w.run_until(std::future::pending())));
    }
    tokio::time::sleep(Duration::from_millis(3_300)).await;
    let record = backend
        .schedules()
        .expect("part")
        .schedule("tick")
        .await
        .expect("read")
        .expect("stored");
    // Let the last fire's task run, then stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for s in &stoppers {
        s.stop();
    }
    for j in joins {
        j.await.expect("join").expect("worker");
    }
    assert!(record.last_fire.is_some(), "fired");
    let ran = runs
        .lock()
        .expect("lock")
        .get("[\"t\"]")
        .copied()
        .unwrap_or(0);
    assert!(ran >= 2, "fired about every second: {ran}");
    assert_eq!(record.missed, 0, "none missed");
    // Each fire time once: as many runs as distinct fire times enqueued.
    let tasks = conveyor::durable::Inspection::list(
        backend.inspection().expect("part"),
        &conveyor::durable::ListParams::new(TaskState::Completed),
    )
    .await
    .expect("list");
    let mut keys: Vec<String> = tasks.iter().filter_map(|t| t.unique_key.clone()).collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "no fire time twice");
    assert_eq!(n, ran, "each fire's task ran once");
}

/// A leader that stops cleanly steps down: the role is free the moment its
/// worker has stopped, not a term later (a rolling deploy makes no fire
/// late).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_stops_cleanly_hands_the_role_over() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let runs: Runs = Arc::default();
    let w = Worker::builder(backend.clone())
        .handler(tick(runs.clone()))
        .schedule(every_second())
        .poll_interval(Duration::from_millis(20))
        .build()
        .expect("a valid worker");
    let stopper = w.stopper();
    let run = tokio::spawn(w.run_until(std::future::pending()));
    // It leads once it fired.
    for _ in 0..100 {
        if runs.lock().expect("lock").values().sum::<usize>() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let term = conveyor::durable::SCHEDULES_TERM;
    assert!(
        !backend
            .lead("schedules", "other", term)
            .await
            .expect("lead"),
        "the running worker leads"
    );
    stopper.stop();
    run.await.expect("join").expect("worker");
    assert!(
        backend
            .lead("schedules", "other", term)
            .await
            .expect("lead"),
        "the role is free once its leader stopped"
    );
}
