//! Waiting for results on Redis: scripts that finish tasks publish one
//! message per call on `P finished` (the ids, or an empty message beyond
//! 1000 of them), and a waiter on another backend (its own connection and
//! subscriber) is woken by it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Namespace;
use conveyor_core::{Backend, FinishAction};
use conveyor_testkit::notifications::{finish_all, heard};
use futures_util::StreamExt;
use tokio::sync::mpsc;

/// A waiter that would wait a minute is woken by finishes made through
/// another backend on the same prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishes_on_another_connection_wake_a_waiter() {
    let (ns, clock) = Namespace::manual().await;
    let other = ns.another(clock.clone()).await;
    let waiter: Arc<dyn Backend> = Arc::new(ns.backend.clone());
    let finisher: Arc<dyn Backend> = Arc::new(other);
    conveyor_testkit::conformance::result_waits(waiter, finisher, clock).await;
}

/// The messages a plain subscriber hears on `channel`.
async fn subscribe(channel: &str) -> mpsc::UnboundedReceiver<String> {
    let client = redis::Client::open(common::redis_url()).expect("url");
    let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
    pubsub.subscribe(channel).await.expect("subscribe");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = pubsub.into_on_message();
        while let Some(m) = messages.next().await {
            let payload = String::from_utf8_lossy(m.get_payload_bytes()).into_owned();
            let _ = tx.send(payload);
        }
    });
    rx
}

/// One message per finishing call, whatever its size: the ids up to 1000, an
/// empty message beyond; none for a call that finishes nothing (releases).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_per_finishing_call() {
    let (ns, _clock) = Namespace::manual().await;
    let b = &ns.backend;
    let mut rx = subscribe(&format!("{}finished", ns.prefix())).await;

    // Plain completions (the hot path) and completions with a result.
    let ids = finish_all(b, 50, FinishAction::Complete { result: None }).await;
    let got = heard(&mut rx).await;
    assert_eq!(got.len(), 1, "one message for the call: {got:?}");
    let named: Vec<u64> = got[0]
        .split(',')
        .map(|s| s.parse().expect("an id"))
        .collect();
    assert_eq!(named, ids.iter().map(|id| id.0).collect::<Vec<_>>());
    let result = Some(b"1".to_vec());
    let ids = finish_all(b, 3, FinishAction::Complete { result }).await;
    let got = heard(&mut rx).await;
    let want: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    assert_eq!(got, vec![want.join(",")]);

    finish_all(b, 1001, FinishAction::Complete { result: None }).await;
    assert_eq!(heard(&mut rx).await, vec![String::new()], "too many ids");

    finish_all(b, 5, FinishAction::Release).await;
    let quiet = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await;
    assert!(quiet.is_err(), "a release finishes nothing: {quiet:?}");

    let error = "bad".to_string();
    finish_all(b, 3, FinishAction::DeadLetter { error }).await;
    assert_eq!(heard(&mut rx).await.len(), 1, "dead-lettering finishes");
}
