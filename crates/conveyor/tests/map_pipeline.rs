//! The map helpers and pipelines.

#![allow(clippy::unwrap_used)] // tests unwrap freely: a panic is a failure report

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor::{Handler, Outcome, Pipeline, Pool, StreamExt, TaskError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_keeps_input_order_and_limits_concurrency() {
    let pool = Pool::new().unwrap();
    let now = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let (n, m) = (now.clone(), max.clone());
    let h = Handler::io("inv", move |i: u64, _ctx| {
        let (n, m) = (n.clone(), m.clone());
        async move {
            let c = n.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(c, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20 - i % 20)).await;
            n.fetch_sub(1, Ordering::SeqCst);
            if i == 13 {
                return Err(TaskError::permanent("unlucky"));
            }
            Ok(i * 10)
        }
    });
    let out: Vec<Outcome<u64>> = pool.map(&h, 0..100u64, 8).collect().await;
    assert_eq!(out.len(), 100);
    for (i, o) in out.into_iter().enumerate() {
        if i == 13 {
            assert!(matches!(o, Outcome::Failed(_)));
        } else {
            assert_eq!(o.ok(), Some(i as u64 * 10));
        }
    }
    assert_eq!(max.load(Ordering::SeqCst), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_unordered_yields_as_completed() {
    let pool = Pool::new().unwrap();
    let h = Handler::io("sleepy", |ms: u64, _ctx| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, TaskError>(ms)
    });
    let out: Vec<(usize, Outcome<u64>)> =
        pool.map_unordered(&h, vec![200, 1, 100], 3).collect().await;
    let order: Vec<usize> = out.iter().map(|(i, _)| *i).collect();
    assert_eq!(order, vec![1, 2, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_batched_gives_one_outcome_per_input_in_order() {
    let pool = Pool::new().unwrap();
    let h = Handler::cpu("sq", |x: u64, _ctx| {
        if x == 7 {
            panic!("seven");
        }
        Ok::<_, TaskError>(x * x)
    });
    let out: Vec<Outcome<u64>> = pool.map_batched(&h, 0..1000u64, 4, 64).collect().await;
    assert_eq!(out.len(), 1000);
    assert!(matches!(&out[7], Outcome::Panicked(m) if m == "seven"));
    assert_eq!(out[999].clone().ok(), Some(999 * 999));
    // Metrics catch up just after the outcomes are delivered.
    let mut completed = 0;
    for _ in 0..200 {
        completed = pool.metrics().completed;
        if completed >= 16 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(completed, 16, "1000 items in 16 batch tasks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_feeds_stages_survives_failures_and_drains_in_order() {
    let pool = Pool::new().unwrap();
    let prepare = Handler::io("prepare", |s: String, _ctx| async move {
        s.trim().parse::<u64>().map_err(TaskError::from)
    });
    let assemble = Handler::cpu("assemble", |n: u64, _ctx| {
        if n % 10 == 3 {
            return Err(TaskError::permanent("bad part"));
        }
        Ok::<_, TaskError>(n * 2)
    });
    let inspect = Handler::io("inspect", |n: u64, _ctx| async move {
        tokio::time::sleep(Duration::from_millis(n % 3)).await;
        Ok::<_, TaskError>(format!("ok {n}"))
    });
    let failures = Arc::new(Mutex::new(Vec::new()));
    let f = failures.clone();
    let mut pipeline = Pipeline::builder(&pool, 8)
        .stage(&prepare, 4)
        .stage(&assemble, 2)
        .stage(&inspect, 4)
        .on_failure(move |fail| f.lock().unwrap().push((fail.stage, fail.handler)))
        .build();
    let input = pipeline.input().unwrap();
    let feeder = tokio::spawn(async move {
        for i in 0..100u64 {
            let item = if i == 50 {
                "not a number".to_string()
            } else {
                i.to_string()
            };
            input.send(item).await.unwrap();
        }
    });
    pipeline.close_input();
    let mut outputs = Vec::new();
    while let Some(out) = pipeline.recv().await {
        outputs.push(out);
    }
    feeder.await.unwrap();
    let stats = pipeline.finish().await;
    // 100 in; "50" unparsable; 10 of the numbers end in 3.
    assert_eq!(outputs.len(), 89);
    assert_eq!(
        (stats[0].received, stats[0].succeeded, stats[0].failed),
        (100, 99, 1)
    );
    assert_eq!(
        (stats[1].received, stats[1].succeeded, stats[1].failed),
        (99, 89, 10)
    );
    assert_eq!((stats[2].received, stats[2].succeeded), (89, 89));
    let order: Vec<u64> = stats.iter().map(|s| s.finish_order).collect();
    assert_eq!(order, vec![0, 1, 2], "stages drain in order");
    assert_eq!(failures.lock().unwrap().len(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_last_stage_holds_back_earlier_stages() {
    let pool = Pool::new().unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let first = Handler::io("first", move |n: u32, _ctx| {
        let s = s.clone();
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            Ok::<_, TaskError>(n)
        }
    });
    let id = Handler::io(
        "second",
        |n: u32, _ctx| async move { Ok::<_, TaskError>(n) },
    );
    let pipeline = Pipeline::builder(&pool, 2)
        .stage(&first, 1)
        .stage(&id, 1)
        .build();
    let input = pipeline.input().unwrap();
    tokio::spawn(async move {
        for i in 0..100 {
            if input.send(i).await.is_err() {
                break;
            }
        }
    });
    // Nobody reads the output: the bounded queues fill and the first stage stops.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let n = started.load(Ordering::SeqCst);
    assert!(n < 20, "first stage ran {n} items with nobody consuming");
    let stats = pipeline.finish().await;
    assert_eq!(stats[1].succeeded, 100);
}
