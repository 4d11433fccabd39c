//! Follow-ups: tasks a finish report enqueues in its own atomic step, so a
//! workflow's next step is never lost between a finish and an enqueue, and
//! never enqueued by a report that is refused — including a worker that
//! "crashes" between running a step and reporting it.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{
    Error, Finish, FinishAction, ManualClock, NewTask, ReserveParams, Reserved, TaskState,
};

use super::*;

/// Reserves everything ready in `queue`.
async fn reserve_in(b: &Subject, queue: &str) -> Vec<Reserved> {
    b.reserve(ReserveParams::new(&[queue.to_string()], 100, LEASE))
        .await
        .expect("reserve")
}

/// The handlers of reserved tasks, sorted.
fn handlers(r: &[Reserved]) -> Vec<String> {
    let mut h: Vec<String> = r.iter().map(|t| t.handler.clone()).collect();
    h.sort();
    h
}

/// A completion's follow-ups exist as soon as the completion does, with
/// their own options (queue, payload, delay, keys); the finished task's own
/// unique key is free for a follow-up in the same step.
pub async fn follow_ups_are_enqueued_with_the_finish(b: Subject, clock: Arc<ManualClock>) {
    let id = enqueue(&b, task("step-1").unique_key("order-7")).await;
    let got = reserve(&b, 1).await;
    assert_eq!(ids(&got), vec![id]);
    let next = NewTask::new("step-2", b"{\"order\":7}".to_vec())
        .queue("fu-next")
        .unique_key("order-7");
    let later = task("step-3")
        .queue("fu-next")
        .delay(Duration::from_secs(10));
    let out = b
        .finish(vec![Finish::new(
            got[0].lease.clone(),
            FinishAction::Complete {
                result: Some(b"1".to_vec()),
            },
        )
        .with_follow_ups(vec![next, later])])
        .await
        .expect("finish (store)");
    assert!(out[0].is_ok(), "the report applies: {:?}", out[0]);
    assert_eq!(state(&b, id).await, TaskState::Completed);
    assert!(
        reserve(&b, 1).await.is_empty(),
        "nothing new in the task's queue"
    );
    let first = reserve_in(&b, "fu-next").await;
    assert_eq!(
        handlers(&first),
        vec!["step-2"],
        "step-3 waits for its delay"
    );
    assert_eq!(first[0].payload, b"{\"order\":7}".to_vec());
    assert_eq!(first[0].attempt, 1);
    let rec = get(&b, first[0].lease.id).await;
    assert_eq!(
        rec.unique_key.as_deref(),
        Some("order-7"),
        "the finished task's unique key went to its follow-up"
    );
    clock.advance(Duration::from_secs(10));
    assert_eq!(handlers(&reserve_in(&b, "fu-next").await), vec!["step-3"]);
}

/// A follow-up keeps its ordering key.
pub async fn follow_ups_carry_their_ordering_key(b: Subject, _clock: Arc<ManualClock>) {
    enqueue(&b, task("step-1")).await;
    let got = reserve(&b, 1).await;
    let next = task("step-2").queue("fu-next").ordering_key("customer-1");
    let out = b
        .finish(vec![
            Finish::complete(got[0].lease.clone()).with_follow_ups(vec![next])
        ])
        .await
        .expect("finish (store)");
    assert!(out[0].is_ok(), "the report applies: {:?}", out[0]);
    let first = reserve_in(&b, "fu-next").await;
    assert_eq!(handlers(&first), vec!["step-2"]);
    assert_eq!(first[0].ordering_key.as_deref(), Some("customer-1"));
}

/// A worker that runs a step and dies before its report leaves nothing
/// behind: no follow-up exists until the redelivered step's report applies,
/// and then exactly once; the dead worker's late report (a zombie) is
/// refused and enqueues nothing.
pub async fn a_crash_before_the_finish_enqueues_nothing(b: Subject, clock: Arc<ManualClock>) {
    let id = enqueue(&b, task("step")).await;
    let lost = b
        .reserve(ReserveParams::new(
            &default_queue(),
            1,
            Duration::from_secs(5),
        ))
        .await
        .expect("reserve");
    assert_eq!(ids(&lost), vec![id]);
    // The worker crashes here: no report. Its lease runs out.
    assert!(reserve_in(&b, "fu-crash").await.is_empty());
    clock.advance(Duration::from_secs(6));
    b.recover_expired().await.expect("recover");
    let again = reserve(&b, 1).await;
    assert_eq!(ids(&again), vec![id], "redelivered");
    assert!(
        reserve_in(&b, "fu-crash").await.is_empty(),
        "no follow-up before a report applies"
    );
    // The dead worker's report arrives late, with its follow-up: refused.
    let zombie = b
        .finish(vec![Finish::complete(lost[0].lease.clone())
            .with_follow_ups(vec![task("from-zombie").queue("fu-crash")])])
        .await
        .expect("finish (store)");
    assert!(
        matches!(zombie[0], Err(Error::StaleLease(_))),
        "a stale report is refused: {:?}",
        zombie[0]
    );
    assert!(
        reserve_in(&b, "fu-crash").await.is_empty(),
        "a refused report enqueues nothing"
    );
    let out = b
        .finish(vec![Finish::complete(again[0].lease.clone())
            .with_follow_ups(vec![task("next").queue("fu-crash")])])
        .await
        .expect("finish (store)");
    assert!(out[0].is_ok(), "{:?}", out[0]);
    assert_eq!(state(&b, id).await, TaskState::Completed);
    assert_eq!(handlers(&reserve_in(&b, "fu-crash").await), vec!["next"]);
    assert!(reserve_in(&b, "fu-crash").await.is_empty(), "exactly once");
}

/// In one batch each report takes its own follow-ups with it: a stale
/// report's and an invalid follow-up's report are refused (the latter left
/// running, untouched), while the others apply with theirs — whatever the
/// action (here a dead-letter that enqueues a compensation).
pub async fn follow_ups_go_with_their_own_report(b: Subject, _clock: Arc<ManualClock>) {
    for h in ["good", "invalid", "dead"] {
        enqueue(&b, task(h)).await;
    }
    let got = reserve(&b, 3).await;
    assert_eq!(got.len(), 3);
    let lease_of = |h: &str| {
        got.iter()
            .find(|t| t.handler == h)
            .map(|t| t.lease.clone())
            .expect("reserved")
    };
    let mut stale = lease_of("good");
    stale.token = stale.token.wrapping_add(1_000);
    let reports = vec![
        Finish::complete(stale).with_follow_ups(vec![task("after-stale").queue("fu-batch")]),
        Finish::complete(lease_of("good"))
            .with_follow_ups(vec![task("after-good").queue("fu-batch")]),
        Finish::complete(lease_of("invalid")).with_follow_ups(vec![
            task("fine-but-refused").queue("fu-batch"),
            NewTask::new("", Vec::new()).queue("fu-batch"),
        ]),
        Finish::new(
            lease_of("dead"),
            FinishAction::DeadLetter {
                error: "gave up".into(),
            },
        )
        .with_follow_ups(vec![task("compensate").queue("fu-batch")]),
    ];
    let out = b.finish(reports).await.expect("finish (store)");
    assert_eq!(out.len(), 4, "one answer per report");
    assert!(matches!(out[0], Err(Error::StaleLease(_))), "{:?}", out[0]);
    assert!(out[1].is_ok(), "{:?}", out[1]);
    assert!(
        matches!(out[2], Err(Error::InvalidConfig(_))),
        "{:?}",
        out[2]
    );
    assert!(out[3].is_ok(), "{:?}", out[3]);
    assert_eq!(
        handlers(&reserve_in(&b, "fu-batch").await),
        vec!["after-good", "compensate"]
    );
    let invalid = lease_of("invalid");
    assert_eq!(
        state(&b, invalid.id).await,
        TaskState::Running,
        "a report refused for its follow-up is not applied"
    );
    complete(&b, invalid).await;
    assert_eq!(state(&b, lease_of("dead").id).await, TaskState::Dead);
}
