//! Listing, counting, requeueing and purging dead tasks on RabbitMQ with a
//! Redis keeping the task records: dead tasks are listed and counted from
//! the kept records, requeued ones run again and complete (their dead
//! copies gone from the dead queue), purged ones leave no record and no
//! copy; and a Redis backend on the keeper's own prefix never lists or
//! counts a kept record as its own.

mod common;

use std::sync::Arc;
use std::time::Duration;

use conveyor_amqp::AmqpOptions;
use conveyor_core::{Backend, Finish, FinishAction, ListParams, NewTask, TaskId, TaskState};

fn count(stats: &[conveyor_core::QueueStats], queue: &str, state: TaskState) -> u64 {
    stats
        .iter()
        .filter(|s| s.queue == queue)
        .map(|s| s.count(state))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_tasks_are_listed_requeued_and_purged() {
    let amqp = common::backend_keeping(AmqpOptions::default()).await;
    let b: Arc<dyn Backend> = Arc::new(amqp.clone());
    // Five tasks: three die (a handler failing for good), two complete.
    let mut ids = Vec::new();
    for i in 0..5u32 {
        let t = NewTask::new(if i < 3 { "fails" } else { "works" }, format!("{i}").into());
        ids.push(b.enqueue(t).await.expect("enqueue").id);
    }
    let got = common::reserve_n(&amqp, 5, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 5, "every task delivered");
    let reports = got
        .iter()
        .map(|r| {
            let action = if r.handler == "fails" {
                FinishAction::DeadLetter {
                    error: "permanent".into(),
                }
            } else {
                FinishAction::Complete { result: None }
            };
            Finish::new(r.lease.clone(), action)
        })
        .collect();
    for r in b.finish(reports).await.expect("finish") {
        r.expect("settled");
    }
    let dead: Vec<TaskId> = ids[..3].to_vec();

    // Listed and counted from the kept records, in enqueue order.
    let listed = b
        .list(&ListParams::new(TaskState::Dead))
        .await
        .expect("list dead");
    assert_eq!(listed.iter().map(|r| r.id).collect::<Vec<_>>(), dead);
    assert!(listed
        .iter()
        .all(|r| r.error.as_deref() == Some("permanent") && r.attempts == 1));
    let stats = b.stats().await.expect("stats");
    assert_eq!(count(&stats, "default", TaskState::Dead), 3);
    assert_eq!(count(&stats, "default", TaskState::Completed), 2);
    assert_eq!(amqp.depth("default").await.expect("depth"), (0, 3));

    // The Redis backend on the keeper's prefix: the records are readable,
    // never its own tasks.
    let redis = common::records_store(amqp.prefix()).await;
    let own: Arc<dyn Backend> = Arc::new(redis);
    assert_eq!(
        own.get(dead[0]).await.expect("get").map(|r| r.state),
        Some(TaskState::Dead)
    );
    for s in TaskState::ALL {
        assert!(
            own.list(&ListParams::new(s))
                .await
                .expect("list")
                .is_empty(),
            "the keeper lists kept records as its own {s:?}"
        );
    }
    assert!(own.stats().await.expect("stats").is_empty());
    assert_eq!(own.requeue_dead(&dead).await.expect("requeue"), 0);
    assert_eq!(own.purge_dead(None).await.expect("purge"), 0);

    // Requeued: two of them run again and complete; the dead copies go.
    assert_eq!(
        b.requeue_dead(&[dead[0], dead[1], ids[3], TaskId(12345)])
            .await
            .expect("requeue"),
        2,
        "only the dead ones"
    );
    assert_eq!(b.requeue_dead(&[dead[0]]).await.expect("requeue"), 0);
    let again = common::reserve_n(&amqp, 2, Duration::from_secs(10)).await;
    let mut ran: Vec<TaskId> = again.iter().map(|r| r.lease.id).collect();
    ran.sort();
    let mut want = vec![dead[0], dead[1]];
    want.sort();
    assert_eq!(ran, want, "the requeued tasks run again");
    assert!(again.iter().all(|r| r.attempt == 1), "attempts reset");
    let reports = again
        .iter()
        .map(|r| Finish::new(r.lease.clone(), FinishAction::Complete { result: None }))
        .collect();
    for r in b.finish(reports).await.expect("finish") {
        r.expect("settled");
    }
    for id in &dead[..2] {
        let r = b.get(*id).await.expect("get").expect("a record");
        assert_eq!(r.state, TaskState::Completed);
    }
    assert_eq!(amqp.depth("default").await.expect("depth"), (0, 1));
    let stats = b.stats().await.expect("stats");
    assert_eq!(count(&stats, "default", TaskState::Dead), 1);
    assert_eq!(count(&stats, "default", TaskState::Completed), 4);

    // Purged: the last dead record and its copy go.
    assert_eq!(b.purge_dead(Some("default")).await.expect("purge"), 1);
    assert!(b.get(dead[2]).await.expect("get").is_none());
    assert!(b
        .list(&ListParams::new(TaskState::Dead))
        .await
        .expect("list")
        .is_empty());
    assert_eq!(amqp.depth("default").await.expect("depth"), (0, 0));
    assert!(common::nothing_for(&amqp, Duration::from_millis(300)).await);
    common::cleanup(&amqp, &["default"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_keeper_the_parts_say_what_to_add() {
    let amqp = common::backend(AmqpOptions::default()).await;
    let b: Arc<dyn Backend> = Arc::new(amqp.clone());
    for e in [
        b.list(&ListParams::new(TaskState::Dead)).await.map(drop),
        b.stats().await.map(drop),
        b.requeue_dead(&[TaskId(1)]).await.map(drop),
        b.purge_dead(None).await.map(drop),
    ] {
        let e = e.expect_err("refused");
        assert!(
            matches!(&e, conveyor_core::Error::Unsupported(m) if m.contains("?results=redis://")),
            "{e}"
        );
    }
    common::cleanup(&amqp, &["default"]).await;
}
