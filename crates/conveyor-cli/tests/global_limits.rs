//! `concurrency` in `conveyor.toml` is global: two `conveyor worker` processes
//! with four slots each never run two tasks of a `concurrency = 1` handler at
//! once. Each task takes a directory as a lock with `mkdir` (atomic, fails if
//! it exists), holds it briefly and removes it; an overlap makes `mkdir` fail,
//! the task fails without retries and is dead-lettered.

mod common;

use std::time::Duration;

use common::Env;
use conveyor::TaskState;
use conveyor_testkit::process::Proc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_share_a_concurrency_of_one() {
    let env = Env::new();
    let lock = env.path("lock");
    let script = format!(
        "mkdir '{l}' || exit 7; sleep 0.1; rmdir '{l}'",
        l = lock.display()
    );
    let cfg = env.config(&format!(
        "[worker]\nslots = 4\npoll = \"20ms\"\n\
         [handlers.exclusive]\nprogram = \"sh\"\nargs = [\"-c\", {script:?}]\n\
         concurrency = 1\nretries = 0\n"
    ));
    let cfg = cfg.to_string_lossy().into_owned();
    let n = 10;
    for _ in 0..n {
        let out = env.run(&["submit", "exclusive", "{}"]);
        assert!(out.status.success(), "{}", common::stderr(&out));
    }
    let b = env.backend().await;
    let _w1 = Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("worker 1");
    let _w2 = Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("worker 2");
    // Wait until every task has an outcome (a dead one fails the test at once).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (done, dead) = loop {
        let stats = b.stats().await.expect("stats");
        let count = |s: TaskState| stats.iter().map(|q| q.count(s)).sum::<u64>();
        let (done, dead) = (count(TaskState::Completed), count(TaskState::Dead));
        if done + dead == n || std::time::Instant::now() > deadline {
            break (done, dead);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead, 0, "two tasks of the handler overlapped");
    assert_eq!(done, n);
    let limits = b.limits().await.expect("limits");
    assert_eq!(
        limits,
        vec![(
            "exclusive".to_string(),
            conveyor::durable::HandlerLimits::none().concurrency(1)
        )]
    );
}
