//! Enqueueing inside the caller's transaction: the tasks exist only if it
//! commits, and wake-ups are sent only then.

mod common;

use conveyor_core::parts::*;
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Backend, NewTask, ReserveParams, SystemClock, TaskState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_tasks_never_exist_committed_ones_do() {
    let scoped = common::Scoped::new(Arc::new(SystemClock)).await;
    let b = &scoped.backend;
    let mut client = common::client().await;

    let tx = client.transaction().await.expect("begin");
    let gone = b
        .enqueue_in(&tx, vec![NewTask::new("t", b"1".to_vec())])
        .await
        .expect("enqueue in transaction");
    assert_eq!(gone.len(), 1);
    assert!(
        b.get(gone[0].id).await.expect("get").is_none(),
        "uncommitted tasks are invisible"
    );
    tx.rollback().await.expect("rollback");
    assert!(b.get(gone[0].id).await.expect("get").is_none());
    let queues = vec![conveyor_core::DEFAULT_QUEUE.to_string()];
    assert!(b
        .reserve(ReserveParams::new(&queues, 10, Duration::from_secs(30)))
        .await
        .expect("reserve")
        .is_empty());

    let tx = client.transaction().await.expect("begin");
    tx.execute("SELECT 1", &[])
        .await
        .expect("the caller's own work");
    let kept = b
        .enqueue_in(
            &tx,
            vec![
                NewTask::new("t", b"2".to_vec()).unique_key("u"),
                NewTask::new("t", b"3".to_vec()).unique_key("u"),
            ],
        )
        .await
        .expect("enqueue in transaction");
    assert!(!kept[0].duplicate && kept[1].duplicate && kept[1].id == kept[0].id);
    tx.commit().await.expect("commit");
    let rec = b.get(kept[0].id).await.expect("get").expect("committed");
    assert_eq!(rec.state, TaskState::Available);
    assert_eq!(rec.payload, b"2".to_vec());
    let got = b
        .reserve(ReserveParams::new(&queues, 10, Duration::from_secs(30)))
        .await
        .expect("reserve");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].lease.id, kept[0].id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tasks_are_refused_before_touching_the_transaction() {
    let scoped = common::Scoped::new(Arc::new(SystemClock)).await;
    let mut client = common::client().await;
    let tx = client.transaction().await.expect("begin");
    let res = scoped
        .backend
        .enqueue_in(&tx, vec![NewTask::new("", Vec::new())])
        .await;
    assert!(matches!(res, Err(conveyor_core::Error::InvalidConfig(_))));
    // The transaction is still usable.
    tx.execute("SELECT 1", &[]).await.expect("still usable");
    tx.commit().await.expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_wakes_a_waiting_worker_and_a_rollback_does_not() {
    let scoped = common::Scoped::new(Arc::new(SystemClock)).await;
    let b = scoped.backend.clone();
    let queues = vec!["mail".to_string()];
    // The first wait starts the listener; let it connect.
    b.wait_for_work(&queues, Duration::from_millis(300)).await;

    let mut client = common::client().await;
    let waiter = {
        let b = b.clone();
        let queues = queues.clone();
        tokio::spawn(async move {
            let began = std::time::Instant::now();
            b.wait_for_work(&queues, Duration::from_secs(20)).await;
            began.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let tx = client.transaction().await.expect("begin");
    b.enqueue_in(&tx, vec![NewTask::new("t", Vec::new()).queue("other")])
        .await
        .expect("enqueue");
    b.enqueue_in(&tx, vec![NewTask::new("t", Vec::new()).queue("mail")])
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    let waited = waiter.await.expect("waiter");
    assert!(
        waited < Duration::from_secs(15),
        "woken by the commit, not the timeout ({waited:?})"
    );

    // Nothing committed for the queue: the wait runs to its timeout.
    let tx = client.transaction().await.expect("begin");
    b.enqueue_in(&tx, vec![NewTask::new("t", Vec::new()).queue("mail")])
        .await
        .expect("enqueue");
    tx.rollback().await.expect("rollback");
    let began = std::time::Instant::now();
    b.wait_for_work(&queues, Duration::from_millis(400)).await;
    assert!(began.elapsed() >= Duration::from_millis(400));
}
