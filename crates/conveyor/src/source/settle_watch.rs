//! The settle watch: stops an attempt soon after someone else settled its
//! task (an operator cancelled it while it ran), instead of at the lease
//! keeper's next renewal, a third of the lease later.
//!
//! It watches only tasks held for [`WATCH_AFTER`] or longer: a shorter one
//! ends before a person can cancel it, and a worker of short tasks pays
//! nothing (no renewal, and on a store that notifies by subscription, no
//! subscription). Each round it renews at once the claims of the tasks that
//! became long since the last round (one call for all: a cancel that landed
//! before the watch began is found there), then waits on the source's
//! signs ([`Source::settled_elsewhere`]) for the watched tasks; on a sign it
//! renews their claims, and the attempts whose claim is gone are cancelled,
//! as the lease keeper does. The renewal decides: a sign may be spurious.
//! Rounds are at least [`PAUSE`] apart, so a busy store's signs cost at
//! most a few renewals a second. A source that cannot signal has no watch
//! (its first answer says so), and the lease keeper still finds every
//! cancelled claim at its next renewal.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::TaskId;
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

/// Runs until `done` fires, or the source says it cannot signal.
pub(crate) async fn run<S: Source>(shared: Arc<RunnerState<S>>, done: CancellationToken) {
    // The deliveries watched already: (task, generation).
    let mut watched: HashSet<(TaskId, u64)> = HashSet::new();
    loop {
        tokio::select! {
            () = tokio::time::sleep(PAUSE) => {}
            () = done.cancelled() => return,
        }
        let long = shared.held.held_for(WATCH_AFTER);
        if long.is_empty() {
            watched.clear();
            continue;
        }
        let newly: Vec<_> = long
            .iter()
            .filter(|(id, generation, _)| !watched.contains(&(*id, *generation)))
            .cloned()
            .collect();
        watched = long.iter().map(|(id, g, _)| (*id, *g)).collect();
        if !newly.is_empty() && !renew_held(&shared, &newly, &[], &done).await {
            return;
        }
        let ids: Vec<TaskId> = long.iter().map(|(id, _, _)| *id).collect();
        let signed = tokio::select! {
            signed = shared.source.settled_elsewhere(&ids, WAIT) => signed,
            () = done.cancelled() => return,
        };
        match signed {
            None => return,
            Some(false) => {}
            Some(true) => {
                // Only the ones still held as they were.
                let still: HashSet<(TaskId, u64)> = shared
                    .held
                    .held_for(WATCH_AFTER)
                    .into_iter()
                    .map(|(id, g, _)| (id, g))
                    .collect();
                let again: Vec<_> = long
                    .into_iter()
                    .filter(|(id, g, _)| still.contains(&(*id, *g)))
                    .collect();
                if !again.is_empty() && !renew_held(&shared, &again, &[], &done).await {
                    return;
                }
            }
        }
    }
}
