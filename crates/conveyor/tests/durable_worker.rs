//! Durable worker and client against the memory backend: results, failures,
//! retries through the backend, leases, backpressure and graceful stop.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor::durable::{Backend, NewTask};
use conveyor::durable::{WorkerBuilder, WorkerReport, WorkerStopper};
use conveyor::{
    Client, EnqueueOptions, Error, Handler, MemoryBackend, NextStep, RetryPolicy, TaskError,
    TaskState, TaskType, Worker,
};
use tokio::sync::Barrier;

const ADD: TaskType<(i64, i64), i64> = TaskType::new("add");

fn add_handler() -> Handler<(i64, i64), i64> {
    Handler::io("add", |(a, b): (i64, i64), _ctx| async move {
        Ok::<_, TaskError>(a + b)
    })
}

fn backend() -> Arc<dyn Backend> {
    Arc::new(MemoryBackend::new())
}

/// A worker running in the background until [`Running::stop`].
struct Running {
    stopper: WorkerStopper,
    run: tokio::task::JoinHandle<Result<WorkerReport, Error>>,
}

impl Running {
    /// Stops the worker gracefully and returns its report.
    async fn stop(self) -> WorkerReport {
        self.stopper.stop();
        self.run
            .await
            .expect("the worker task")
            .expect("the worker's run")
    }
}

/// Starts a worker that polls and recovers leases quickly.
fn start(w: WorkerBuilder) -> Running {
    let worker = w
        .poll_interval(Duration::from_millis(20))
        .maintenance(Duration::from_millis(50), Duration::from_secs(60))
        .build()
        .expect("a valid worker");
    Running {
        stopper: worker.stopper(),
        run: tokio::spawn(worker.run_until(std::future::pending())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_and_wait_for_a_typed_result() {
    let b = backend();
    let worker = start(Worker::builder(b.clone()).handler(add_handler()));
    let client = Client::new(b.clone());
    let h = client.enqueue(&ADD, &(2, 40)).await.unwrap();
    assert_eq!(h.wait_timeout(Duration::from_secs(10)).await.unwrap(), 42);
    let many = client
        .enqueue_many(&ADD, &[(1, 1), (2, 2), (3, 3)], &EnqueueOptions::new())
        .await
        .unwrap();
    let mut sums = Vec::new();
    for h in &many {
        sums.push(h.wait().await.unwrap());
    }
    assert_eq!(sums, vec![2, 4, 6]);
    let rec = client.status(h.id()).await.unwrap().unwrap();
    assert_eq!(rec.state, TaskState::Completed);
    assert_eq!(rec.result.as_deref(), Some(&b"42"[..]));
    let report = worker.stop().await;
    assert!(report.drained);
    assert_eq!(report.stats.completed, 4);
    assert_eq!(report.stats.in_flight, 0);
}

/// Three tasks that can only finish together (a barrier of three) finish: the
/// worker runs them at once with three slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_run_tasks_at_the_same_time() {
    let b = backend();
    let barrier = Arc::new(Barrier::new(3));
    let slow_add = Handler::io("add", move |(a, b): (i64, i64), _ctx| {
        let barrier = barrier.clone();
        async move {
            barrier.wait().await;
            Ok::<_, TaskError>(a + b)
        }
    });
    let worker = start(Worker::builder(b.clone()).handler(slow_add).slots(3));
    let client = Client::new(b.clone());
    let hs = client
        .enqueue_many(&ADD, &[(1, 2), (3, 4), (5, 6)], &EnqueueOptions::new())
        .await
        .unwrap();
    for (h, want) in hs.iter().zip([3, 7, 11]) {
        assert_eq!(h.wait_timeout(Duration::from_secs(10)).await.unwrap(), want);
    }
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_handlers_wait_bad_payloads_are_dead_lettered_and_the_worker_goes_on() {
    let b = backend();
    let worker = start(Worker::builder(b.clone()).handler(add_handler()));
    let client = Client::new(b.clone());
    let unknown: TaskType<u32, u32> = TaskType::new("nobody");
    let h1 = client.enqueue(&unknown, &1).await.unwrap();
    let bad = b
        .enqueue(NewTask::new("add", b"{not json".to_vec()))
        .await
        .unwrap();
    let wrong_shape = b
        .enqueue(NewTask::new("add", b"\"text\"".to_vec()))
        .await
        .unwrap();
    let good = client.enqueue(&ADD, &(1, 2)).await.unwrap();
    // A task whose handler the worker lacks waits for a worker that has it:
    // not failed, not dead-lettered, no attempt spent.
    match h1.wait_timeout(Duration::from_millis(500)).await {
        Err(Error::WaitTimeout(_)) => {}
        other => panic!("expected the task to wait, got {other:?}"),
    }
    let rec = b.get(h1.id()).await.unwrap().expect("the task");
    assert_eq!(rec.state, TaskState::Available);
    assert_eq!(rec.attempts, 0, "handed back without spending an attempt");
    for id in [bad.id, wrong_shape.id] {
        let h = client.handle(&ADD, id);
        match h.wait_timeout(Duration::from_secs(10)).await {
            Err(Error::TaskFailed { error, .. }) => {
                assert!(error.contains("cannot decode"), "{error}")
            }
            other => panic!("expected a dead task, got {other:?}"),
        }
    }
    assert_eq!(good.wait().await.unwrap(), 3);
    let report = worker.stop().await;
    assert_eq!(report.stats.dead, 2, "the two bad payloads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_retry_through_the_backend_with_the_handlers_backoff() {
    let b = backend();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let flaky = Handler::io("flaky", move |n: u32, _ctx| {
        let c = c.clone();
        async move {
            if c.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(TaskError::new("not yet"))
            } else {
                Ok(n * 10)
            }
        }
    })
    .retry(RetryPolicy::attempts(5).backoff(Duration::from_millis(5), Duration::from_millis(20)));
    let permanent = Handler::io("permanent", |_: u32, _ctx| async move {
        Err::<u32, _>(TaskError::permanent("never"))
    });
    let once = Handler::io("once", |_: u32, _ctx| async move {
        Err::<u32, _>(TaskError::new("no retry wanted"))
    })
    .retry(RetryPolicy::attempts(1));
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let s = seen.clone();
    let worker = start(
        Worker::builder(b.clone())
            .handler(flaky)
            .handler(permanent)
            .handler(once)
            .on_task_complete(move |r| s.lock().push((r.id, r.attempt, r.step))),
    );
    let client = Client::new(b.clone());
    let flaky_t: TaskType<u32, u32> = TaskType::new("flaky");
    let perm_t: TaskType<u32, u32> = TaskType::new("permanent");
    let once_t: TaskType<u32, u32> = TaskType::new("once");
    let h = client
        .enqueue_with(&flaky_t, &4, &EnqueueOptions::new().max_attempts(3))
        .await
        .unwrap();
    assert_eq!(h.wait_timeout(Duration::from_secs(10)).await.unwrap(), 40);
    let rec = client.status(h.id()).await.unwrap().unwrap();
    assert_eq!(rec.attempts, 3);
    let p = client.enqueue(&perm_t, &1).await.unwrap();
    assert!(matches!(
        p.wait_timeout(Duration::from_secs(10)).await,
        Err(Error::TaskFailed {
            state: TaskState::Dead,
            ..
        })
    ));
    assert_eq!(client.status(p.id()).await.unwrap().unwrap().attempts, 1);
    // A handler that chose one attempt (no retry) caps a task enqueued with
    // three: one equal to the default policy is still a choice.
    let once = client.enqueue(&once_t, &1).await.unwrap();
    assert!(once.wait_timeout(Duration::from_secs(10)).await.is_err());
    assert_eq!(client.status(once.id()).await.unwrap().unwrap().attempts, 1);
    worker.stop().await;
    let seen = seen.lock().clone();
    let flaky_reports: Vec<_> = seen.iter().filter(|r| r.0 == h.id()).collect();
    assert_eq!(
        flaky_reports
            .iter()
            .map(|r| (
                r.1,
                matches!(r.2, NextStep::Retry { .. }),
                r.2 == NextStep::Done
            ))
            .collect::<Vec<_>>(),
        vec![(1, true, false), (2, true, false), (3, false, true)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_that_time_out_end_dead_after_max_attempts() {
    let b = backend();
    let hang = Handler::io("hang", |_: u32, ctx: conveyor::TaskContext| async move {
        ctx.cancelled().await;
        Ok::<u32, TaskError>(0)
    })
    .retry(RetryPolicy::attempts(9).backoff(Duration::from_millis(1), Duration::from_millis(2)));
    let worker = start(Worker::builder(b.clone()).handler(hang));
    let client = Client::new(b.clone());
    let t: TaskType<u32, u32> = TaskType::new("hang");
    let h = client
        .enqueue_with(
            &t,
            &1,
            &EnqueueOptions::new()
                .timeout(Duration::from_millis(30))
                .max_attempts(2),
        )
        .await
        .unwrap();
    match h.wait_timeout(Duration::from_secs(10)).await {
        Err(Error::TaskFailed { state, error, .. }) => {
            assert_eq!(state, TaskState::Dead);
            assert!(error.contains("timed out"), "{error}");
        }
        other => panic!("expected dead, got {other:?}"),
    }
    assert_eq!(client.status(h.id()).await.unwrap().unwrap().attempts, 2);
    worker.stop().await;
}

/// The worker reserves only what its slots can run: with 2 slots and 10 blocked
/// tasks, 2 are running and 8 wait in the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_reaches_the_backend() {
    let b = backend();
    let running = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Notify::new());
    let (r, g) = (running.clone(), gate.clone());
    let blocked = Handler::io("blocked", move |_: u32, _ctx| {
        let (r, g) = (r.clone(), g.clone());
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            g.notified().await;
            Ok::<u32, TaskError>(0)
        }
    });
    let worker = start(Worker::builder(b.clone()).handler(blocked).slots(2));
    let client = Client::new(b.clone());
    let t: TaskType<u32, u32> = TaskType::new("blocked");
    let hs = client
        .enqueue_many(&t, &(0..10).collect::<Vec<u32>>(), &EnqueueOptions::new())
        .await
        .unwrap();
    while running.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Several poll intervals later the worker still holds only two.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let stats = b.stats().await.unwrap();
    assert_eq!(stats[0].count(TaskState::Running), 2);
    assert_eq!(stats[0].count(TaskState::Available), 8);
    assert_eq!(running.load(Ordering::SeqCst), 2);
    let done = tokio::spawn(async move {
        loop {
            gate.notify_waiters();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    for h in &hs {
        h.wait_timeout(Duration::from_secs(10)).await.unwrap();
    }
    done.abort();
    worker.stop().await;
}

/// A task that runs longer than its lease keeps it through renewals and is not
/// redelivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_keep_long_tasks_leased() {
    let b = backend();
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let long = Handler::io("long", move |_: u32, _ctx| {
        let r = r.clone();
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(800)).await;
            Ok::<u32, TaskError>(7)
        }
    });
    let worker = start(
        Worker::builder(b.clone())
            .handler(long)
            .lease(Duration::from_millis(200)),
    );
    let client = Client::new(b.clone());
    let t: TaskType<u32, u32> = TaskType::new("long");
    let h = client.enqueue(&t, &0).await.unwrap();
    assert_eq!(h.wait_timeout(Duration::from_secs(10)).await.unwrap(), 7);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "never redelivered");
    assert_eq!(client.status(h.id()).await.unwrap().unwrap().attempts, 1);
    let report = worker.stop().await;
    assert_eq!(report.stats.lost_leases, 0);
    assert_eq!(report.stats.stale, 0);
}

/// Past the grace period a stopping worker cancels what runs (the attempt is
/// counted and retried at once) and hands back what never started (not counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_retries_started_and_releases_unstarted_tasks() {
    let b = backend();
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let stuck = Handler::io("stuck", move |_: u32, ctx: conveyor::TaskContext| {
        let s = s.clone();
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            ctx.cancelled().await;
            Ok::<u32, TaskError>(0)
        }
    })
    .concurrency(1);
    let worker = start(
        Worker::builder(b.clone())
            .handler(stuck)
            .slots(2)
            .grace(Duration::from_millis(100)),
    );
    let client = Client::new(b.clone());
    let t: TaskType<u32, u32> = TaskType::new("stuck");
    let hs = client
        .enqueue_many(&t, &[1, 2], &EnqueueOptions::new())
        .await
        .unwrap();
    while started.load(Ordering::SeqCst) < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    while b.stats().await.unwrap()[0].count(TaskState::Running) < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let report = worker.stop().await;
    assert!(!report.drained);
    assert_eq!(report.stats.in_flight, 0);
    let mut attempts = Vec::new();
    for h in &hs {
        let rec = client.status(h.id()).await.unwrap().unwrap();
        assert!(
            matches!(rec.state, TaskState::Available | TaskState::Retrying),
            "{:?}",
            rec.state
        );
        attempts.push(rec.attempts);
    }
    attempts.sort();
    assert_eq!(attempts, vec![0, 1], "unstarted released, started counted");
    assert_eq!(report.stats.released, 1);
    assert_eq!(report.stats.retried, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_needs_handlers_and_sane_settings() {
    let b = backend();
    assert!(matches!(
        Worker::builder(b.clone()).build(),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        Worker::builder(b.clone())
            .handler(add_handler())
            .slots(0)
            .build(),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        Worker::builder(b)
            .handler(add_handler())
            .queues(Vec::<String>::new())
            .build(),
        Err(Error::InvalidConfig(_))
    ));
}

/// `on_task_complete` is off the acknowledgement path: with the callback
/// blocked for ever on its first call, 1,000 tasks still complete in the
/// store, and the worker still stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_callback_holds_up_no_task() {
    let b = backend();
    let (release, blocked) = std::sync::mpsc::channel::<()>();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let worker = start(
        Worker::builder(b.clone())
            .handler(add_handler())
            .slots(8)
            .callback_capacity(100)
            .grace(Duration::from_millis(200))
            .on_task_complete(move |_| {
                c.fetch_add(1, Ordering::SeqCst);
                // Blocks until the test ends (the sender is dropped then).
                let _ = blocked.recv();
            }),
    );
    let client = Client::new(b.clone());
    let params: Vec<(i64, i64)> = (0..1_000).map(|i| (i, 1)).collect();
    let handles = client
        .enqueue_many(&ADD, &params, &EnqueueOptions::new())
        .await
        .unwrap();
    for (h, (a, _)) in handles.iter().zip(&params) {
        assert_eq!(
            h.wait_timeout(Duration::from_secs(30)).await.unwrap(),
            a + 1
        );
    }
    let stats = b.stats().await.unwrap();
    assert_eq!(stats[0].count(TaskState::Completed), 1_000);
    let report = worker.stop().await;
    assert_eq!(report.stats.completed, 1_000);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the callback is still in its first call"
    );
    // 1 taken by the blocked call, 100 waiting for it, the rest skipped it.
    assert_eq!(report.stats.callbacks_dropped, 1_000 - 1 - 100);
    drop(release);
}

/// The event stream tells each task's life and the worker's: every task
/// starts and ends once per attempt, retries and dead letters as the store
/// records them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tell_every_attempt_and_the_workers_life() {
    use conveyor::events::{Event, TaskEventKind, WorkerEvent};
    let b = backend();
    let fails = Handler::io("fails", |_: u32, _ctx| async move {
        Err::<u32, _>(TaskError::new("always"))
    })
    .retry(RetryPolicy::attempts(2).backoff(Duration::from_millis(1), Duration::from_millis(2)));
    // One bus for the client and the worker: enqueued events too.
    let worker_bus = conveyor::events::EventBus::new();
    let worker = Worker::builder(b.clone())
        .handler(add_handler())
        .handler(fails)
        .poll_interval(Duration::from_millis(20))
        .events(worker_bus.clone())
        .build()
        .unwrap();
    let events = worker.events().subscribe(10_000);
    // An observer is called in place on every event, beside the subscriber.
    let observed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let o = observed.clone();
    let _observer = worker.events().observe(move |e| {
        if matches!(e, Event::Task(t) if t.kind == TaskEventKind::Started) {
            o.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let stopper = worker.stopper();
    let run = tokio::spawn(worker.run_until(std::future::pending()));
    let client = Client::new(b.clone()).with_events(worker_bus.clone());
    let params: Vec<(i64, i64)> = (0..20).map(|i| (i, i)).collect();
    let hs = client
        .enqueue_many(&ADD, &params, &EnqueueOptions::new())
        .await
        .unwrap();
    let bad: TaskType<u32, u32> = TaskType::new("fails");
    let dead = client.enqueue(&bad, &1).await.unwrap();
    for h in &hs {
        h.wait_timeout(Duration::from_secs(10)).await.unwrap();
    }
    assert!(dead.wait_timeout(Duration::from_secs(10)).await.is_err());
    stopper.stop();
    let report = run.await.unwrap().unwrap();
    let mut kinds = std::collections::HashMap::new();
    let mut worker_events = Vec::new();
    while let Some(e) = events.try_recv() {
        match e {
            Event::Task(t) => {
                let ends = !matches!(t.kind, TaskEventKind::Started | TaskEventKind::Enqueued);
                // A start says how long the task waited since it was ready.
                assert_eq!(t.since_ready.is_some(), t.kind == TaskEventKind::Started);
                if t.id == dead.id() && ends {
                    assert_eq!(t.error.as_deref(), Some("always"));
                    assert_eq!(&*t.handler, "fails");
                }
                *kinds.entry(t.kind).or_insert(0) += 1;
            }
            Event::Worker(w) => worker_events.push(w),
            _ => {}
        }
    }
    assert_eq!(events.lagged(), 0);
    assert_eq!(
        kinds.get(&TaskEventKind::Started),
        Some(&22),
        "20 + 2 attempts"
    );
    assert_eq!(observed.load(std::sync::atomic::Ordering::Relaxed), 22);
    assert_eq!(kinds.get(&TaskEventKind::Succeeded), Some(&20));
    assert_eq!(kinds.get(&TaskEventKind::Retried), Some(&1));
    assert_eq!(kinds.get(&TaskEventKind::DeadLettered), Some(&1));
    assert_eq!(report.stats.completed, 20);
    assert!(matches!(
        worker_events.first(),
        Some(WorkerEvent::Started { slots: 50, .. })
    ));
    assert!(worker_events
        .iter()
        .any(|w| matches!(w, WorkerEvent::Stopping { .. })));
    assert!(matches!(
        worker_events.last(),
        Some(WorkerEvent::Stopped { drained: true, .. })
    ));
}

/// A worker on a backend with only the core and a result store runs tasks:
/// no maintenance loop (nothing to maintain), no errors from parts it lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_only_backend_runs_without_upkeep_errors() {
    let b: Arc<dyn Backend> = Arc::new(conveyor_testkit::Scoped::core_only(MemoryBackend::new()));
    let worker = start(Worker::builder(b.clone()).handler(add_handler()));
    let client = Client::new(b.clone());
    let h = client.enqueue(&ADD, &(20, 22)).await.unwrap();
    assert_eq!(h.wait_timeout(Duration::from_secs(10)).await.unwrap(), 42);
    // Several maintenance periods (50 ms here) pass.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = worker.stop().await;
    assert_eq!(report.stats.completed, 1);
    assert_eq!(report.stats.backend_errors, 0);
    assert!(matches!(
        Worker::builder(b)
            .handler(add_handler())
            .global_limits(
                "add",
                conveyor::durable::HandlerLimits::none().concurrency(1)
            )
            .build(),
        Err(Error::Unsupported(_))
    ));
}

/// A task cancelled while it runs is stopped by the worker holding it soon
/// after, through the store's finish notifications: long before its lease's
/// first renewal (here 200 s away), which would find it too. Nothing it
/// returns afterwards is kept, and the worker goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_cancelled_while_it_runs_is_stopped_at_once() {
    let b = backend();
    let started = Arc::new(tokio::sync::Notify::new());
    let stopped = Arc::new(tokio::sync::Notify::new());
    let (s, e) = (started.clone(), stopped.clone());
    let long = Handler::io("long", move |_: u32, ctx: conveyor::TaskContext| {
        let (s, e) = (s.clone(), e.clone());
        async move {
            s.notify_one();
            // Dropped when the attempt is cancelled: says so.
            struct Said(Arc<tokio::sync::Notify>);
            impl Drop for Said {
                fn drop(&mut self) {
                    self.0.notify_one();
                }
            }
            let _said = Said(e);
            ctx.cancelled().await;
            Ok::<u32, TaskError>(7)
        }
    });
    let worker = start(
        Worker::builder(b.clone())
            .handler(long)
            .handler(add_handler())
            .lease(Duration::from_secs(600)),
    );
    let client = Client::new(b.clone());
    let t: TaskType<u32, u32> = TaskType::new("long");
    // Cancelled at once (found when it has run long enough to be watched),
    // and once watched (found by the store's finish notification).
    for watched_first in [false, true] {
        let h = client.enqueue(&t, &1).await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), started.notified())
            .await
            .expect("the task starts");
        if watched_first {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        assert_eq!(b.cancel(h.id()).await.unwrap(), TaskState::Cancelled);
        tokio::time::timeout(Duration::from_secs(60), stopped.notified())
            .await
            .expect("the worker stops the attempt before its lease's renewal");
        let rec = client.status(h.id()).await.unwrap().unwrap();
        assert_eq!(rec.state, TaskState::Cancelled);
        assert_eq!(rec.result, None);
    }
    let sum = client.enqueue(&ADD, &(2, 40)).await.unwrap();
    assert_eq!(sum.wait_timeout(Duration::from_secs(30)).await.unwrap(), 42);
    let report = worker.stop().await;
    assert_eq!(report.stats.lost_leases, 2, "{report:?}");
}
