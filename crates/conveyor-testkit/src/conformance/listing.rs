//! Listing: filters by queue and handler, both orders, and keyset paging that
//! returns every matching task exactly once, in order, whatever the state.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{
    Backend, Finish, FinishAction, ListOrder, ListParams, ManualClock, NewTask, ReserveParams,
    TaskId, TaskState,
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

/// Completed tasks with an expiry of their own (a keep given at enqueue, or
/// the retention their report carried) list among the others in the
/// backend's order (by id, or by finished-at), in two queues, each exactly once, paged both ways and by queue,
/// where many finished in the same millisecond (one finish call) as where
/// each has its own; a stats count takes them all. Nothing to list where the
/// backend keeps no expiry per task.
pub async fn kept_tasks_list_in_finish_order(b: Subject, clock: Arc<ManualClock>) {
    if !b.capabilities().keep {
        return;
    }
    let hour = Duration::from_secs(3600);
    let retention = conveyor_core::Retention {
        finished: 2 * hour,
        dead: 2 * hour,
    };
    let queues = vec!["q1".to_string(), "q2".to_string()];
    let mut all = Vec::new();
    for round in 0..8u32 {
        // Six tasks a round over the two queues: one in three with a keep of
        // its own, one in three (of the rest) reported with a retention.
        let tasks: Vec<NewTask> = (0..6u32)
            .map(|i| {
                let t = task("kept").queue(if i % 2 == 0 { "q1" } else { "q2" });
                if (i + round) % 3 == 0 {
                    t.keep(hour * (1 + i))
                } else {
                    t
                }
            })
            .collect();
        let enqueued = b.enqueue_many(tasks).await.expect("enqueue");
        let got = b
            .reserve(ReserveParams::new(&queues, 6, super::LEASE))
            .await
            .expect("reserve");
        assert_eq!(got.len(), enqueued.len(), "the round's tasks are reserved");
        let report = |r: &conveyor_core::Reserved, i: usize| {
            let f = Finish::new(r.lease.clone(), FinishAction::Complete { result: None });
            if i % 3 == 1 {
                f.with_retention(retention)
            } else {
                f
            }
        };
        if round % 2 == 0 {
            // All in one call, in one millisecond.
            clock.advance(Duration::from_millis(1));
            let reports = got.iter().enumerate().map(|(i, r)| report(r, i)).collect();
            let out = b.finish(reports).await.expect("finish");
            assert!(out.iter().all(Result::is_ok), "{out:?}");
        } else {
            for (i, r) in got.iter().enumerate() {
                clock.advance(Duration::from_millis(1));
                let out = b.finish(vec![report(r, i)]).await.expect("finish");
                assert!(out.iter().all(Result::is_ok), "{out:?}");
            }
        }
        all.extend(got.iter().map(|r| r.lease.id));
    }
    let p = ListParams::new(TaskState::Completed).limit(1000);
    let whole = b.list(&p).await.expect("list");
    let mut listed_ids = listed(&whole);
    // Oldest means lowest id, or where a backend says so (Redis) earliest
    // finished.
    let finished: Vec<_> = whole.iter().map(|r| (r.finished_at, r.id)).collect();
    assert!(
        listed_ids.windows(2).all(|w| w[0] < w[1]) || finished.windows(2).all(|w| w[0].0 <= w[1].0),
        "oldest first is in id or finished-at order: {finished:?}"
    );
    let kept = whole.iter().filter(|r| r.expires_at.is_some()).count();
    assert!(
        kept > 0 && kept < whole.len(),
        "{kept} of {} have an expiry",
        whole.len()
    );
    listed_ids.sort();
    let mut want = all.clone();
    want.sort();
    assert_eq!(listed_ids, want, "each completed task once");
    let whole = listed(&whole);
    for page in [1, 4, 7] {
        assert_eq!(page_through(&*b, &p, page).await, whole, "pages of {page}");
        assert_eq!(
            page_through(&*b, &p.clone().newest_first(), page).await,
            reversed(whole.clone()),
            "newest first, pages of {page}"
        );
    }
    for q in &queues {
        let in_q = ListParams::new(TaskState::Completed).queue(q.as_str());
        let one = listed(&b.list(&in_q.clone().limit(1000)).await.expect("list"));
        let want: Vec<TaskId> = whole
            .iter()
            .copied()
            .filter(|id| one.contains(id))
            .collect();
        assert_eq!(one, want, "queue {q} alone keeps the order");
        assert_eq!(one.len(), all.len() / 2, "queue {q} has half the tasks");
        assert_eq!(
            page_through(&*b, &in_q, 5).await,
            one,
            "queue {q}, pages of 5"
        );
        assert_eq!(
            page_through(&*b, &in_q.clone().newest_first(), 3).await,
            reversed(one.clone()),
            "queue {q} newest first, pages of 3"
        );
    }
    let counted: u64 = b
        .stats()
        .await
        .expect("stats")
        .iter()
        .map(|s| s.counts.get(&TaskState::Completed).copied().unwrap_or(0))
        .sum();
    assert_eq!(counted, all.len() as u64, "stats count them all");
}
