//! Helpers for a backend's own tests of its finish notifications: finish a
//! batch of fresh tasks in one call, and collect what a plain listener (a
//! LISTEN connection, a pub/sub subscriber) heard meanwhile.

use std::time::Duration;

use conveyor_core::{Backend, Finish, FinishAction, NewTask, ReserveParams, TaskId, DEFAULT_QUEUE};
use tokio::sync::mpsc;

/// Enqueues `n` tasks on the default queue, reserves them and finishes them
/// all with `action` in one `finish` call (each report must apply); their ids.
pub async fn finish_all(b: &dyn Backend, n: usize, action: FinishAction) -> Vec<TaskId> {
    let tasks = (0..n).map(|_| NewTask::new("h", b"{}".to_vec())).collect();
    b.enqueue_many(tasks).await.expect("enqueue");
    let got = b
        .reserve(ReserveParams::new(
            &[DEFAULT_QUEUE.to_string()],
            n,
            Duration::from_secs(30),
        ))
        .await
        .expect("reserve");
    assert_eq!(got.len(), n);
    let reports = got
        .iter()
        .map(|r| Finish::new(r.lease.clone(), action.clone()))
        .collect();
    let out = b.finish(reports).await.expect("finish");
    assert!(out.iter().all(Result::is_ok));
    got.iter().map(|r| r.lease.id).collect()
}

/// Everything a listener heard: the first message (waiting up to 5 s), then
/// whatever follows it within 300 ms of the one before.
pub async fn heard(rx: &mut mpsc::UnboundedReceiver<String>) -> Vec<String> {
    let mut out = Vec::new();
    let first = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
    out.push(first.expect("a notification").expect("open"));
    while let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        out.push(p);
    }
    out
}
