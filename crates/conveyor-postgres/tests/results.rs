//! Notifications on PostgreSQL. Waiting for results: statements that finish
//! tasks send one `NOTIFY` on `<schema>_finished` per statement (the ids, or
//! an empty payload when they would not fit), and a waiter on another backend
//! (its own pool and LISTEN connection) is woken by it. Waking workers:
//! `enqueue_many` names each queue given work due now on `<schema>_work`,
//! after its commit.

mod common;

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Backend, FinishAction, ManualClock};
use conveyor_postgres::tokio_postgres::{self, AsyncMessage, NoTls};
use conveyor_postgres::PostgresBackend;
use conveyor_testkit::notifications::{finish_all, heard};
use futures_util::StreamExt;
use tokio::sync::mpsc;

/// A waiter that would wait a minute is woken by finishes made through
/// another backend on the same schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishes_on_another_connection_wake_a_waiter() {
    let clock = Arc::new(ManualClock::default());
    let scoped = common::Scoped::new(clock.clone()).await;
    let other =
        PostgresBackend::connect_with(&common::url(), scoped.backend.schema(), clock.clone())
            .await
            .expect("connect");
    let waiter: Arc<dyn Backend> = Arc::new(scoped.backend.clone());
    let finisher: Arc<dyn Backend> = Arc::new(other);
    conveyor_testkit::conformance::result_waits(waiter, finisher, clock).await;
}

/// The notifications a raw LISTEN connection hears on `channel`.
async fn listen(channel: &str) -> (tokio_postgres::Client, mpsc::UnboundedReceiver<String>) {
    let (client, mut conn) = tokio_postgres::connect(&common::url(), NoTls)
        .await
        .expect("connect");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if let AsyncMessage::Notification(n) = m {
                let _ = tx.send(n.payload().to_string());
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN \"{channel}\""))
        .await
        .expect("LISTEN");
    (client, rx)
}

/// One notification per finishing batch, whatever its size: the ids while
/// they fit the payload limit, an empty payload beyond; none for a batch that
/// finishes nothing (releases).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_notification_per_finishing_batch() {
    let scoped = common::Scoped::new(Arc::new(ManualClock::default())).await;
    let b = &scoped.backend;
    let (_client, mut rx) = listen(&format!("{}_finished", b.schema())).await;

    let ids = finish_all(b, 50, FinishAction::Complete { result: None }).await;
    let got = heard(&mut rx).await;
    assert_eq!(got.len(), 1, "one notification for the batch: {got:?}");
    let mut named: Vec<u64> = got[0]
        .split(',')
        .map(|s| s.parse().expect("an id"))
        .collect();
    named.sort_unstable();
    assert_eq!(named, ids.iter().map(|id| id.0).collect::<Vec<_>>());

    finish_all(b, 2000, FinishAction::Complete { result: None }).await;
    assert_eq!(
        heard(&mut rx).await,
        vec![String::new()],
        "too many ids to carry"
    );

    finish_all(b, 5, FinishAction::Release).await;
    let quiet = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await;
    assert!(quiet.is_err(), "a release finishes nothing: {quiet:?}");

    let error = "bad".to_string();
    finish_all(b, 3, FinishAction::DeadLetter { error }).await;
    assert_eq!(heard(&mut rx).await.len(), 1, "dead-lettering finishes");
}

/// The tasks of one `enqueue_many` call: three due now in `mail`, one in
/// `other`, and one in `later` that waits an hour for its run-at.
fn mail_other_later() -> Vec<conveyor_core::NewTask> {
    use conveyor_core::NewTask;
    let mut tasks: Vec<NewTask> = (0..3)
        .map(|_| NewTask::new("t", Vec::new()).queue("mail"))
        .collect();
    tasks.push(NewTask::new("t", Vec::new()).queue("other"));
    tasks.push(
        NewTask::new("t", Vec::new())
            .queue("later")
            .delay(Duration::from_secs(3600)),
    );
    tasks
}

/// The queues named by what a listener heard, each once.
async fn named(rx: &mut mpsc::UnboundedReceiver<String>) -> Vec<String> {
    let mut got = heard(rx).await;
    got.sort();
    got.dedup();
    got
}

/// `enqueue_many` wakes the workers of each queue it gave work due now, and
/// not the queue of a task that waits for its run-at: alone, from its own
/// statement; beside another enqueue under way, after its commit through the
/// backend's notifier (so its commit does not wait for the other's behind
/// the server's notification lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_many_wakes_the_queues_given_work_due_now() {
    use conveyor_core::NewTask;
    let scoped = common::Scoped::new(Arc::new(ManualClock::default())).await;
    let b = &scoped.backend;
    let (_listening, mut rx) = listen(&format!("{}_work", b.schema())).await;
    let mail_other = vec!["mail".to_string(), "other".to_string()];

    b.enqueue_many(mail_other_later())
        .await
        .expect("enqueue alone");
    assert_eq!(named(&mut rx).await, mail_other, "alone");

    // Another enqueue under way: it waits for the ordering key that a
    // caller's open transaction holds.
    let mut client = common::client().await;
    let tx = client.transaction().await.expect("begin");
    let keyed = || {
        vec![NewTask::new("t", Vec::new())
            .queue("held")
            .ordering_key("k")]
    };
    b.enqueue_in(&tx, keyed())
        .await
        .expect("enqueue in the transaction");
    let blocked = {
        let b = b.clone();
        tokio::spawn(async move { b.enqueue_many(keyed()).await })
    };
    let watcher = common::client().await;
    let mut waiting = false;
    for _ in 0..500 {
        let n: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'
                   AND position($1 in query) > 0",
                &[&b.schema()],
            )
            .await
            .expect("read the activity")
            .get(0);
        if n > 0 {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(waiting, "the keyed enqueue never waited for its key");
    b.enqueue_many(mail_other_later())
        .await
        .expect("enqueue beside it");
    assert_eq!(named(&mut rx).await, mail_other, "beside another enqueue");

    tx.commit().await.expect("commit");
    blocked.await.expect("join").expect("the keyed enqueue");
    assert_eq!(named(&mut rx).await, vec!["held".to_string()]);
}
