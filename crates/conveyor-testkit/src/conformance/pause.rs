//! Pausing and resuming queues ([`QueueControl`](conveyor_core::QueueControl)):
//! a paused queue hands out nothing while it accepts tasks and other queues
//! run; tasks already reserved settle as usual; delayed tasks fall due but
//! wait; resuming makes them all reservable; the paused set is shared by
//! every handle on the backend, and outlives a handle where the backend is
//! durable.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Error, FinishAction, ManualClock, ReserveParams};

use super::*;

fn names(queues: &[&str]) -> Vec<String> {
    queues.iter().map(|q| q.to_string()).collect()
}

/// Reserves from `queue` until `want` tasks came (or 10 s passed): a broker
/// may still be delivering tasks enqueued or resumed a moment ago.
async fn reserve_from(b: &Subject, queue: &str, want: usize) -> Vec<Reserved> {
    let queues = names(&[queue]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < want && tokio::time::Instant::now() < deadline {
        let more = b
            .reserve(ReserveParams::new(&queues, want - got.len(), LEASE))
            .await
            .expect("reserve");
        if more.is_empty() && !b.wait_for_work(&queues, Duration::from_millis(50)).await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        got.extend(more);
    }
    got
}

/// Reserves from `queue` a few times, waiting a little between calls, and
/// says it got nothing: a paused queue hands out nothing, also once a broker
/// had time to deliver.
async fn holds_nothing(b: &Subject, queue: &str, why: &str) {
    let queues = names(&[queue]);
    for _ in 0..3 {
        let got = b
            .reserve(ReserveParams::new(&queues, 10, LEASE))
            .await
            .expect("reserve");
        assert!(got.is_empty(), "{why}: {:?}", ids(&got));
        if !b.wait_for_work(&queues, Duration::from_millis(30)).await {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
}

fn sorted(mut v: Vec<TaskId>) -> Vec<TaskId> {
    v.sort_unstable();
    v
}

/// A paused queue reserves nothing while another queue still does; it takes
/// tasks; a running task settles as usual and its retry waits; a delayed task
/// falls due and waits; resuming makes every one of them reservable. The
/// calls answer whether they changed anything, and `paused()` lists.
pub async fn pause_holds_a_queue_back(b: Subject, clock: Arc<ManualClock>) {
    let ctl = b.queue_control().expect("the queue control part");
    assert!(ctl.paused().await.expect("paused").is_empty());
    assert!(
        matches!(ctl.pause("").await, Err(Error::InvalidConfig(_))),
        "an empty queue name is refused"
    );
    assert!(
        matches!(ctl.resume("").await, Err(Error::InvalidConfig(_))),
        "an empty queue name is refused"
    );

    let running = enqueue(&b, task("r").queue("held")).await;
    let retried = enqueue(&b, task("f").queue("held")).await;
    let first = reserve_from(&b, "held", 2).await;
    assert_eq!(sorted(ids(&first)), sorted(vec![running, retried]));
    let waiting = enqueue(&b, task("w").queue("held")).await;

    assert!(ctl.pause("held").await.expect("pause"), "it was not paused");
    assert!(!ctl.pause("held").await.expect("pause"), "paused already");
    assert_eq!(ctl.paused().await.expect("paused"), names(&["held"]));

    let late = enqueue(&b, task("late").queue("held")).await;
    let delayed = enqueue(&b, task("d").queue("held").delay(Duration::from_secs(10))).await;
    let other = enqueue(&b, task("o").queue("other")).await;
    holds_nothing(&b, "held", "a paused queue hands out nothing").await;
    let both = b
        .reserve(ReserveParams::new(&names(&["held", "other"]), 10, LEASE))
        .await
        .expect("reserve");
    let mut got = ids(&both);
    if got.is_empty() {
        got = ids(&reserve_from(&b, "other", 1).await);
    }
    assert_eq!(got, vec![other], "other queues still run");

    // What was reserved before the pause settles as usual; a retry waits.
    let by_id = |id| first.iter().find(|r| r.lease.id == id).expect("reserved");
    complete(&b, by_id(running).lease.clone()).await;
    report(
        &b,
        by_id(retried).lease.clone(),
        FinishAction::Retry {
            delay: Duration::from_secs(1),
            error: "again".into(),
        },
    )
    .await
    .expect("retry while paused");
    clock.advance(Duration::from_secs(11));
    holds_nothing(&b, "held", "due retries and delayed tasks wait").await;
    assert_eq!(ctl.paused().await.expect("paused"), names(&["held"]));

    assert!(ctl.resume("held").await.expect("resume"), "it was paused");
    assert!(
        !ctl.resume("held").await.expect("resume"),
        "resumed already"
    );
    assert!(ctl.paused().await.expect("paused").is_empty());
    let after = reserve_from(&b, "held", 4).await;
    assert_eq!(
        sorted(ids(&after)),
        sorted(vec![retried, waiting, late, delayed]),
        "resumed: every waiting task is reservable"
    );
    holds_nothing(&b, "held", "and nothing else").await;
}

/// A queue with no task yet may be paused: it is listed, its first tasks
/// wait, and resuming lets them run. Several paused queues list sorted.
pub async fn pause_before_any_task(b: Subject, _clock: Arc<ManualClock>) {
    assert!(b.pause_queue("zeta").await.expect("pause"));
    assert!(b.pause_queue("alpha").await.expect("pause"));
    assert_eq!(
        b.paused_queues().await.expect("paused"),
        names(&["alpha", "zeta"]),
        "listed sorted, with no task in either"
    );
    let t = enqueue(&b, task("t").queue("zeta")).await;
    holds_nothing(&b, "zeta", "the first task of a paused queue waits").await;
    assert!(b.resume_queue("zeta").await.expect("resume"));
    assert_eq!(ids(&reserve_from(&b, "zeta", 1).await), vec![t]);
    assert_eq!(b.paused_queues().await.expect("paused"), names(&["alpha"]));
    assert!(b.resume_queue("alpha").await.expect("resume"));
    assert!(
        !b.resume_queue("never-paused").await.expect("resume"),
        "resuming a queue that is not paused changes nothing"
    );
    assert!(b.paused_queues().await.expect("paused").is_empty());
}

/// The conformance case: [`pause_is_shared`] with one handle.
pub async fn pause_is_shared_by_handles(b: Subject, clock: Arc<ManualClock>) {
    pause_is_shared(b.clone(), b, clock).await;
}

/// A pause made through `pauser` holds `reserver` (the same backend, or
/// another handle on the same namespace: another connection, another handle
/// on the file) back, and its resume lets it run again.
pub async fn pause_is_shared(pauser: Subject, reserver: Subject, _clock: Arc<ManualClock>) {
    let t = enqueue(&pauser, task("s").queue("shared")).await;
    assert!(pauser.pause_queue("shared").await.expect("pause"));
    assert_eq!(
        reserver.paused_queues().await.expect("paused"),
        names(&["shared"]),
        "every handle sees the pause"
    );
    let u = enqueue(&reserver, task("s").queue("shared")).await;
    holds_nothing(&reserver, "shared", "another handle honours the pause").await;
    assert!(
        !reserver.pause_queue("shared").await.expect("pause"),
        "paused already, through the other handle"
    );
    assert!(pauser.resume_queue("shared").await.expect("resume"));
    assert_eq!(
        sorted(ids(&reserve_from(&reserver, "shared", 2).await)),
        sorted(vec![t, u]),
        "resumed for every handle"
    );
}

/// A pause outlives the handle that made it: `first` pauses a queue and is
/// dropped, and the backend `reopen` opens on the same namespace (another
/// process's view) still holds the queue back, until resumed.
pub async fn pause_is_durable<F, Fut>(first: Subject, reopen: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Subject>,
{
    let t = enqueue(&first, task("d").queue("kept")).await;
    assert!(first.pause_queue("kept").await.expect("pause"));
    assert!(first.pause_queue("empty").await.expect("pause"));
    drop(first);
    let b = reopen().await;
    assert_eq!(
        b.paused_queues().await.expect("paused"),
        names(&["empty", "kept"]),
        "the pauses were kept"
    );
    holds_nothing(&b, "kept", "still paused after reopening").await;
    assert!(b.resume_queue("kept").await.expect("resume"));
    assert_eq!(ids(&reserve_from(&b, "kept", 1).await), vec![t]);
}

/// Many reservers racing a pause: no reservation that begins after `pause`
/// returned hands out a task of the queue, no task is handed out twice, and
/// the tasks left are all there after resuming.
pub async fn concurrent_reservers_honour_a_pause(b: Subject, _clock: Arc<ManualClock>) {
    const TASKS: usize = 1000;
    let tasks: Vec<_> = (0..TASKS).map(|_| task("c").queue("race")).collect();
    b.enqueue_many(tasks).await.expect("enqueue");
    let paused = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let mut joins = Vec::new();
    for _ in 0..4 {
        let (b, paused, count) = (b.clone(), paused.clone(), count.clone());
        joins.push(tokio::spawn(async move {
            let mut taken = Vec::new();
            let mut after_pause = 0;
            while after_pause < 20 {
                let began_paused = paused.load(Ordering::SeqCst);
                let got = b
                    .reserve(ReserveParams::new(&names(&["race"]), 2, LEASE))
                    .await
                    .expect("reserve");
                assert!(
                    !began_paused || got.is_empty(),
                    "a reservation begun after the pause returned took {:?}",
                    ids(&got)
                );
                if began_paused {
                    after_pause += 1;
                }
                count.fetch_add(got.len(), Ordering::SeqCst);
                taken.extend(ids(&got));
                if got.is_empty() {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                } else {
                    tokio::task::yield_now().await;
                }
            }
            taken
        }));
    }
    // Let the reservers take some, then pause while they run.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count.load(Ordering::SeqCst) < 20 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(b.pause_queue("race").await.expect("pause"));
    paused.store(true, Ordering::SeqCst);
    let mut taken = HashSet::new();
    for j in joins {
        for id in j.await.expect("a reserver") {
            assert!(taken.insert(id), "task {id} handed out twice");
        }
    }
    assert!(b.resume_queue("race").await.expect("resume"));
    let rest = reserve_from(&b, "race", TASKS - taken.len()).await;
    for id in ids(&rest) {
        assert!(taken.insert(id), "task {id} handed out twice");
    }
    assert_eq!(taken.len(), TASKS, "every task is reserved once in the end");
}
