//! The settle watch: stops an attempt soon after someone else settled its
//! task (an operator cancelled it while it ran), instead of at the lease
//! keeper's next renewal, a third of the lease later.
//!
//! It watches only tasks held for [`WATCH_AFTER`] or longer: a shorter one
//! ends before a person can cancel it, and a worker of short tasks pays
//! nothing (no renewal, and on a store that notifies by subscription, no
//! subscription). It runs only for a source that [signals
//! settles](Source::signals_settles).
//!
//! The watch keeps a mark of the source's settle signs
//! ([`Source::settle_mark`]) taken before it checked each watched task: the
//! check is a renewal of the task's claim (one call for all the tasks that
//! joined the watch), which finds a task settled before the mark, and the
//! wait ([`Source::settled_elsewhere`]) is signalled of one settled after
//! it. A sign (which may be spurious) drops the mark: the next round takes
//! a new one and checks every watched task again; the attempts whose claim
//! is gone are cancelled, as the lease keeper does. Rounds are at least
//! [`PAUSE`] apart and full checks [`RECHECK`], so a busy store's signs
//! (or a store that can only poll) cost at most one renewal a second; a
//! quiet one costs a wait. While the source cannot signal (its
//! listener is down) the lease keeper's renewals still find every
//! cancelled claim.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{FinishMark, TaskId};
use tokio_util::sync::CancellationToken;

use super::contract::Source;
use super::lease_keeper::renew_held;
use super::runner_state::RunnerState;

/// How long a task is held before it is watched.
pub(crate) const WATCH_AFTER: Duration = Duration::from_secs(1);

/// The shortest time between two rounds.
const PAUSE: Duration = Duration::from_millis(100);

/// The longest wait on the source's signs before looking at the held
/// tasks again.
const WAIT: Duration = Duration::from_secs(1);

/// The shortest time between two checks of every watched task (after a
/// sign): a store whose signs come often, or that can only poll (the
/// embedded store, for another process's finishes), costs at most one
/// renewal a second.
const RECHECK: Duration = Duration::from_secs(1);

/// Runs until `done` fires.
pub(crate) async fn run<S: Source>(shared: Arc<RunnerState<S>>, done: CancellationToken) {
    // The deliveries (task, generation) checked since `mark` was taken.
    let mut checked: HashSet<(TaskId, u64)> = HashSet::new();
    let mut mark: Option<FinishMark> = None;
    let mut last_mark: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(PAUSE) => {}
            () = done.cancelled() => return,
        }
        let long = shared.held.held_for(WATCH_AFTER);
        let held: HashSet<(TaskId, u64)> = long.iter().map(|(id, g, _)| (*id, *g)).collect();
        checked.retain(|k| held.contains(k));
        if long.is_empty() {
            continue;
        }
        let since = match mark {
            Some(m) => m,
            None => {
                if let Some(t) = last_mark {
                    tokio::select! {
                        () = tokio::time::sleep_until(t + RECHECK) => {}
                        () = done.cancelled() => return,
                    }
                }
                last_mark = Some(tokio::time::Instant::now());
                let Some(m) = shared.source.settle_mark().await else {
                    // No signs now: the lease keeper finds out meanwhile.
                    tokio::select! {
                        () = tokio::time::sleep(WAIT) => {}
                        () = done.cancelled() => return,
                    }
                    continue;
                };
                checked.clear();
                mark = Some(m);
                m
            }
        };
        let check: Vec<_> = long
            .iter()
            .filter(|(id, g, _)| !checked.contains(&(*id, *g)))
            .cloned()
            .collect();
        if !check.is_empty() {
            if !renew_held(&shared, &check, &[], &done).await {
                return;
            }
            checked.extend(check.iter().map(|(id, g, _)| (*id, *g)));
        }
        let ids: Vec<TaskId> = long.iter().map(|(id, _, _)| *id).collect();
        let signed = tokio::select! {
            signed = shared.source.settled_elsewhere(&ids, since, WAIT) => signed,
            () = done.cancelled() => return,
        };
        if signed {
            mark = None;
        }
    }
}
