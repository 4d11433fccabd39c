//! Waiting for results on PostgreSQL: statements that finish tasks send one
//! `NOTIFY` on `<schema>_finished` per statement (the ids, or an empty
//! payload when they would not fit), and a waiter on another backend (its own
//! pool and LISTEN connection) is woken by it.

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
