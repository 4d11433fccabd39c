//! Listing: filters by queue and handler, both orders, and keyset paging that
//! returns every matching task exactly once, in order, whatever the state.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{
    Backend, Finish, FinishAction, ListOrder, ListParams, ManualClock, NewTask, TaskId, TaskState,
};

use super::*;

/// Every task `params` matches, read `page` at a time with `after`. Checks
/// that no page is larger than asked and that paging ends.
pub async fn page_through(b: &dyn Backend, params: &ListParams, page: usize) -> Vec<TaskId> {
    let mut out = Vec::new();
    let mut next = Some(params.clone().limit(page));
    while let Some(p) = next {
        let got = b.list(&p).await.expect("list");
        assert!(
            got.len() <= page,
            "a page of {} for a limit of {page}",
            got.len()
        );
        for r in &got {
            assert_eq!(
                r.state, params.state,
                "task {} listed in another state",
                r.id
            );
        }
        out.extend(got.iter().map(|r| r.id));
        assert!(out.len() <= 10_000, "paging does not end");
        next = p.next_page(&got);
    }
    out
}

fn listed(records: &[conveyor_core::TaskRecord]) -> Vec<TaskId> {
    records.iter().map(|r| r.id).collect()
}

fn reversed(mut ids: Vec<TaskId>) -> Vec<TaskId> {
    ids.reverse();
    ids
}

/// Only the named handler's tasks, of every queue or one, in both orders.
pub async fn list_by_handler(b: Subject, _clock: Arc<ManualClock>) {
    let mut mine = Vec::new();
    let mut mine_in_q2 = Vec::new();
    for i in 0..12u32 {
        let handler = if i % 3 == 0 { "mine" } else { "other" };
        let queue = if i % 2 == 0 { "q1" } else { "q2" };
        let id = enqueue(&b, task(handler).queue(queue)).await;
        if handler == "mine" {
            mine.push(id);
            if queue == "q2" {
                mine_in_q2.push(id);
            }
        }
    }
    let p = ListParams::new(TaskState::Available).handler("mine");
    let got = b.list(&p).await.expect("list");
    assert_eq!(listed(&got), mine);
    assert!(got.iter().all(|r| r.handler == "mine"));
    let got = b.list(&p.clone().newest_first()).await.expect("list");
    assert_eq!(listed(&got), reversed(mine.clone()));
    let got = b.list(&p.clone().queue("q2")).await.expect("list");
    assert_eq!(listed(&got), mine_in_q2);
    let none = ListParams::new(TaskState::Available).handler("nobody");
    assert!(b.list(&none).await.expect("list").is_empty());
    let wrong_state = ListParams::new(TaskState::Dead).handler("mine");
    assert!(b.list(&wrong_state).await.expect("list").is_empty());
}

/// Newest first is the reverse of oldest first, and its limit keeps the
/// newest; the default is oldest first.
pub async fn list_newest_first(b: Subject, _clock: Arc<ManualClock>) {
    let mut all = Vec::new();
    for i in 0..6 {
        all.push(enqueue(&b, task("h").priority(i % 3)).await);
    }
    let oldest = ListParams::new(TaskState::Available);
    assert_eq!(oldest.order, ListOrder::OldestFirst);
    assert_eq!(listed(&b.list(&oldest).await.expect("list")), all);
    let newest = oldest.clone().order(ListOrder::NewestFirst);
    assert_eq!(
        listed(&b.list(&newest).await.expect("list")),
        reversed(all.clone())
    );
    let two = b.list(&newest.clone().limit(2)).await.expect("list");
    assert_eq!(listed(&two), vec![all[5], all[4]]);
    let two = b.list(&oldest.clone().limit(2)).await.expect("list");
    assert_eq!(listed(&two), vec![all[0], all[1]]);
    assert!(b.list(&oldest.limit(0)).await.expect("list").is_empty());
}

/// 25 tasks in each of five states, paged 10 at a time both ways: each task
/// exactly once, in order. Completed tasks finish one by one with the clock
/// moving, so finish order and enqueue order agree (as they must for every
/// backend's "oldest" to be the same).
pub async fn list_pages_through_each_state(b: Subject, clock: Arc<ManualClock>) {
    const N: usize = 25;
    let many = |h: &str| (0..N).map(|_| task(h)).collect::<Vec<NewTask>>();
    let enq = |tasks: Vec<NewTask>| {
        let b = b.clone();
        async move {
            let done = b.enqueue_many(tasks).await.expect("enqueue");
            done.into_iter().map(|e| e.id).collect::<Vec<TaskId>>()
        }
    };

    let completed = enq(many("completed")).await;
    let got = reserve(&b, N).await;
    assert_eq!(ids(&got), completed);
    for r in &got {
        clock.advance(Duration::from_millis(1));
        complete(&b, r.lease.clone()).await;
    }

    let dead = enq(many("dead")).await;
    let got = reserve(&b, N).await;
    assert_eq!(ids(&got), dead);
    let kills: Vec<Finish> = got
        .iter()
        .map(|r| {
            Finish::new(
                r.lease.clone(),
                FinishAction::DeadLetter {
                    error: "paged".into(),
                },
            )
        })
        .collect();
    let out = b.finish(kills).await.expect("finish");
    assert!(out.iter().all(Result::is_ok));

    let running = enq(many("running")).await;
    assert_eq!(ids(&reserve(&b, N).await), running);

    let scheduled = enq((0..N)
        .map(|_| task("scheduled").delay(Duration::from_secs(3600)))
        .collect())
    .await;
    // Priorities in bands, so a store ordering ready tasks by priority still
    // lists them by id.
    let available = enq((0..N)
        .map(|i| task("available").priority([0, 7, -2][i % 3]))
        .collect())
    .await;

    for (state, want) in [
        (TaskState::Available, available),
        (TaskState::Scheduled, scheduled),
        (TaskState::Running, running),
        (TaskState::Dead, dead),
        (TaskState::Completed, completed),
    ] {
        let p = ListParams::new(state);
        assert_eq!(
            page_through(&*b, &p, 10).await,
            want,
            "{state} oldest first"
        );
        let got = page_through(&*b, &p.clone().newest_first(), 10).await;
        assert_eq!(got, reversed(want.clone()), "{state} newest first");
        // A page that ends exactly at the last task is followed by an empty one.
        assert_eq!(page_through(&*b, &p, 5).await, want, "{state} in fives");
    }
}

/// Paging with a queue filter, a handler filter and both: only the matching
/// tasks, each once, in order, both ways. A cursor task need not match the
/// filters.
pub async fn list_pages_with_filters(b: Subject, _clock: Arc<ManualClock>) {
    let mut all = Vec::new();
    for i in 0..40u32 {
        let queue = if i % 2 == 0 { "q1" } else { "q2" };
        let handler = if i % 5 < 2 { "h1" } else { "h2" };
        let t = task(handler).queue(queue).priority((i % 4) as i32);
        all.push((enqueue(&b, t).await, queue, handler));
    }
    let pick = |q: Option<&str>, h: Option<&str>| -> Vec<TaskId> {
        all.iter()
            .filter(|(_, queue, handler)| {
                q.is_none_or(|q| q == *queue) && h.is_none_or(|h| h == *handler)
            })
            .map(|(id, _, _)| *id)
            .collect()
    };
    for (q, h) in [
        (Some("q1"), None),
        (None, Some("h1")),
        (Some("q2"), Some("h2")),
        (Some("q1"), Some("h1")),
    ] {
        let p = ListParams::new(TaskState::Available)
            .queue_opt(q)
            .handler_opt(h);
        let want = pick(q, h);
        assert!(want.len() >= 4, "the filter keeps a few tasks");
        assert_eq!(page_through(&*b, &p, 3).await, want, "{q:?} {h:?}");
        assert_eq!(
            page_through(&*b, &p.clone().newest_first(), 3).await,
            reversed(want.clone()),
            "{q:?} {h:?} newest first"
        );
        // After a task the filter leaves out: what follows it by id.
        let outside = all
            .iter()
            .map(|(id, _, _)| *id)
            .find(|id| !want.contains(id) && *id > want[0])
            .expect("a task outside the filter");
        let after: Vec<TaskId> = want.iter().copied().filter(|id| *id > outside).collect();
        let got = b
            .list(&p.clone().after(outside).limit(100))
            .await
            .expect("list");
        assert_eq!(listed(&got), after, "{q:?} {h:?} after {outside}");
    }
}
