//! The producer–consumer job: backpressure, callbacks, completion, summaries.

#![allow(clippy::unwrap_used)] // tests unwrap freely: a panic is a failure report

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor::{Error, Handler, Pool, TaskError, TaskOptions};
use tokio::sync::Semaphore;

fn noop() -> Handler<u64, u64> {
    Handler::io("noop", |n: u64, _ctx| async move { Ok::<_, TaskError>(n) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_reaches_on_task_complete_once_and_the_job_completes_once() {
    let pool = Pool::new().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let job_done = Arc::new(AtomicUsize::new(0));
    let (s, d) = (seen.clone(), job_done.clone());
    let job = pool
        .job()
        .on_task_complete(move |r| s.lock().unwrap().push(*r.output::<u64>().unwrap()))
        .on_job_complete(move |summary| {
            assert_eq!(summary.succeeded, 3000);
            d.fetch_add(1, Ordering::SeqCst);
        })
        .start()
        .unwrap();
    let h = noop();
    let mut producers = Vec::new();
    for p in 0..3u64 {
        let producer = job.producer().unwrap();
        let h = h.clone();
        producers.push(tokio::spawn(async move {
            for i in 0..1000u64 {
                producer.submit(&h, p * 1000 + i).await.unwrap();
            }
        }));
    }
    for p in producers {
        p.await.unwrap();
    }
    let summary = job.await;
    assert_eq!(summary.succeeded, 3000);
    assert_eq!(summary.total(), 3000);
    assert_eq!(job_done.load(Ordering::SeqCst), 1);
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(seen, (0..3000).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn os_thread_producers_use_blocking_submit() {
    let pool = Pool::new().unwrap();
    let job = pool.job().queue_capacity(8).start().unwrap();
    let h = noop();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let producer = job.producer().unwrap();
            let h = h.clone();
            std::thread::spawn(move || {
                for i in 0..500 {
                    producer.blocking_submit(&h, i, TaskOptions::new()).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(job.await.succeeded, 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_waits_for_every_producer_clone() {
    let pool = Pool::new().unwrap();
    let job = pool.job().start().unwrap();
    let late = job.producer().unwrap();
    let h = noop();
    let summary = tokio::spawn(job.wait());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!summary.is_finished(), "a producer is still alive");
    late.submit(&h, 7).await.unwrap();
    drop(late);
    assert_eq!(summary.await.unwrap().succeeded, 1);
}

/// Workers hand settled tasks' envelopes back to the job's producers to free,
/// and each one held there holds the job open: once the last producer is
/// gone the job completes all the same, with envelopes still held when it went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_completes_once_its_producers_are_gone_with_envelopes_handed_back() {
    let pool = Pool::builder().workers(4).build().unwrap();
    let job = pool.job().start().unwrap();
    let producer = job.producer().unwrap();
    let h = noop();
    for i in 0..5_000u64 {
        producer.submit(&h, i).await.unwrap();
    }
    // Every task settles and its envelope goes back, with no submit to free it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let summary = tokio::spawn(job.wait());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!summary.is_finished(), "a producer is still alive");
    drop(producer);
    let summary = tokio::time::timeout(Duration::from_secs(20), summary)
        .await
        .expect("the job completes once its producers are gone")
        .unwrap();
    assert_eq!(summary.succeeded, 5_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_makes_submit_wait_and_try_submit_refuse() {
    let pool = Pool::builder().workers(1).build().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let blocked = Handler::io("blocked", move |_: u32, _ctx| {
        let g = g.clone();
        async move {
            let _permit = g
                .acquire()
                .await
                .map_err(|e| TaskError::new(e.to_string()))?;
            Ok::<_, TaskError>(())
        }
    });
    let job = pool.job().queue_capacity(2).start().unwrap();
    let producer = job.producer().unwrap();
    // One runs (holding the only worker), two wait in the queue.
    for i in 0..3 {
        producer.submit(&blocked, i).await.unwrap();
    }
    // Wait until the first has started, so exactly two are queued.
    while pool.metrics().in_flight() < 1 {
        tokio::task::yield_now().await;
    }
    let rejected = producer
        .try_submit(&blocked, 99, TaskOptions::new())
        .unwrap_err();
    assert!(matches!(rejected.reason, Error::QueueFull));
    assert_eq!(rejected.params, 99, "the params come back");
    let p2 = producer.clone();
    let b2 = blocked.clone();
    let waiting = tokio::spawn(async move { p2.submit(&b2, 4).await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiting.is_finished(),
        "submit waits while the queue is full"
    );
    gate.add_permits(1);
    waiting.await.unwrap().unwrap();
    gate.add_permits(100);
    drop(producer);
    assert_eq!(job.await.succeeded, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_million_tasks_through_a_small_queue_stay_bounded() {
    let pool = Pool::new().unwrap();
    let job = pool.job().queue_capacity(1000).start().unwrap();
    let h = noop();
    let max_queued = Arc::new(AtomicU64::new(0));
    let m = max_queued.clone();
    let sampler_pool = pool.clone();
    let sampler = tokio::spawn(async move {
        loop {
            let q = sampler_pool.metrics().queued;
            m.fetch_max(q, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    });
    for i in 0..1_000_000u64 {
        job.submit(&h, i).await.unwrap();
    }
    let summary = job.await;
    sampler.abort();
    assert_eq!(summary.succeeded, 1_000_000);
    assert!(
        max_queued.load(Ordering::Relaxed) <= 1000,
        "queued {} > capacity",
        max_queued.load(Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_callback_does_not_hold_workers_until_the_result_queue_is_full() {
    let pool = Pool::new().unwrap();
    let release = Arc::new(std::sync::Barrier::new(2));
    let r = release.clone();
    let first = Arc::new(AtomicUsize::new(0));
    let f = first.clone();
    let job = pool
        .job()
        .result_capacity(100)
        .queue_capacity(1000)
        .on_task_complete(move |_| {
            // The first callback blocks its thread until the test says so.
            if f.fetch_add(1, Ordering::SeqCst) == 0 {
                r.wait();
            }
        })
        .start()
        .unwrap();
    let h = noop();
    for i in 0..300 {
        job.submit(&h, i).await.unwrap();
    }
    // While the callback is stuck, workers finish tasks until the result queue
    // (100) is full: far more than zero, and they never need the callback.
    let mut done = 0;
    for _ in 0..400 {
        done = pool.metrics().completed;
        if done >= 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        done >= 100,
        "workers finished only {done} while the callback blocked"
    );
    assert!(done < 300, "the result queue is bounded: {done}");
    release.wait();
    assert_eq!(job.await.succeeded, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_counts_every_outcome_kind() {
    let pool = Pool::new().unwrap();
    let mixed = Handler::io("mixed", |n: u32, _ctx| async move {
        match n % 4 {
            0 => Ok(n),
            1 => Err(TaskError::permanent("bad")),
            2 => panic!("boom {n}"),
            _ => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(n)
            }
        }
    })
    .timeout(Duration::from_millis(20));
    let job = pool.job().start().unwrap();
    for n in 0..40 {
        job.submit(&mixed, n).await.unwrap();
    }
    let s = job.await;
    assert_eq!(
        (s.succeeded, s.failed, s.panicked, s.timed_out),
        (10, 10, 10, 10)
    );
    assert_eq!(s.latency.count, 40);
    assert!(s.latency.p99 >= s.latency.p50);
    assert!(s.wall > Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_job_refuses_submissions_and_gives_params_back() {
    let pool = Pool::new().unwrap();
    let mut job = pool.job().start().unwrap();
    job.close();
    let rejected = job.submit(&noop(), 5).await.unwrap_err();
    assert!(matches!(rejected.reason, Error::Closed));
    assert_eq!(rejected.params, 5);
    assert_eq!(job.await.total(), 0);
}

/// A worker that reports a task which must not start (its job cancelled)
/// may wait for room in that job's result queue; it keeps no other job open
/// meanwhile. Here a callback of the cancelled job waits for another job to
/// complete, and that job's last task ran on the same worker just before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_waiting_to_report_a_skipped_task_keeps_no_other_job_open() {
    let pool = Pool::builder().workers(1).build().unwrap();
    let go = Arc::new(tokio::sync::Notify::new());
    let g = go.clone();
    let gate = Handler::io("gate", move |n: u64, _ctx| {
        let g = g.clone();
        async move {
            g.notified().await;
            Ok::<_, TaskError>(n)
        }
    });
    // Job C: one task, which the only worker runs first and holds until `go`.
    let (c_done, c_seen) = std::sync::mpsc::channel();
    let mut c = pool
        .job()
        .on_job_complete(move |_| {
            let _ = c_done.send(());
        })
        .start()
        .unwrap();
    c.submit(&gate, 0).await.unwrap();
    c.close();
    // Job D: room for one result, and a callback that waits for C.
    let waited = Arc::new(Mutex::new(Vec::new()));
    let w = waited.clone();
    let mut c_complete = false;
    let mut d = pool
        .job()
        .result_capacity(1)
        .on_task_complete(move |_| {
            if !c_complete {
                c_complete = c_seen.recv_timeout(Duration::from_secs(20)).is_ok();
            }
            w.lock().unwrap().push(c_complete);
        })
        .start()
        .unwrap();
    for i in 0..4 {
        d.submit(&noop(), i).await.unwrap();
    }
    // D's tasks wait behind C's: cancelled, each is reported unstarted.
    d.cancel();
    d.close();
    go.notify_one();
    let summary = tokio::time::timeout(Duration::from_secs(60), d.wait())
        .await
        .expect("job D completes");
    assert_eq!(summary.cancelled, 4);
    assert_eq!(
        *waited.lock().unwrap(),
        vec![true; 4],
        "C completed while D's callback waited for it"
    );
}
