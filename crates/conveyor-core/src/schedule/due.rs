//! Which fire times are due, after the leader was away (a restart, a
//! failover, the store down), and the key each fire is enqueued under.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Timing;
use crate::Timestamp;

/// The most missed fire times [`Misfire::All`] enqueues after a pause (the
/// latest of them).
pub const MISFIRE_BOUND: usize = 100;

/// What a schedule does with the fire times it missed (its leader away
/// past their time and the grace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Misfire {
    /// Fire none of them: the next fire time only (the default).
    #[default]
    Skip,
    /// Fire one catch-up, for the latest missed time.
    Once,
    /// Fire every missed time, the latest [`MISFIRE_BOUND`] of them.
    All,
}

/// What a schedule does when its previous fire's task has not ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// Fire anyway (the default).
    #[default]
    Allow,
    /// Do not fire this time.
    Skip,
    /// Fire once the previous fire's task has ended.
    Queue,
}

/// The fires due now, and the next fire time to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The fire times to enqueue, oldest first.
    pub fires: Vec<Timestamp>,
    /// The fire times passed over (missed beyond the grace, not fired).
    pub missed: u64,
    /// The next fire time after now; `None` when the timing has no more.
    pub next: Option<Timestamp>,
}

/// The fires due at `now` of a schedule whose next fire time was stored
/// as `next`. A fire time is on time while `now` is within `grace` of it
/// (a leader's tick is never exactly on time); an earlier one was missed,
/// and `misfire` says what becomes of it. Nothing is due before `next`.
pub fn due(
    timing: &Timing,
    next: Timestamp,
    now: Timestamp,
    misfire: Misfire,
    grace: Duration,
) -> Due {
    if next.0 > now.0 {
        return Due {
            fires: Vec::new(),
            missed: 0,
            next: Some(next),
        };
    }
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    // Every fire time from `next` up to now: the last MISFIRE_BOUND kept,
    // the rest counted.
    let mut passed: std::collections::VecDeque<Timestamp> = Default::default();
    let mut dropped = 0u64;
    let mut at = Some(next);
    while let Some(t) = at.filter(|t| t.0 <= now.0) {
        if passed.len() == MISFIRE_BOUND {
            passed.pop_front();
            dropped += 1;
        }
        passed.push_back(t);
        at = timing.next_after(t);
    }
    let on_time = |t: &Timestamp| now.0.saturating_sub(t.0) <= grace_ms;
    let total = passed.len() as u64 + dropped;
    let fires: Vec<Timestamp> = match misfire {
        Misfire::All => passed.into_iter().collect(),
        Misfire::Once => passed.back().copied().into_iter().collect(),
        Misfire::Skip => passed.back().copied().filter(on_time).into_iter().collect(),
    };
    Due {
        missed: total - fires.len() as u64,
        fires,
        next: at,
    }
}

/// The unique key fire time `at` of schedule `name` is enqueued under: two
/// leaders for a moment enqueue it once.
pub fn fire_key(name: &str, at: Timestamp) -> String {
    format!("schedule:{name}:{}", at.0)
}
