//! Limits applied at dispatch: global, per lane, per handler, per key, rate.

#![allow(clippy::unwrap_used)] // tests unwrap freely: a panic is a failure report

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor::{Handler, Pool, Rate, TaskError, TaskOptions};
use tokio::time::Instant;

/// Tracks how many run at once and the most seen.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Gauge {
    fn enter(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
    }
    fn exit(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
    fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

fn sleeper(name: &str, gauge: Arc<Gauge>, ms: u64) -> Handler<u32, ()> {
    Handler::io(name, move |_: u32, _ctx| {
        let g = gauge.clone();
        async move {
            g.enter();
            tokio::time::sleep(Duration::from_millis(ms)).await;
            g.exit();
            Ok::<_, TaskError>(())
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_cap_global_concurrency() {
    let pool = Pool::builder().workers(7).build().unwrap();
    let gauge = Arc::new(Gauge::default());
    let h = sleeper("s", gauge.clone(), 5);
    let job = pool.job().start().unwrap();
    for i in 0..100 {
        job.submit(&h, i).await.unwrap();
    }
    assert_eq!(job.await.succeeded, 100);
    assert_eq!(gauge.max(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_handler_limit_does_not_starve_other_handlers() {
    let pool = Pool::builder().workers(20).build().unwrap();
    let slow_gauge = Arc::new(Gauge::default());
    let fast_gauge = Arc::new(Gauge::default());
    let slow = sleeper("slow", slow_gauge.clone(), 10).concurrency(3);
    let fast = sleeper("fast", fast_gauge.clone(), 10);
    let job = pool.job().start().unwrap();
    for i in 0..60 {
        job.submit(&slow, i).await.unwrap();
        job.submit(&fast, i).await.unwrap();
    }
    assert_eq!(job.await.succeeded, 120);
    assert_eq!(slow_gauge.max(), 3);
    assert!(
        fast_gauge.max() > 3,
        "fast ran {} at once",
        fast_gauge.max()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_have_their_own_limits() {
    let pool = Pool::builder()
        .workers(50)
        .cpu_threads(2)
        .io_limit(5)
        .build()
        .unwrap();
    let io_gauge = Arc::new(Gauge::default());
    let cpu_gauge = Arc::new(Gauge::default());
    let io = sleeper("io", io_gauge.clone(), 5);
    let cg = cpu_gauge.clone();
    let cpu = Handler::cpu("cpu", move |_: u32, _ctx| {
        cg.enter();
        std::thread::sleep(Duration::from_millis(5));
        let on_cpu_thread = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("conveyor-cpu-"));
        cg.exit();
        if on_cpu_thread {
            Ok(())
        } else {
            Err(TaskError::permanent("cpu work ran off the cpu lane"))
        }
    });
    let job = pool.job().start().unwrap();
    for i in 0..40 {
        job.submit(&io, i).await.unwrap();
        job.submit(&cpu, i).await.unwrap();
    }
    let s = job.await;
    assert_eq!(s.succeeded, 80, "{s:?}");
    assert_eq!(io_gauge.max(), 5);
    assert_eq!(cpu_gauge.max(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_runs_one_at_a_time_in_submission_order() {
    let pool = Pool::builder().workers(32).build().unwrap();
    let log: Arc<Mutex<HashMap<u32, Vec<u32>>>> = Arc::default();
    let running: Arc<Mutex<HashMap<u32, bool>>> = Arc::default();
    let overlap = Arc::new(AtomicUsize::new(0));
    let (l, r, o) = (log.clone(), running.clone(), overlap.clone());
    let h = Handler::io("keyed", move |(key, seq): (u32, u32), _ctx| {
        let (l, r, o) = (l.clone(), r.clone(), o.clone());
        async move {
            if r.lock().unwrap().insert(key, true) == Some(true) {
                o.fetch_add(1, Ordering::SeqCst);
            }
            l.lock().unwrap().entry(key).or_default().push(seq);
            // Vary run time so later tasks would overtake earlier ones if allowed.
            let ms = u64::from((key * 7 + seq * 13) % 5);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            r.lock().unwrap().insert(key, false);
            Ok::<_, TaskError>(())
        }
    });
    let job = pool.job().queue_capacity(64).start().unwrap();
    for seq in 0..40u32 {
        for key in 0..10u32 {
            let opts = TaskOptions::new().ordering_key(format!("k{key}"));
            job.submit_with(&h, (key, seq), opts).await.unwrap();
        }
    }
    assert_eq!(job.await.succeeded, 400);
    assert_eq!(
        overlap.load(Ordering::SeqCst),
        0,
        "two tasks of one key overlapped"
    );
    for (key, seqs) in log.lock().unwrap().iter() {
        assert_eq!(seqs, &(0..40).collect::<Vec<_>>(), "key {key} out of order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_keys_run_in_parallel() {
    let pool = Pool::builder().workers(16).build().unwrap();
    let gauge = Arc::new(Gauge::default());
    let h = sleeper("k", gauge.clone(), 20);
    let job = pool.job().start().unwrap();
    for i in 0..16 {
        job.submit_with(&h, i, TaskOptions::new().ordering_key(format!("key-{i}")))
            .await
            .unwrap();
    }
    job.await;
    assert_eq!(gauge.max(), 16);
}

#[tokio::test(start_paused = true)]
async fn handler_rate_spaces_starts_after_the_burst() {
    let pool = Pool::new().unwrap();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let s = starts.clone();
    let h = Handler::io("rated", move |_: u32, _ctx| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push(Instant::now());
            Ok::<_, TaskError>(())
        }
    })
    .rate(Rate::per_second(10).burst(3));
    let t0 = Instant::now();
    let job = pool.job().start().unwrap();
    for i in 0..13 {
        job.submit(&h, i).await.unwrap();
    }
    assert_eq!(job.await.succeeded, 13);
    let starts = starts.lock().unwrap();
    // 3 at once, then one every 100 ms: the 13th at 1.0 s.
    let offsets: Vec<u128> = starts.iter().map(|t| (*t - t0).as_millis()).collect();
    assert!(offsets[..3].iter().all(|&ms| ms < 5), "{offsets:?}");
    for pair in offsets[2..].windows(2) {
        let gap = pair[1] - pair[0];
        assert!((99..=101).contains(&gap), "gap {gap} in {offsets:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn pool_rate_applies_across_handlers() {
    let pool = Pool::builder().rate(Rate::per_second(20)).build().unwrap();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let make = |name: &str| {
        let s = starts.clone();
        Handler::io(name, move |_: u32, _ctx| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(Instant::now());
                Ok::<_, TaskError>(())
            }
        })
    };
    let (a, b) = (make("a"), make("b"));
    let t0 = Instant::now();
    let job = pool.job().start().unwrap();
    for i in 0..10 {
        job.submit(&a, i).await.unwrap();
        job.submit(&b, i).await.unwrap();
    }
    job.await;
    let last = *starts.lock().unwrap().iter().max().unwrap();
    // 20 starts at 20/s with burst 1: the last at 0.95 s.
    assert_eq!((last - t0).as_millis(), 950);
}

#[tokio::test(start_paused = true)]
async fn delayed_tasks_wait_and_hold_no_worker() {
    let pool = Pool::builder().workers(1).build().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    let h = Handler::io("d", move |n: u32, _ctx| {
        let o = o.clone();
        async move {
            o.lock().unwrap().push((n, Instant::now()));
            Ok::<_, TaskError>(())
        }
    });
    let t0 = Instant::now();
    let job = pool.job().start().unwrap();
    job.submit_with(&h, 1, TaskOptions::new().delay(Duration::from_secs(2)))
        .await
        .unwrap();
    job.submit(&h, 2).await.unwrap();
    job.await;
    let order = order.lock().unwrap();
    assert_eq!(
        order[0].0, 2,
        "the undelayed task is not stuck behind the delayed one"
    );
    assert_eq!(order[1].0, 1);
    assert_eq!((order[1].1 - t0).as_secs(), 2);
}

#[tokio::test]
async fn an_invalid_handler_rate_is_rejected_at_submit() {
    let pool = Pool::new().unwrap();
    let h = Handler::io("bad", |_: u32, _ctx| async move { Ok::<_, TaskError>(()) })
        .rate(Rate::per_second(0));
    let job = pool.job().start().unwrap();
    let rejected = job.submit(&h, 1).await.unwrap_err();
    assert!(matches!(rejected.reason, conveyor::Error::InvalidConfig(_)));
    assert_eq!(rejected.params, 1);
    assert_eq!(job.await.total(), 0);
}
