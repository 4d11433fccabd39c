//! Finished tasks expiring one by one: a task's own keep and the retention
//! a worker's report carries, stamped on the task when it finishes, against
//! the retention `prune` is given.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Error, Finish, FinishAction, ManualClock, Retention, TaskId, TaskState};

use super::{enqueue, get, reserve, task, Subject};

/// The retention a worker's report carries in this case.
const HANDLER: Retention = Retention {
    finished: Duration::from_secs(30 * 60),
    dead: Duration::from_secs(3 * 3600),
};

/// The retention `prune` is given in this case.
const PRUNE: Retention = Retention {
    finished: Duration::from_secs(3600),
    dead: Duration::from_secs(3600),
};

/// Reserves the one waiting task `id` and reports `action` for it, with
/// the handler's retention when `with_retention`.
async fn finish(b: &Subject, id: TaskId, action: FinishAction, with_retention: bool) {
    let got = reserve(b, 1).await;
    assert_eq!(got.len(), 1, "task {id} is reserved");
    assert_eq!(got[0].lease.id, id, "the one waiting task is reserved");
    let mut report = Finish::new(got[0].lease.clone(), action);
    if with_retention {
        report = report.with_retention(HANDLER);
    }
    let out = b.finish(vec![report]).await.expect("finish");
    assert!(matches!(out.as_slice(), [Ok(())]), "{out:?}");
}

/// Prunes after moving the clock to `at` past the finishes, and checks
/// which of `tasks` are gone: exactly `gone` (and the count).
async fn prune_at(
    b: &Subject,
    clock: &ManualClock,
    moved: &mut Duration,
    at: Duration,
    tasks: &[(&str, TaskId)],
    gone: &[&str],
) {
    clock.advance(at - *moved);
    *moved = at;
    let n = b.prune(PRUNE).await.expect("prune");
    for (name, id) in tasks {
        let present = b.get(*id).await.expect("get").is_some();
        assert_eq!(
            !present,
            gone.contains(name),
            "at {at:?}: task {name} should be {}",
            if gone.contains(name) { "gone" } else { "kept" }
        );
    }
    assert_eq!(
        n,
        gone.len() as u64,
        "at {at:?}: pruned {n}, expected {gone:?}"
    );
}

/// A task's own keep (given at enqueue) and a report's retention are
/// stamped on the task as its expiry when it finishes, however it finishes
/// (completed, dead by a report, dead on its last retry, dead when its last
/// lease ran out, cancelled); the task's keep wins over the report's;
/// pruning deletes each at its own expiry, keeps one whose expiry is later
/// than the retention `prune` is given, and applies that retention to the
/// tasks with no expiry of their own. A requeued dead task loses its
/// expiry. A backend without the capability refuses a task with a keep.
pub async fn finished_tasks_expire_one_by_one(b: Subject, clock: Arc<ManualClock>) {
    let hour = Duration::from_secs(3600);
    let short = Duration::from_secs(10);
    if !b.capabilities().keep {
        let r = b.enqueue(task("k").keep(hour)).await;
        assert!(matches!(r, Err(Error::Unsupported(_))), "{r:?}");
        return;
    }
    // Dead when its only lease runs out: its keep is stamped by the store.
    let lapsed = enqueue(&b, task("lapsed").keep(short).max_attempts(1)).await;
    assert_eq!(reserve(&b, 1).await.len(), 1);
    clock.advance(super::LEASE + Duration::from_secs(1));
    b.recover_expired().await.expect("recover");
    assert_eq!(get(&b, lapsed).await.state, TaskState::Dead);
    // Everything else finishes now (the clock stays put until pruning).
    let finished_at = get(&b, lapsed).await.finished_at.expect("finished");
    let long = enqueue(&b, task("long").keep(2 * hour)).await;
    finish(&b, long, FinishAction::Complete { result: None }, true).await;
    let brief = enqueue(&b, task("brief").keep(short)).await;
    finish(&b, brief, FinishAction::Complete { result: None }, false).await;
    let handled = enqueue(&b, task("handled")).await;
    finish(&b, handled, FinishAction::Complete { result: None }, true).await;
    let error = || "failed".to_string();
    let dead = enqueue(&b, task("dead")).await;
    finish(&b, dead, FinishAction::DeadLetter { error: error() }, true).await;
    let dead_brief = enqueue(&b, task("dead_brief").keep(short)).await;
    finish(
        &b,
        dead_brief,
        FinishAction::DeadLetter { error: error() },
        true,
    )
    .await;
    let last_retry = enqueue(&b, task("last_retry").max_attempts(1)).await;
    let retry = FinishAction::Retry {
        delay: Duration::ZERO,
        error: error(),
    };
    finish(&b, last_retry, retry, true).await;
    assert_eq!(get(&b, last_retry).await.state, TaskState::Dead);
    let discarded = enqueue(&b, task("discarded")).await;
    let discard = FinishAction::Discard {
        reason: "no use".to_string(),
    };
    finish(&b, discarded, discard, true).await;
    let plain = enqueue(&b, task("plain")).await;
    finish(&b, plain, FinishAction::Complete { result: None }, false).await;
    let mut tasks = vec![
        ("lapsed", lapsed),
        ("long", long),
        ("brief", brief),
        ("handled", handled),
        ("dead", dead),
        ("dead_brief", dead_brief),
        ("last_retry", last_retry),
        ("discarded", discarded),
        ("plain", plain),
    ];
    // Cancelled while waiting, where the backend can cancel.
    let cancelled = enqueue(&b, task("cancelled").keep(short)).await;
    match b.cancel(cancelled).await {
        Ok(_) => tasks.push(("cancelled", cancelled)),
        Err(Error::Unsupported(_)) => {}
        Err(e) => panic!("cancel: {e}"),
    }
    // The expiries as stamped, and the keep as given.
    let expiry = |d: Duration| Some(finished_at.plus(d));
    let want = [
        (lapsed, expiry(short)),
        (long, expiry(2 * hour)),
        (brief, expiry(short)),
        (handled, expiry(HANDLER.finished)),
        (dead, expiry(HANDLER.dead)),
        (dead_brief, expiry(short)),
        (last_retry, expiry(HANDLER.dead)),
        (discarded, expiry(HANDLER.for_state(TaskState::Cancelled))),
        (plain, None),
    ];
    for (id, expires) in want {
        assert_eq!(
            get(&b, id).await.expires_at,
            expires,
            "the expiry of task {id}"
        );
    }
    assert_eq!(get(&b, long).await.keep, Some(2 * hour));
    assert_eq!(get(&b, plain).await.keep, None);
    let shorts: &[&str] = if tasks.iter().any(|(n, _)| *n == "cancelled") {
        &["lapsed", "brief", "dead_brief", "cancelled"]
    } else {
        &["lapsed", "brief", "dead_brief"]
    };
    let mut moved = Duration::ZERO;
    prune_at(
        &b,
        &clock,
        &mut moved,
        short - Duration::from_secs(1),
        &tasks,
        &[],
    )
    .await;
    prune_at(
        &b,
        &clock,
        &mut moved,
        short + Duration::from_secs(1),
        &tasks,
        shorts,
    )
    .await;
    tasks.retain(|(n, _)| !shorts.contains(n));
    let half_hour = HANDLER.finished + Duration::from_secs(1);
    let handled_gone = ["handled", "discarded"];
    prune_at(&b, &clock, &mut moved, half_hour, &tasks, &handled_gone).await;
    tasks.retain(|(n, _)| !handled_gone.contains(n));
    // The prune's own retention takes the task with no expiry; the one
    // kept two hours stays.
    let past_hour = hour + Duration::from_secs(1);
    prune_at(&b, &clock, &mut moved, past_hour, &tasks, &["plain"]).await;
    tasks.retain(|(n, _)| *n != "plain");
    let past_two = 2 * hour + Duration::from_secs(1);
    prune_at(&b, &clock, &mut moved, past_two, &tasks, &["long"]).await;
    tasks.retain(|(n, _)| *n != "long");
    // A dead task requeued has no expiry; the other goes at three hours.
    match b.requeue_dead(&[dead]).await {
        Ok(n) => {
            assert_eq!(n, 1, "the dead task is requeued");
            assert_eq!(get(&b, dead).await.expires_at, None);
            tasks.retain(|(n, _)| *n != "dead");
        }
        Err(Error::Unsupported(_)) => {}
        Err(e) => panic!("requeue: {e}"),
    }
    let past_three = 3 * hour + Duration::from_secs(1);
    let rest: Vec<&str> = tasks.iter().map(|(n, _)| *n).collect();
    prune_at(&b, &clock, &mut moved, past_three, &tasks, &rest).await;
}
