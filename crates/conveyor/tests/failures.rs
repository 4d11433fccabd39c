//! Retries, backoff, timeouts, cancellation and panics, in every lane.

#![allow(clippy::unwrap_used)] // tests unwrap freely: a panic is a failure report

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor::{
    ErrorKind, Handler, Outcome, OutcomeKind, Pool, ProcessCommand, RetryPolicy, TaskError,
    TaskOptions, TaskResult,
};
use tokio::time::Instant;

/// Runs one task on a fresh job and returns its result.
async fn run_one<In: Clone + Send + 'static, Out: Send + 'static>(
    pool: &Pool,
    h: &Handler<In, Out>,
    params: In,
    opts: TaskOptions,
) -> TaskResult {
    let slot = Arc::new(Mutex::new(None));
    let s = slot.clone();
    let job = pool
        .job()
        .on_task_complete(move |r| *s.lock().unwrap() = Some(r))
        .start()
        .unwrap();
    job.submit_with(h, params, opts).await.unwrap();
    job.await;
    let r = slot.lock().unwrap().take();
    r.expect("a result")
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc_kill(pid as i32, 0) == 0 }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

async fn wait_gone(pid: u32) {
    for _ in 0..500 {
        if !pid_alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("process {pid} is still alive");
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_exponentially_within_jitter_bounds() {
    let pool = Pool::new().unwrap();
    let times = Arc::new(Mutex::new(Vec::new()));
    let t = times.clone();
    let h = Handler::io("flaky", move |_: (), _ctx| {
        let t = t.clone();
        async move {
            t.lock().unwrap().push(Instant::now());
            Err::<(), _>(TaskError::new("try again"))
        }
    })
    .retry(
        RetryPolicy::attempts(5).backoff(Duration::from_millis(100), Duration::from_millis(500)),
    );
    let r = run_one(&pool, &h, (), TaskOptions::new()).await;
    assert_eq!(r.attempts, 5);
    assert_eq!(r.outcome.kind(), OutcomeKind::Failed);
    assert_eq!(r.outcome.error().unwrap().message(), "try again");
    let times = times.lock().unwrap();
    let steps = [100u128, 200, 400, 500];
    for (i, pair) in times.windows(2).enumerate() {
        let gap = (pair[1] - pair[0]).as_millis();
        let step = steps[i];
        assert!(
            gap >= step / 2 && gap <= step,
            "gap {gap} outside [{}, {step}]",
            step / 2
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_task_that_recovers_succeeds_with_its_attempt_count() {
    let pool = Pool::new().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let h = Handler::io("recovers", move |_: (), ctx| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            if ctx.attempt() < 3 {
                Err(TaskError::new("not yet"))
            } else {
                Ok(ctx.attempt())
            }
        }
    })
    .retry(RetryPolicy::attempts(10));
    let r = run_one(&pool, &h, (), TaskOptions::new()).await;
    assert_eq!(r.attempts, 3);
    assert_eq!(r.output::<u32>(), Some(&3));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn permanent_and_discard_errors_skip_retries() {
    let pool = Pool::new().unwrap();
    let h = Handler::io("perm", |kind: u8, _ctx| async move {
        Err::<(), _>(if kind == 0 {
            TaskError::permanent("never")
        } else {
            TaskError::discard("drop it")
        })
    })
    .retry(RetryPolicy::attempts(5));
    let r = run_one(&pool, &h, 0, TaskOptions::new()).await;
    assert_eq!(r.attempts, 1);
    assert_eq!(r.outcome.error().unwrap().kind(), ErrorKind::Permanent);
    let r = run_one(&pool, &h, 1, TaskOptions::new()).await;
    assert_eq!(r.attempts, 1);
    assert_eq!(r.outcome.error().unwrap().kind(), ErrorKind::Discard);
}

#[tokio::test(start_paused = true)]
async fn retry_after_overrides_the_backoff_and_task_options_override_attempts() {
    let pool = Pool::new().unwrap();
    let times = Arc::new(Mutex::new(Vec::new()));
    let t = times.clone();
    let h = Handler::io("later", move |_: (), _ctx| {
        let t = t.clone();
        async move {
            t.lock().unwrap().push(Instant::now());
            Err::<(), _>(TaskError::retry_after(Duration::from_secs(7), "busy"))
        }
    });
    let r = run_one(&pool, &h, (), TaskOptions::new().max_attempts(2)).await;
    assert_eq!(r.attempts, 2);
    let times = times.lock().unwrap();
    assert_eq!((times[1] - times[0]).as_secs(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_become_outcomes_and_the_worker_goes_on() {
    let pool = Pool::builder().workers(1).cpu_threads(1).build().unwrap();
    let io = Handler::io("io-panic", |n: u32, _ctx| async move {
        if n == 0 {
            panic!("io exploded");
        }
        Ok::<_, TaskError>(n)
    });
    let cpu = Handler::cpu("cpu-panic", |n: u32, _ctx| {
        if n == 0 {
            panic!("cpu exploded {n}");
        }
        Ok::<_, TaskError>(n)
    });
    let r = run_one(&pool, &io, 0, TaskOptions::new()).await;
    assert!(matches!(&r.outcome, Outcome::Panicked(m) if m == "io exploded"));
    let r = run_one(&pool, &cpu, 0, TaskOptions::new()).await;
    assert!(matches!(&r.outcome, Outcome::Panicked(m) if m == "cpu exploded 0"));
    // The single worker and the single cpu thread survived.
    assert_eq!(
        run_one(&pool, &io, 1, TaskOptions::new())
            .await
            .output::<u32>(),
        Some(&1)
    );
    assert_eq!(
        run_one(&pool, &cpu, 2, TaskOptions::new())
            .await
            .output::<u32>(),
        Some(&2)
    );
    assert_eq!(pool.cpu_threads_alive(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_in_the_io_lane_and_retries_of_timeouts() {
    let pool = Pool::new().unwrap();
    let h = Handler::io("slow", |_: (), _ctx| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<_, TaskError>(())
    })
    .timeout(Duration::from_millis(20))
    .retry(RetryPolicy::attempts(2).backoff(Duration::from_millis(1), Duration::from_millis(1)));
    let r = run_one(&pool, &h, (), TaskOptions::new()).await;
    assert_eq!(r.outcome.kind(), OutcomeKind::TimedOut);
    assert_eq!(r.attempts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_timeout_reports_at_once_and_frees_the_thread_when_it_returns() {
    let pool = Pool::builder().cpu_threads(1).build().unwrap();
    let h = Handler::cpu("spin", |_: (), ctx| {
        // Cooperative: stops once the deadline passes.
        while !ctx.is_cancelled() {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok::<_, TaskError>(())
    })
    .timeout(Duration::from_millis(30));
    let r = run_one(&pool, &h, (), TaskOptions::new()).await;
    assert_eq!(r.outcome.kind(), OutcomeKind::TimedOut);
    let quick = Handler::cpu("quick", |n: u32, _ctx| Ok::<_, TaskError>(n));
    assert_eq!(
        run_one(&pool, &quick, 5, TaskOptions::new())
            .await
            .output::<u32>(),
        Some(&5)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_timeout_kills_the_whole_process_group() {
    let pool = Pool::new().unwrap();
    let dir = std::env::temp_dir().join(format!("conveyor-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("grandchild.pid");
    let pf = pidfile.clone();
    // The shell starts a grandchild `sleep` and records both pids.
    let h = Handler::process("sleeper", move |_: ()| {
        Ok(ProcessCommand::shell(format!(
            "sleep 30 & echo $! > {}; echo $$ >> {}; wait",
            pf.display(),
            pf.display()
        )))
    })
    .timeout(Duration::from_millis(300));
    let r = run_one(&pool, &h, (), TaskOptions::new()).await;
    assert_eq!(r.outcome.kind(), OutcomeKind::TimedOut);
    let pids: Vec<u32> = std::fs::read_to_string(&pidfile)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    for pid in pids {
        wait_gone(pid).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_lane_captures_output_exit_codes_and_stdin() {
    let pool = Pool::new().unwrap();
    let h = Handler::process("sh", |script: String| {
        Ok(ProcessCommand::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .stdin("from stdin\n")
            .output_cap(8, 1024))
    });
    let ok = run_one(&pool, &h, "cat; echo done".into(), TaskOptions::new()).await;
    let out = ok.output::<conveyor::ProcessOutput>().unwrap();
    assert_eq!(out.stdout, b"from std");
    assert!(out.stdout_truncated);
    let bad = run_one(
        &pool,
        &h,
        "echo oops >&2; exit 3".into(),
        TaskOptions::new(),
    )
    .await;
    let err = bad.outcome.error().unwrap();
    assert_eq!(err.message(), "exit code 3: oops");
    assert_eq!(
        err.detail::<conveyor::ProcessOutput>().unwrap().code,
        Some(3)
    );
    let missing = Handler::process("missing", |_: ()| {
        Ok(ProcessCommand::new("/nonexistent/program"))
    });
    let r = run_one(&pool, &missing, (), TaskOptions::new()).await;
    assert!(r
        .outcome
        .error()
        .unwrap()
        .message()
        .contains("cannot start"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_reach_the_program_verbatim_without_a_shell() {
    let pool = Pool::new().unwrap();
    let h = Handler::process("printf", |arg: String| {
        Ok(ProcessCommand::new("printf").arg("%s").arg(arg))
    });
    let nasty = "a; rm -rf / $(echo hi) `id` * 'q\" \n end".to_string();
    let r = run_one(&pool, &h, nasty.clone(), TaskOptions::new()).await;
    let out = r.output::<conveyor::ProcessOutput>().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), nasty);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_waiting_or_running_task() {
    let pool = Pool::builder().workers(1).build().unwrap();
    let results = Arc::new(Mutex::new(Vec::new()));
    let r = results.clone();
    let h = Handler::io("long", |n: u32, _ctx| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<_, TaskError>(n)
    });
    let job = pool
        .job()
        .on_task_complete(move |res| {
            r.lock()
                .unwrap()
                .push((res.id, res.outcome.kind(), res.attempts))
        })
        .start()
        .unwrap();
    let running = job.submit(&h, 1).await.unwrap();
    let waiting = job.submit(&h, 2).await.unwrap();
    while pool.metrics().in_flight() < 1 {
        tokio::task::yield_now().await;
    }
    waiting.cancel();
    running.cancel();
    let s = tokio::time::timeout(Duration::from_secs(5), job.wait())
        .await
        .unwrap();
    assert_eq!(s.cancelled, 2);
    let results = results.lock().unwrap();
    let find = |id| results.iter().find(|r| r.0 == id).unwrap().2;
    assert_eq!(find(running.id()), 1, "the running one had started");
    assert_eq!(find(waiting.id()), 0, "the waiting one never started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_one_running_task_leaves_its_siblings_running() {
    let pool = Pool::builder().workers(3).build().unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    let h = Handler::io("gated", move |n: u32, ctx| {
        let gate = g.clone();
        async move {
            tokio::select! {
                permit = gate.acquire() => {
                    permit.unwrap().forget();
                    Ok::<_, TaskError>(n)
                }
                // The handler notices its own cancellation only.
                _ = ctx.cancelled() => Err(TaskError::new("cancelled")),
            }
        }
    });
    let results = Arc::new(Mutex::new(Vec::new()));
    let r = results.clone();
    let job = pool
        .job()
        .on_task_complete(move |res| r.lock().unwrap().push((res.id, res.outcome.kind())))
        .start()
        .unwrap();
    let handles = [
        job.submit(&h, 1).await.unwrap(),
        job.submit(&h, 2).await.unwrap(),
        job.submit(&h, 3).await.unwrap(),
    ];
    while pool.metrics().in_flight() < 3 {
        tokio::task::yield_now().await;
    }
    handles[1].cancel();
    assert!(handles[1].is_cancelled());
    assert!(!handles[0].is_cancelled() && !handles[2].is_cancelled());
    // Let the cancelled one's siblings see the wake-up first, then finish them.
    while results.lock().unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    gate.add_permits(2);
    let s = tokio::time::timeout(Duration::from_secs(5), job.wait())
        .await
        .unwrap();
    assert_eq!((s.succeeded, s.cancelled), (2, 1));
    let results = results.lock().unwrap();
    let kind = |id| results.iter().find(|r| r.0 == id).unwrap().1;
    assert_eq!(kind(handles[0].id()), OutcomeKind::Succeeded);
    assert_eq!(kind(handles[1].id()), OutcomeKind::Cancelled);
    assert_eq!(kind(handles[2].id()), OutcomeKind::Succeeded);
    // The handle still knows after the job is over.
    assert!(handles[1].is_cancelled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_job_cancels_everything_and_kills_children() {
    let pool = Pool::builder().workers(4).build().unwrap();
    let pids = Arc::new(Mutex::new(Vec::new()));
    let sleeper = Handler::process("sleep", |_: u32| Ok(ProcessCommand::new("sleep").arg("30")));
    let io = Handler::io("io", |_: u32, ctx| async move {
        ctx.cancelled().await;
        Ok::<_, TaskError>(())
    });
    let delayed = Handler::io(
        "later",
        |_: u32, _ctx| async move { Ok::<_, TaskError>(()) },
    );
    let job = pool.job().start().unwrap();
    for i in 0..2 {
        job.submit(&sleeper, i).await.unwrap();
        job.submit(&io, i).await.unwrap();
    }
    for i in 0..10 {
        job.submit_with(
            &delayed,
            i,
            TaskOptions::new().delay(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    }
    // Wait for both children to exist, then note their pids.
    for _ in 0..500 {
        let found: Vec<u32> = conveyor_testkit::process::children_of(std::process::id())
            .into_iter()
            .filter(|pid| conveyor_testkit::process::command_name(*pid).as_deref() == Some("sleep"))
            .collect();
        if found.len() >= 2 {
            *pids.lock().unwrap() = found;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    job.cancel();
    let s = tokio::time::timeout(Duration::from_secs(5), job.wait())
        .await
        .unwrap();
    assert_eq!(s.cancelled, 14, "{s:?}");
    let pids = pids.lock().unwrap().clone();
    assert!(pids.len() >= 2, "children seen: {pids:?}");
    for pid in pids {
        wait_gone(pid).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_cpu_task_reports_at_once_and_the_closure_sees_it() {
    let pool = Pool::builder().cpu_threads(1).build().unwrap();
    let saw_cancel = Arc::new(AtomicU32::new(0));
    let s = saw_cancel.clone();
    let h = Handler::cpu("spin", move |_: (), ctx| {
        while !ctx.is_cancelled() {
            std::thread::sleep(Duration::from_millis(1));
        }
        s.fetch_add(1, Ordering::SeqCst);
        Ok::<_, TaskError>(())
    });
    let slot = Arc::new(Mutex::new(None));
    let sl = slot.clone();
    let job = pool
        .job()
        .on_task_complete(move |r| *sl.lock().unwrap() = Some(r.outcome.kind()))
        .start()
        .unwrap();
    let handle = job.submit(&h, ()).await.unwrap();
    while pool.metrics().in_flight_cpu < 1 {
        tokio::task::yield_now().await;
    }
    handle.cancel();
    tokio::time::timeout(Duration::from_secs(5), job.wait())
        .await
        .unwrap();
    assert_eq!(*slot.lock().unwrap(), Some(OutcomeKind::Cancelled));
    assert_eq!(saw_cancel.load(Ordering::SeqCst), 1);
    // The thread is free again.
    let quick = Handler::cpu("quick", |n: u32, _ctx| Ok::<_, TaskError>(n));
    assert_eq!(
        run_one(&pool, &quick, 9, TaskOptions::new())
            .await
            .output::<u32>(),
        Some(&9)
    );
}

/// With one worker, not a single task starts after the job's failure limit:
/// the limit is counted before the worker takes its next task, not when the
/// result handler hears of it. A timeout counts as a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_after_failures_starts_nothing_after_the_limit() {
    let pool = Pool::builder().workers(1).build().unwrap();
    let started = Arc::new(Mutex::new(Vec::new()));
    let seen = started.clone();
    // Odd numbers fail; 7 times out.
    let flaky = Handler::io("flaky", move |n: u32, _ctx| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(n);
            if n == 7 {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            if n % 2 == 1 {
                return Err(TaskError::new(format!("{n} is odd")));
            }
            Ok(n)
        }
    })
    .timeout(Duration::from_millis(50));
    let never_started = Arc::new(AtomicU32::new(0));
    let counter = never_started.clone();
    let job = pool
        .job()
        .queue_capacity(100)
        .halt_after_failures(3)
        .on_task_complete(move |r| {
            if r.outcome.kind() == OutcomeKind::Cancelled && r.attempts == 0 {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        })
        .start()
        .unwrap();
    for n in [2, 1, 4, 7, 6, 3, 8, 5, 10, 12] {
        job.submit(&flaky, n).await.unwrap();
    }
    let summary = job.await;
    // 1 fails, 7 times out, 3 fails: the third failure; nothing after it starts.
    assert_eq!(*started.lock().unwrap(), [2, 1, 4, 7, 6, 3]);
    assert_eq!(summary.failed, 2);
    assert_eq!(summary.timed_out, 1);
    assert_eq!(summary.succeeded, 3);
    assert_eq!(summary.cancelled, 4);
    assert_eq!(never_started.load(Ordering::SeqCst), 4);
}

/// A halted job's tasks that wait in the dispatcher (here for a delay) leave
/// at once, as cancelled ones do, instead of waiting only to be skipped; an
/// attempt that was running at the halt finishes, and if it fails it is not
/// retried (a retry would be a new start).
#[tokio::test(start_paused = true)]
async fn a_halted_job_lets_its_waiting_tasks_go_at_once() {
    let pool = Pool::builder().workers(2).build().unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let tries = attempts.clone();
    // Fails at once for 0, after 100 ms otherwise; retried twice after 1 s.
    let failing = Handler::io("failing", move |n: u32, _ctx| {
        tries.fetch_add(1, Ordering::SeqCst);
        async move {
            if n > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err::<(), _>(if n == 0 {
                TaskError::permanent("no")
            } else {
                TaskError::new("no")
            })
        }
    })
    .retry(RetryPolicy::attempts(3).backoff(Duration::from_secs(1), Duration::from_secs(1)));
    let start = Instant::now();
    let job = pool.job().halt_after_failures(1).start().unwrap();
    job.submit(&failing, 1).await.unwrap();
    job.submit(&failing, 0).await.unwrap();
    for _ in 0..3 {
        let later = TaskOptions::new().delay(Duration::from_secs(60));
        job.submit_with(&failing, 2, later).await.unwrap();
    }
    let summary = job.await;
    assert_eq!(summary.failed, 2);
    assert_eq!(summary.retries, 0);
    assert_eq!(summary.cancelled, 3);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    // On the paused clock: the delayed tasks did not wait for their delay.
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
}
