//! The crash windows between deciding a schedule's fires and creating
//! them, cut open on a real server: the process "dies" after the entry's
//! compare-and-set (`CutShort`), or after creating the fires and before
//! taking them off the entry's pending list.

use std::sync::Arc;

use conveyor_core::schedule::entries::{self, ScheduleEntries};
use conveyor_core::schedule::{fire_key, Schedule};
use conveyor_core::{Clock, ManualClock, ResultStore, Schedules, TaskId, Timestamp};
use conveyor_testkit::CutShort;
use serde_json::json;

use crate::workflows::tests::{backend, reserve};

/// A backend on a manual clock with schedule `tick` (every second) just
/// past its first fire time: that time.
async fn due_tick() -> (crate::NatsBackend, Arc<ManualClock>, Timestamp) {
    let clock = Arc::new(ManualClock::new(Timestamp(1_800_000_000_000)));
    let b = backend(clock.clone()).await;
    let tick =
        Schedule::declared("tick", json!({"every": "1s", "handler": "tick"})).expect("a schedule");
    let record = b.put_schedule(&tick).await.expect("put");
    let first = record.next_fire.expect("a next fire");
    clock.set(Timestamp(first.0 + 20));
    (b, clock, first)
}

/// A pass that dies after deciding the fire leaves it pending under its
/// task id; the next pass creates it under that id, once, and goes on.
#[tokio::test]
async fn a_fire_decided_and_not_created_is_created_by_the_next_pass() {
    let (b, clock, first) = due_tick().await;
    let now = clock.now();
    assert!(entries::fire_due(&CutShort(&b), now).await.is_err(), "died");
    let kept = b.schedule("tick").await.expect("read").expect("kept");
    let decided = kept.last_task.expect("the fire's task id, decided");
    assert_eq!(kept.next_fire, Some(Timestamp(first.0 + 1000)), "moved on");
    assert!(reserve(&b, 1).await.is_empty(), "nothing created yet");
    assert_eq!(b.next_fire().await.expect("next"), Some(now), "due now");

    let again = b.fire_due(now).await.expect("the next pass");
    assert!(again.is_empty(), "reported by the pass that decided it");
    let got = reserve(&b, 2).await;
    assert_eq!(got.len(), 1, "created once: {got:?}");
    assert_eq!(got[0].lease.id, decided, "under the id decided");
    let rec = ResultStore::get(&b, decided)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(
        rec.unique_key.as_deref(),
        Some(fire_key("tick", first).as_str())
    );
    assert!(b.fire_due(now).await.expect("again").is_empty());
    clock.set(Timestamp(first.0 + 1_020));
    let next = b.fire_due(clock.now()).await.expect("the next fire");
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].at, Timestamp(first.0 + 1000));
}

/// Creating a fire again (a pass that died after creating it, before
/// taking it off the pending list) creates nothing twice.
#[tokio::test]
async fn creating_a_fire_again_creates_nothing_twice() {
    let (b, clock, first) = due_tick().await;
    let fired = b.fire_due(clock.now()).await.expect("fire");
    assert_eq!(fired.len(), 1);
    let tick = b.schedule("tick").await.expect("read").expect("kept");
    let again = b
        .create_fires(vec![(fired[0].task.0, tick.schedule.fire(first))])
        .await
        .expect("create again");
    assert_eq!(again, [fired[0].task]);
    let got = reserve(&b, 2).await;
    assert_eq!(got.len(), 1, "one task: {got:?}");
    assert_eq!(got[0].lease.id, fired[0].task);
    let other: TaskId = b
        .create_fires(vec![(
            ScheduleEntries::alloc_ids(&b, 1).await.expect("id"),
            tick.schedule.fire(first),
        )])
        .await
        .expect("create under another id")[0];
    assert_eq!(other, fired[0].task, "its fire key is held: the holder");
}
