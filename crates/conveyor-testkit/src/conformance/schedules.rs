//! Schedules (the [`Schedules`](conveyor_core::Schedules) part): each fire
//! time enqueued once however many callers fire at once, misfire and
//! overlap policies, pause, resume, trigger and remove, and progress kept
//! across a redeclaration.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::schedule::{fire_key, Schedule};
use conveyor_core::{Clock, ManualClock, Schedules, Timestamp};
use serde_json::json;

use super::*;

fn part(b: &Subject) -> &dyn Schedules {
    b.schedules().expect("the schedules part")
}

/// Every second, with these extra fields.
fn every_second(name: &str, extra: serde_json::Value) -> Schedule {
    let mut decl = json!({"every": "1s", "handler": "tick", "params": [name], "grace": "500ms"});
    if let (Some(d), Some(e)) = (decl.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    Schedule::declared(name, decl).expect("a schedule")
}

/// Starts the clock on a whole second, plus `ms`.
fn start(clock: &ManualClock, ms: i64) -> Timestamp {
    let t = Timestamp(1_800_000_000_000 + ms);
    clock.set(t);
    t
}

/// A schedule fires at its time, once, whatever the number of callers:
/// nothing before it, one task due at the fire time under its fire key,
/// nothing again at the same moment, the next one a second later.
pub async fn a_schedule_fires_once_per_fire_time(b: Subject, clock: Arc<ManualClock>) {
    let t0 = start(&clock, 200);
    let record = part(&b)
        .put_schedule(&every_second("tick", json!({})))
        .await
        .expect("put");
    let first = Timestamp(t0.0 - 200 + 1000);
    assert_eq!(record.next_fire, Some(first));
    assert!(part(&b)
        .fire_due(clock.now())
        .await
        .expect("fire")
        .is_empty());
    clock.set(Timestamp(first.0 + 30));
    let now = clock.now();
    let racing = futures_util::future::join_all((0..8).map(|_| part(&b).fire_due(now))).await;
    let fired: Vec<_> = racing.into_iter().flat_map(|r| r.expect("fire")).collect();
    assert_eq!(fired.len(), 1, "one fire for one fire time: {fired:?}");
    assert_eq!(fired[0].at, first);
    let task = get(&b, fired[0].task).await;
    assert_eq!(task.handler, "tick");
    assert_eq!(task.run_at, first);
    assert_eq!(
        task.unique_key.as_deref(),
        Some(fire_key("tick", first).as_str())
    );
    let got = reserve(&b, 10).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, br#"["tick"]"#);
    assert!(part(&b).fire_due(now).await.expect("fire").is_empty());
    let kept = part(&b)
        .schedule("tick")
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(kept.last_fire, Some(first));
    assert_eq!(kept.last_task, Some(fired[0].task));
    assert_eq!(kept.next_fire, Some(Timestamp(first.0 + 1000)));
    clock.advance(Duration::from_secs(1));
    let next = part(&b).fire_due(clock.now()).await.expect("fire");
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].at, Timestamp(first.0 + 1000));
}

/// Ten seconds without a leader: `skip` fires none of the ten fire times
/// missed, `once` the latest, `all` every one; each goes on from the next
/// fire time after now.
pub async fn missed_fires_follow_the_misfire_policy(b: Subject, clock: Arc<ManualClock>) {
    let t0 = start(&clock, 0);
    for policy in ["skip", "once", "all"] {
        part(&b)
            .put_schedule(&every_second(policy, json!({"misfire": policy})))
            .await
            .expect("put");
    }
    clock.set(Timestamp(t0.0 + 10_700));
    let fired = part(&b).fire_due(clock.now()).await.expect("fire");
    let count = |name: &str| fired.iter().filter(|f| f.name == name).count();
    assert_eq!((count("skip"), count("once"), count("all")), (0, 1, 10));
    let once = fired.iter().find(|f| f.name == "once").expect("once fired");
    assert_eq!(once.at, Timestamp(t0.0 + 10_000), "the latest missed");
    for name in ["skip", "once", "all"] {
        let kept = part(&b).schedule(name).await.expect("read").expect("kept");
        assert_eq!(kept.next_fire, Some(Timestamp(t0.0 + 11_000)), "{name}");
    }
    let skip = part(&b)
        .schedule("skip")
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(skip.missed, 10);
    assert_eq!(reserve(&b, 100).await.len(), 11);
}

/// A paused schedule fires nothing; resumed, it goes on from the next fire
/// time after now (nothing made up); a trigger fires at once, outside its
/// timing; a removed schedule fires nothing more.
pub async fn pause_resume_trigger_and_remove(b: Subject, clock: Arc<ManualClock>) {
    let t0 = start(&clock, 0);
    part(&b)
        .put_schedule(&every_second("p", json!({})))
        .await
        .expect("put");
    let paused = part(&b)
        .pause_schedule("p", true)
        .await
        .expect("pause")
        .expect("there");
    assert!(paused.paused);
    assert_eq!(part(&b).next_fire().await.expect("next"), None, "paused");
    clock.set(Timestamp(t0.0 + 5_300));
    assert!(part(&b)
        .fire_due(clock.now())
        .await
        .expect("fire")
        .is_empty());
    let resumed = part(&b)
        .pause_schedule("p", false)
        .await
        .expect("resume")
        .expect("there");
    assert_eq!(resumed.next_fire, Some(Timestamp(t0.0 + 6_000)));
    assert!(part(&b)
        .fire_due(clock.now())
        .await
        .expect("fire")
        .is_empty());
    let triggered = part(&b)
        .trigger_schedule("p")
        .await
        .expect("trigger")
        .expect("there");
    assert_eq!(get(&b, triggered).await.handler, "tick");
    assert_eq!(
        part(&b)
            .schedule("p")
            .await
            .expect("read")
            .expect("kept")
            .next_fire,
        Some(Timestamp(t0.0 + 6_000)),
        "a trigger leaves the timing alone"
    );
    assert!(part(&b).remove_schedule("p").await.expect("remove"));
    assert!(!part(&b).remove_schedule("p").await.expect("remove again"));
    assert!(part(&b)
        .trigger_schedule("p")
        .await
        .expect("trigger")
        .is_none());
    assert!(part(&b)
        .pause_schedule("p", true)
        .await
        .expect("pause")
        .is_none());
    clock.set(Timestamp(t0.0 + 9_000));
    assert!(part(&b)
        .fire_due(clock.now())
        .await
        .expect("fire")
        .is_empty());
    assert!(part(&b).schedules().await.expect("list").is_empty());
}

/// While the last fire's task runs: `allow` fires, `skip` passes the fire
/// over, `queue` holds it and fires once the task has ended.
pub async fn overlapping_fires_follow_the_overlap_policy(b: Subject, clock: Arc<ManualClock>) {
    let t0 = start(&clock, 0);
    for policy in ["allow", "skip", "queue"] {
        part(&b)
            .put_schedule(&every_second(policy, json!({"overlap": policy})))
            .await
            .expect("put");
    }
    clock.set(Timestamp(t0.0 + 1_010));
    assert_eq!(part(&b).fire_due(clock.now()).await.expect("fire").len(), 3);
    let running = reserve(&b, 10).await;
    assert_eq!(running.len(), 3, "each first fire runs");
    clock.set(Timestamp(t0.0 + 2_010));
    let second = part(&b).fire_due(clock.now()).await.expect("fire");
    let names: Vec<&str> = second.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["allow"], "only allow fires over a running task");
    let skip = part(&b)
        .schedule("skip")
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(
        (skip.missed, skip.next_fire),
        (1, Some(Timestamp(t0.0 + 3_000)))
    );
    let queue = part(&b)
        .schedule("queue")
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(queue.next_fire, Some(Timestamp(t0.0 + 2_000)), "held");
    for r in running {
        complete(&b, r.lease).await;
    }
    clock.set(Timestamp(t0.0 + 2_900));
    let after = part(&b).fire_due(clock.now()).await.expect("fire");
    let queued: Vec<_> = after.iter().filter(|f| f.name == "queue").collect();
    assert_eq!(queued.len(), 1, "the held fire, once the task ended");
    assert_eq!(queued[0].at, Timestamp(t0.0 + 2_000));
}

/// Declaring a schedule again keeps where it stands (its next and last
/// fire, paused or not) unless its timing changed; schedules list by name.
pub async fn redeclaring_keeps_progress_unless_the_timing_changes(
    b: Subject,
    clock: Arc<ManualClock>,
) {
    let t0 = start(&clock, 0);
    let s = every_second("b", json!({}));
    part(&b).put_schedule(&s).await.expect("put");
    part(&b)
        .put_schedule(&every_second("a", json!({})))
        .await
        .expect("put");
    clock.set(Timestamp(t0.0 + 1_100));
    part(&b).fire_due(clock.now()).await.expect("fire");
    part(&b).pause_schedule("b", true).await.expect("pause");
    clock.set(Timestamp(t0.0 + 1_500));
    let again = part(&b).put_schedule(&s).await.expect("put again");
    assert_eq!(again.next_fire, Some(Timestamp(t0.0 + 2_000)));
    assert_eq!(again.last_fire, Some(Timestamp(t0.0 + 1_000)));
    assert!(again.paused, "still paused");
    let slower =
        Schedule::declared("b", json!({"every": "1m", "handler": "tick"})).expect("a schedule");
    let changed = part(&b).put_schedule(&slower).await.expect("put changed");
    assert_eq!(changed.next_fire, Some(Timestamp(t0.0 + 60_000)));
    assert_eq!(changed.last_fire, Some(Timestamp(t0.0 + 1_000)));
    let names: Vec<String> = part(&b)
        .schedules()
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.schedule.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
}

/// A schedule removed while a leader is about to fire it, ten times:
/// whichever comes first, its fire time is enqueued at most once, and the
/// schedule is gone for good — the fire does not write it back, and
/// nothing fires for it later.
pub async fn a_schedule_removed_as_it_fires_is_gone(b: Subject, clock: Arc<ManualClock>) {
    let mut now = start(&clock, 0);
    for round in 0..10 {
        let name = format!("r{round}");
        part(&b)
            .put_schedule(&every_second(&name, json!({})))
            .await
            .expect("put");
        now = Timestamp(now.0 + 1_000);
        clock.set(Timestamp(now.0 + 10));
        let at = clock.now();
        let (fired, removed) =
            futures_util::join!(part(&b).fire_due(at), part(&b).remove_schedule(&name));
        let fired = fired.expect("fire");
        assert!(removed.expect("remove"), "{name} was there to remove");
        assert!(fired.len() <= 1, "{name}: {fired:?}");
        assert!(
            part(&b).schedule(&name).await.expect("read").is_none(),
            "{name} written back by its fire"
        );
        assert!(part(&b)
            .pause_schedule(&name, true)
            .await
            .expect("pause")
            .is_none());
    }
    clock.set(Timestamp(now.0 + 5_000));
    assert!(part(&b)
        .fire_due(clock.now())
        .await
        .expect("fire")
        .is_empty());
    assert!(part(&b).schedules().await.expect("list").is_empty());
    assert_eq!(part(&b).next_fire().await.expect("next"), None);
}
