//! Dropping a pool leaks no thread and no child process.
//!
//! It counts the threads and children of the whole test process, so it is the
//! only test in its binary: a test running beside it would start and stop
//! threads of its own during the count.

#![allow(clippy::unwrap_used)] // tests unwrap freely: a panic is a failure report

use std::time::Duration;

use conveyor::{Handler, Pool, ProcessCommand, TaskError};

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// This process's children, but for the reaper (a fork of this process that
/// lives as long as it does, by design).
fn children_of_me() -> Vec<u32> {
    conveyor_testkit::process::children_of(std::process::id())
        .into_iter()
        .filter(|pid| !conveyor_testkit::process::is_fork_of_me(*pid))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_pool_leaks_no_threads_and_no_children() {
    let threads_before = thread_count();
    let pool = Pool::builder().cpu_threads(3).build().unwrap();
    let sleeper = Handler::process("sleep", |_: u32| Ok(ProcessCommand::new("sleep").arg("60")));
    let spin = Handler::cpu("spin", |_: u32, ctx| {
        while !ctx.is_cancelled() {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok::<_, TaskError>(())
    });
    let job = pool.job().start().unwrap();
    for i in 0..2 {
        job.submit(&sleeper, i).await.unwrap();
        job.submit(&spin, i).await.unwrap();
    }
    let mut children = Vec::new();
    for _ in 0..500 {
        children = children_of_me();
        if children.len() >= 2 && pool.metrics().in_flight_cpu >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(children.len() >= 2, "children: {children:?}");
    assert!(thread_count() >= threads_before + 3);
    drop(pool);
    let s = tokio::time::timeout(Duration::from_secs(5), job.wait())
        .await
        .unwrap();
    assert_eq!(s.cancelled, 4);
    for _ in 0..500 {
        if children_of_me().is_empty() && thread_count() <= threads_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        children_of_me(),
        Vec::<u32>::new(),
        "child processes leaked"
    );
    assert!(
        thread_count() <= threads_before,
        "threads leaked: {} > {threads_before}",
        thread_count()
    );
}
