//! A report abandoned after its commit was sent — the worker stopped while
//! the network to the broker was black-holed, and dropped its backend —
//! still ends with the task's record completed. The commit waits in the
//! stalled network and is applied when traffic passes again, so the record
//! must not wait for the commit's answer: it is written before the commit
//! (without that, the task is done at the broker and its record stays
//! "running" for good).

mod common;

use std::time::{Duration, Instant};

use conveyor_amqp::AmqpOptions;
use conveyor_core::{Backend, Finish, FinishAction, NewTask, TaskState};
use conveyor_testkit::faults::{FaultProxy, Traffic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_abandoned_mid_stall_still_completes_its_record() {
    let proxy = FaultProxy::start(std::net::SocketAddr::from(([127, 0, 0, 1], 5672)));
    let options = AmqpOptions::default().prefix(common::fresh_prefix());
    let direct = common::connect(&common::amqp_url(), options.clone(), true).await;
    let via = format!("amqp://guest:guest@{}/%2f", proxy.addr());
    let worker = common::connect(&via, options, true).await;
    let id = direct
        .enqueue(NewTask::new("h", b"1".to_vec()))
        .await
        .unwrap_or_else(|e| panic!("enqueue: {e}"))
        .id;
    let reserved = common::reserve_n(&worker, 1, Duration::from_secs(10)).await;
    assert_eq!(reserved.len(), 1, "the task was not delivered");
    proxy.set(Traffic::Blackhole);
    let report = Finish::new(
        reserved[0].lease.clone(),
        FinishAction::Complete { result: None },
    );
    // The worker gives up on its report (its grace ran out) and exits.
    let abandoned = tokio::time::timeout(Duration::from_secs(1), worker.finish(vec![report])).await;
    assert!(
        abandoned.is_err(),
        "the report was answered through a black hole"
    );
    drop(worker);
    proxy.set(Traffic::Pass);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let record = direct
            .result_store()
            .unwrap_or_else(|e| panic!("no result store: {e}"))
            .get(id)
            .await
            .unwrap_or_else(|e| panic!("get: {e}"))
            .unwrap_or_else(|| panic!("task {id} has no record"));
        let (ready, dead) = direct.depth("default").await.unwrap_or((0, 0));
        if record.state == TaskState::Completed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "task {id} is {:?} in the store 20 s after the network came back \
             ({ready} ready, {dead} dead in the broker): its commit applied, its record never did",
            record.state
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(proxy);
    common::cleanup(&direct, &["default"]).await;
}
