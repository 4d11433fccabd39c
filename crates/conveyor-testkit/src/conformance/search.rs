//! Searching and counting: text in params and errors, pages that return
//! every match once, counts that match the filters, and kept counts that
//! agree with the tasks after every kind of change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{
    Backend, Count, FinishAction, ListParams, ManualClock, NewTask, ReserveParams, Retention,
    Search, TaskId, TaskState,
};

use super::*;

/// Every task a search matches, read `page` at a time through
/// [`Page::next`](conveyor_core::Page::next). Checks that no page is larger
/// than asked, that every task matches, and that paging ends.
pub async fn search_through(
    b: &dyn Backend,
    params: &ListParams,
    search: Option<&Search>,
    page: usize,
) -> Vec<TaskId> {
    let mut out = Vec::new();
    let mut next = Some(params.clone().limit(page));
    while let Some(p) = next {
        let got = b.page(&p, search).await.expect("page");
        assert!(got.tasks.len() <= page, "a page of {}", got.tasks.len());
        for r in &got.tasks {
            assert_eq!(r.state, params.state, "task {} in another state", r.id);
            if let Some(s) = search {
                assert!(s.matches(r), "task {} does not hold {:?}", r.id, s.text());
            }
        }
        out.extend(got.tasks.iter().map(|r| r.id));
        assert!(out.len() <= 10_000, "paging does not end");
        next = got.next.map(|after| p.clone().after(after));
    }
    out
}

fn payload(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "who": text })).expect("json")
}

/// Text is found in params and in errors, ignoring ASCII case; pages in
/// both orders return each match once; counts agree.
pub async fn search_finds_params_and_errors(b: Subject, _clock: Arc<ManualClock>) {
    let mut alice = Vec::new();
    let mut others = Vec::new();
    for i in 0..24u32 {
        let who = match i % 4 {
            0 => "Alice Liddell",
            1 => "bob",
            2 => "ALICE@example.org",
            _ => "zoë",
        };
        let handler = if i % 3 == 0 { "mail" } else { "sms" };
        let id = enqueue(&b, NewTask::new(handler, payload(who))).await;
        if who.to_ascii_lowercase().contains("alice") {
            alice.push((id, handler));
        } else {
            others.push(id);
        }
    }
    let available = ListParams::new(TaskState::Available);
    let s = Search::new("aLiCe").expect("search");
    let want: Vec<TaskId> = alice.iter().map(|(id, _)| *id).collect();
    assert_eq!(search_through(&*b, &available, Some(&s), 4).await, want);
    let mut newest = want.clone();
    newest.reverse();
    assert_eq!(
        search_through(&*b, &available.clone().newest_first(), Some(&s), 5).await,
        newest
    );
    assert_eq!(
        b.count(&available, Some(&s)).await.expect("count"),
        Count::exact(want.len() as u64)
    );
    // With a handler as well.
    let mail: Vec<TaskId> = alice
        .iter()
        .filter(|(_, h)| *h == "mail")
        .map(|(id, _)| *id)
        .collect();
    let by_mail = available.clone().handler("mail");
    assert_eq!(search_through(&*b, &by_mail, Some(&s), 2).await, mail);
    assert_eq!(
        b.count(&by_mail, Some(&s)).await.expect("count"),
        Count::exact(mail.len() as u64)
    );
    // Non-ASCII text is matched as written.
    let zoe = Search::new("ZOË").expect("search");
    assert!(search_through(&*b, &available, Some(&zoe), 10)
        .await
        .is_empty());
    let zoe = Search::new("zoë").expect("search");
    assert_eq!(
        search_through(&*b, &available, Some(&zoe), 10).await.len(),
        6
    );
    // Nothing matches: an empty last page.
    let none = Search::new("mallory").expect("search");
    let page = b.page(&available, Some(&none)).await.expect("page");
    assert!(page.tasks.is_empty() && page.next.is_none());
    assert_eq!(
        b.count(&available, Some(&none)).await.expect("count"),
        Count::exact(0)
    );

    // An error holds the text: found among dead tasks, not among others.
    let got = reserve_until(&b, 1, 1).await;
    let lease = got[0].lease.clone();
    let error = "connection to Mallory-DB refused".to_string();
    report(&b, lease.clone(), FinishAction::DeadLetter { error })
        .await
        .expect("dead-letter");
    let dead = ListParams::new(TaskState::Dead);
    assert_eq!(
        search_through(&*b, &dead, Some(&none), 10).await,
        vec![lease.id]
    );
    assert!(search_through(&*b, &available, Some(&none), 10)
        .await
        .is_empty());
    assert!(others.len() + want.len() == 24);
}

/// Counts of state and queue agree with the listing; a handler narrows them.
pub async fn counts_match_the_filters(b: Subject, _clock: Arc<ManualClock>) {
    for i in 0..30u32 {
        let queue = ["q1", "q2", "q3"][(i % 3) as usize];
        let handler = if i % 5 == 0 { "rare" } else { "common" };
        enqueue(&b, task(handler).queue(queue)).await;
    }
    let all = ListParams::new(TaskState::Available);
    assert_eq!(b.count(&all, None).await.expect("count"), Count::exact(30));
    let q2 = all.clone().queue("q2");
    assert_eq!(b.count(&q2, None).await.expect("count"), Count::exact(10));
    let rare = all.clone().handler("rare");
    assert_eq!(b.count(&rare, None).await.expect("count"), Count::exact(6));
    let rare_q1 = rare.clone().queue("q1");
    let listed = super::page_through(&*b, &rare_q1, 100).await.len() as u64;
    assert_eq!(
        b.count(&rare_q1, None).await.expect("count"),
        Count::exact(listed)
    );
    let dead = ListParams::new(TaskState::Dead);
    assert_eq!(b.count(&dead, None).await.expect("count"), Count::exact(0));
    assert_eq!(
        b.count(&all.clone().queue("nowhere"), None)
            .await
            .expect("count"),
        Count::exact(0)
    );
}

/// The counts per queue and state equal a recount of the listed tasks after
/// every kind of change: enqueue (ready and delayed), due tasks made
/// available, reservation, completion, retry, dead-letter, discard,
/// release, follow-ups, lease expiry (again and final), cancel, requeue,
/// purge and prune.
pub async fn stats_match_a_recount(b: Subject, clock: Arc<ManualClock>) {
    let queues = ["qa", "qb"];
    let lanes = |q: &str| vec![q.to_string()];
    for q in queues {
        let mut batch: Vec<NewTask> = (0..12).map(|_| task("h").queue(q)).collect();
        batch.extend((0..3).map(|_| task("later").queue(q).delay(Duration::from_secs(5))));
        batch.extend((0..4).map(|_| task("other").queue(q)));
        batch.push(task("last").queue(q).max_attempts(1));
        b.enqueue_many(batch).await.expect("enqueue");
    }
    recount(&*b, "after enqueue").await;
    clock.advance(Duration::from_secs(6));
    for q in queues {
        let got = b
            .reserve(ReserveParams::new(&lanes(q), 16, Duration::from_secs(10)))
            .await
            .expect("reserve");
        assert_eq!(got.len(), 16, "16 of the 20 tasks of {q}");
        let mut reports = Vec::new();
        for (i, r) in got.iter().enumerate() {
            let action = match i % 6 {
                0 => FinishAction::Complete { result: None },
                1 => FinishAction::Retry {
                    delay: Duration::from_secs(1),
                    error: "again".into(),
                },
                2 => FinishAction::DeadLetter { error: "no".into() },
                3 => FinishAction::Discard {
                    reason: "skip".into(),
                },
                4 => FinishAction::Release,
                _ => continue, // left running: its lease expires below
            };
            let mut report = conveyor_core::Finish::new(r.lease.clone(), action);
            if i == 0 {
                report = report.with_follow_ups(vec![task("next").queue(q)]);
            }
            reports.push(report);
        }
        for out in b.finish(reports).await.expect("finish") {
            out.expect("report applied");
        }
    }
    recount(&*b, "after reports").await;
    clock.advance(Duration::from_secs(11));
    b.recover_expired().await.expect("recover");
    recount(&*b, "after lease expiry").await;
    // A waiting task cancelled, dead tasks requeued and purged.
    let waiting = b
        .list(&ListParams::new(TaskState::Available).queue("qa").limit(1))
        .await
        .expect("list");
    b.cancel(waiting[0].id).await.expect("cancel");
    let dead = b
        .list(&ListParams::new(TaskState::Dead).queue("qa"))
        .await
        .expect("list");
    assert!(!dead.is_empty(), "qa has dead tasks");
    b.requeue_dead(&[dead[0].id]).await.expect("requeue");
    recount(&*b, "after cancel and requeue").await;
    b.purge_dead(Some("qb")).await.expect("purge");
    recount(&*b, "after purging qb").await;
    clock.advance(Duration::from_secs(3600));
    b.prune(Retention {
        finished: Duration::from_secs(60),
        dead: Duration::from_secs(60),
    })
    .await
    .expect("prune");
    recount(&*b, "after prune").await;
}

/// Tasks in the store for [`pages_stop_at_their_budget`]: more than a
/// page may read.
const SCALE_TASKS: usize = 25_000;
/// One task in this many holds the searched text.
const SCALE_EVERY: usize = 997;

fn scale_payload(i: usize) -> Vec<u8> {
    let tag = if i.is_multiple_of(SCALE_EVERY) {
        "Needle"
    } else {
        "hay"
    };
    format!("{{\"n\":{i},\"tag\":\"{tag}\"}}").into_bytes()
}

/// With more tasks in a state than a page may read, a search's pages stop
/// at their budget and say where, going on from there finds every match
/// once in both orders, a count reads past a page's budget, and a rare state
/// is found at once. Not in `backend_conformance!`: it fills a store with
/// 25,000 tasks, so the stores that search themselves call it.
pub async fn pages_stop_at_their_budget(b: Subject) {
    let mut needles = Vec::new();
    for start in (0..SCALE_TASKS).step_by(1000) {
        let batch: Vec<NewTask> = (start..start + 1000)
            .map(|i| NewTask::new("h", scale_payload(i)))
            .collect();
        let done = b.enqueue_many(batch).await.expect("enqueue");
        for (i, e) in (start..).zip(done) {
            if i.is_multiple_of(SCALE_EVERY) {
                needles.push(e.id);
            }
        }
    }
    // Two dead tasks: a rare state among many.
    let mut dead: Vec<TaskId> = Vec::new();
    for r in reserve(&b, 2).await {
        dead.push(r.lease.id);
        let error = "gone".to_string();
        report(&b, r.lease, FinishAction::DeadLetter { error })
            .await
            .expect("dead-letter");
    }
    needles.retain(|id| !dead.contains(id));

    let s = Search::new("needle").expect("search");
    let available = ListParams::new(TaskState::Available).limit(50);
    let first = b.page(&available, Some(&s)).await.expect("page");
    assert!(first.stopped_early(50), "{first:?}");
    assert_eq!(first.scanned, conveyor_core::SCAN_BUDGET as u64);
    assert!(!first.tasks.is_empty() && first.tasks.len() < needles.len());
    assert_eq!(search_through(&*b, &available, Some(&s), 50).await, needles);
    let mut newest = needles.clone();
    newest.reverse();
    assert_eq!(
        search_through(&*b, &available.clone().newest_first(), Some(&s), 7).await,
        newest
    );
    assert_eq!(
        b.count(&available, Some(&s)).await.expect("count"),
        Count::exact(needles.len() as u64)
    );
    let page = b
        .page(&ListParams::new(TaskState::Dead), None)
        .await
        .expect("page");
    assert_eq!(page.tasks.iter().map(|t| t.id).collect::<Vec<_>>(), dead);
    assert!(page.next.is_none() && page.scanned <= 2, "{page:?}");
    let listed = b
        .list(&ListParams::new(TaskState::Available).limit(12_000))
        .await
        .expect("list");
    assert_eq!(listed.len(), 12_000);
    assert_eq!(
        b.count(&ListParams::new(TaskState::Available), None)
            .await
            .expect("count"),
        Count::exact((SCALE_TASKS - 2) as u64)
    );
}

/// Checks every queue's stats against the tasks listed in each state.
pub(super) async fn recount(b: &dyn Backend, when: &str) {
    let mut listed: BTreeMap<(String, TaskState), u64> = BTreeMap::new();
    let mut by_handler: BTreeMap<(String, String, TaskState), u64> = BTreeMap::new();
    for state in TaskState::ALL {
        for id in super::page_through(b, &ListParams::new(state), 100).await {
            let r = b.get(id).await.expect("get").expect("listed task exists");
            *by_handler
                .entry((r.queue.clone(), r.handler, state))
                .or_default() += 1;
            *listed.entry((r.queue, state)).or_default() += 1;
        }
    }
    let mut counted: BTreeMap<(String, TaskState), u64> = BTreeMap::new();
    for q in b.stats().await.expect("stats") {
        for (state, n) in &q.counts {
            if *n > 0 {
                counted.insert((q.queue.clone(), *state), *n);
            }
        }
    }
    assert_eq!(counted, listed, "stats against a recount {when}");
    for ((queue, handler, state), n) in &by_handler {
        let p = ListParams::new(*state)
            .queue(queue.clone())
            .handler(handler.clone());
        assert_eq!(
            b.count(&p, None).await.expect("count"),
            Count::exact(*n),
            "count of {queue} {handler} {state} {when}"
        );
    }
    for ((queue, state), n) in &listed {
        let p = ListParams::new(*state).queue(queue.clone());
        assert_eq!(
            b.count(&p, None).await.expect("count"),
            Count::exact(*n),
            "count of {queue} {state} {when}"
        );
    }
}
