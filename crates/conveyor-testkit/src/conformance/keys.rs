//! Unique keys and ordering keys.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{FinishAction, ManualClock};

use super::*;

/// While a task with a unique key is unfinished, enqueueing the key again (alone
/// or within one batch) returns that task; once it finished, a new one is made.
/// Keys are per queue.
pub async fn unique_keys(b: Subject, _clock: Arc<ManualClock>) {
    let first = b.enqueue(task("u").unique_key("k")).await.expect("enqueue");
    assert!(!first.duplicate);
    let again = b.enqueue(task("u").unique_key("k")).await.expect("enqueue");
    assert!(again.duplicate);
    assert_eq!(again.id, first.id);
    // Duplicates among new tasks, keyed and not, each answered in its place.
    let batch = b
        .enqueue_many(vec![
            task("v").unique_key("k2"),
            task("v"),
            task("v").unique_key("k2"),
            task("v").priority(2),
            task("v").priority(2),
            task("v").unique_key("k"),
            task("w"),
        ])
        .await
        .expect("enqueue_many");
    assert!(!batch[0].duplicate);
    assert!(batch[2].duplicate && batch[2].id == batch[0].id);
    assert!(batch[5].duplicate && batch[5].id == first.id);
    let fresh_ones = [
        (0, "v", 0, Some("k2")),
        (1, "v", 0, None),
        (3, "v", 2, None),
    ];
    let fresh_ones = fresh_ones
        .into_iter()
        .chain([(4, "v", 2, None), (6, "w", 0, None)]);
    let mut seen = vec![first.id];
    for (i, handler, priority, key) in fresh_ones {
        assert!(!batch[i].duplicate, "task {i} of the batch is new");
        assert!(
            !seen.contains(&batch[i].id),
            "task {i} has an id of its own"
        );
        seen.push(batch[i].id);
        let got = b.get(batch[i].id).await.expect("get").expect("stored");
        assert_eq!(
            (
                got.handler.as_str(),
                got.priority,
                got.unique_key.as_deref()
            ),
            (handler, priority, key),
            "task {i} of the batch is stored under its own id"
        );
    }
    let other_queue = b
        .enqueue(task("u").unique_key("k").queue("other"))
        .await
        .expect("enqueue");
    assert!(!other_queue.duplicate, "unique keys are per queue");
    // Still a duplicate while running; a new task once finished.
    let got = reserve(&b, 10).await;
    assert!(ids(&got).contains(&first.id));
    let dup = b.enqueue(task("u").unique_key("k")).await.expect("enqueue");
    assert!(dup.duplicate, "a running task still holds its key");
    for r in &got {
        complete(&b, r.lease.clone()).await;
    }
    let fresh = b.enqueue(task("u").unique_key("k")).await.expect("enqueue");
    assert!(!fresh.duplicate);
    assert_ne!(fresh.id, first.id);
}

/// Tasks sharing an ordering key run one at a time in enqueue order — even
/// across retries and priorities — while other keys and unkeyed tasks run.
pub async fn ordering_keys(b: Subject, clock: Arc<ManualClock>) {
    let a1 = enqueue(&b, task("a1").ordering_key("A")).await;
    let a2 = enqueue(&b, task("a2").ordering_key("A")).await;
    let b1 = enqueue(&b, task("b1").ordering_key("B")).await;
    let a3 = enqueue(&b, task("a3").ordering_key("A").priority(9)).await;
    let free = enqueue(&b, task("free")).await;
    let got = reserve(&b, 10).await;
    let mut got_ids = ids(&got);
    got_ids.sort();
    let mut want = vec![a1, b1, free];
    want.sort();
    assert_eq!(got_ids, want, "only the head of each key");
    assert!(reserve(&b, 10).await.is_empty());
    let lease_a1 = got
        .iter()
        .find(|r| r.lease.id == a1)
        .map(|r| r.lease.clone());
    complete(&b, lease_a1.expect("a1 reserved")).await;
    let next = reserve(&b, 10).await;
    assert_eq!(ids(&next), vec![a2], "a2 before a3 despite a3's priority");
    // a2 fails and waits for a retry: a3 still waits behind it.
    report(
        &b,
        next[0].lease.clone(),
        FinishAction::Retry {
            delay: Duration::from_secs(5),
            error: "flaky".into(),
        },
    )
    .await
    .expect("retry");
    assert!(
        reserve(&b, 10).await.is_empty(),
        "a3 waits behind retrying a2"
    );
    clock.advance(Duration::from_secs(5));
    let retry = reserve(&b, 10).await;
    assert_eq!(ids(&retry), vec![a2]);
    report(
        &b,
        retry[0].lease.clone(),
        FinishAction::DeadLetter {
            error: "gave up".into(),
        },
    )
    .await
    .expect("dead");
    assert_eq!(
        ids(&reserve(&b, 10).await),
        vec![a3],
        "a dead head frees the key"
    );
}
