//! Follow-up tasks from a handler (`TaskContext::follow_up`): enqueued with
//! the success of the attempt that asked for them, in the same atomic step,
//! and never by an attempt that failed; refused where no durable source can
//! enqueue them.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::Mutex;

use conveyor::durable::{Backend, NewTask};
use conveyor::{
    EnqueueOptions, Error, Handler, MemoryBackend, Outcome, Pool, RetryPolicy, TaskError,
    TaskState, TaskType, Worker,
};
use conveyor_testkit::count_in;

const COUNTDOWN: TaskType<u32, u32> = TaskType::new("countdown");
const AFTER: TaskType<u32, ()> = TaskType::new("after");

/// Waits until `n` tasks of the store are completed (or fails after 20 s).
async fn until_completed(b: &Arc<dyn Backend>, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let done = count_in(b.as_ref(), TaskState::Completed).await;
        if done >= n {
            assert_eq!(done, n, "no more than the expected tasks ran");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{done} of {n} tasks completed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A workflow whose every step enqueues the next: each step runs once, in
/// order, and the chain ends where the handler stops asking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_runs_step_by_step() {
    let b: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let ran = Arc::new(Mutex::new(Vec::new()));
    let r = ran.clone();
    let countdown = Handler::io(COUNTDOWN.name(), move |n: u32, ctx| {
        let r = r.clone();
        async move {
            r.lock().push(n);
            if n > 0 {
                let next = COUNTDOWN
                    .task(&(n - 1), &EnqueueOptions::new())
                    .map_err(|e| TaskError::permanent(e.to_string()))?;
                ctx.follow_up(next)
                    .map_err(|e| TaskError::permanent(e.to_string()))?;
            }
            Ok::<_, TaskError>(n)
        }
    });
    let worker = Worker::builder(b.clone())
        .handler(countdown)
        .poll_interval(Duration::from_millis(10))
        .build()
        .unwrap();
    let stopper = worker.stopper();
    let run = tokio::spawn(worker.run_until(std::future::pending()));
    conveyor::Client::new(b.clone())
        .enqueue(&COUNTDOWN, &5)
        .await
        .unwrap();
    until_completed(&b, 6).await;
    stopper.stop();
    let report = run.await.unwrap().unwrap();
    assert_eq!(*ran.lock(), vec![5, 4, 3, 2, 1, 0]);
    assert_eq!(report.stats.completed, 6);
}

/// What a failed attempt asked for is dropped with it: the retry that
/// succeeds enqueues its own follow-up, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_enqueues_nothing() {
    let b: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let afters = Arc::new(Mutex::new(Vec::new()));
    let step = Handler::io("step", move |_: u32, ctx| async move {
        // Every attempt asks for a follow-up numbered by its attempt.
        let next = AFTER
            .task(&ctx.attempt(), &EnqueueOptions::new())
            .map_err(|e| TaskError::permanent(e.to_string()))?;
        ctx.follow_up(next)
            .map_err(|e| TaskError::permanent(e.to_string()))?;
        if ctx.attempt() < 3 {
            return Err(TaskError::new("not yet"));
        }
        Ok::<_, TaskError>(())
    })
    .retry(RetryPolicy::attempts(3).backoff(Duration::from_millis(1), Duration::from_millis(2)));
    let a = afters.clone();
    let after = Handler::io(AFTER.name(), move |n: u32, _ctx| {
        let a = a.clone();
        async move {
            a.lock().push(n);
            Ok::<_, TaskError>(())
        }
    });
    let worker = Worker::builder(b.clone())
        .handler(step)
        .handler(after)
        .poll_interval(Duration::from_millis(10))
        .build()
        .unwrap();
    let stopper = worker.stopper();
    let run = tokio::spawn(worker.run_until(std::future::pending()));
    let ty: TaskType<u32, ()> = TaskType::new("step");
    b.enqueue(ty.task(&0, &EnqueueOptions::new()).unwrap())
        .await
        .unwrap();
    until_completed(&b, 2).await;
    stopper.stop();
    run.await.unwrap().unwrap();
    assert_eq!(
        *afters.lock(),
        vec![3],
        "only the successful attempt's follow-up"
    );
}

/// An in-process job has no queue to enqueue into: `follow_up` says so at
/// once, and an invalid task is refused before anything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ups_need_a_durable_source() {
    let pool = Pool::builder().workers(2).build().unwrap();
    let probe = Handler::io("probe", |bad: bool, ctx| async move {
        let task = if bad {
            NewTask::new("", Vec::new())
        } else {
            NewTask::new("next", b"1".to_vec())
        };
        Ok::<_, TaskError>(match ctx.follow_up(task) {
            Err(Error::Unsupported(_)) => "unsupported",
            Err(Error::InvalidConfig(_)) => "invalid",
            Err(_) => "other error",
            Ok(()) => "accepted",
        })
    });
    let answers: Vec<&str> = pool
        .map(&probe, vec![false, true], 2)
        .map(|o| match o {
            Outcome::Succeeded(answer) => answer,
            other => panic!("the probe did not run: {other:?}"),
        })
        .collect()
        .await;
    assert_eq!(answers, vec!["unsupported", "invalid"]);
}
