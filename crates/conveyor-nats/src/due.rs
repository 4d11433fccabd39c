//! When a reserve must read the schedule: [`DueHint`], what this process
//! knows of the earliest due time of each queue's schedule entries.
//!
//! Listing the schedule (a stream-info request with subjects) costs the
//! server a walk of the stream's subject state on every reserve, and most
//! reserves find nothing due. So a reserve lists it only when
//!
//! - something this process knows of may be due: an entry it wrote (an
//!   enqueue with a delay, a retry with a backoff, any schedule publish,
//!   noted once the publish returned) or saw (a future second in the last
//!   listing, or the run-at of an entry promotion read and found not yet
//!   due) has a due time at or before `now`; or
//! - the last listing is [`PERIOD`] old or more on conveyor's clock (or the
//!   clock went back): what *other* processes scheduled is seen that late
//!   at the latest; or
//! - nothing was listed yet, or the last listing failed.
//!
//! Time is the backend's clock, never the wall clock, so a manual clock
//! moved past a due time this process knows makes the next reserve list
//! and promote, exactly as before. The only delay this adds is for entries
//! written by another process and not promoted by anyone: at most
//! [`PERIOD`] of conveyor's clock after they are due (a worker that writes
//! its own retries promotes them on time).
//!
//! A listing replaces what was known, but must not forget a note made
//! while it was in flight (the entry may have been published after the
//! server answered): notes made since the listing began are kept on top of
//! what it found. When two listings overlap, the later one's result is
//! only merged in (never lowering knowledge, only adding), which errs on
//! the side of listing again.

use std::collections::HashMap;
use std::sync::Mutex;

/// The longest a reserve goes without listing the schedule, in
/// milliseconds of conveyor's clock.
pub(crate) const PERIOD: i64 = 1_000;

/// Earliest known due times, per queue.
#[derive(Debug, Default)]
pub(crate) struct DueHint {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Queue → earliest due time (ms) of an entry that may still wait.
    due: HashMap<String, i64>,
    /// Notes made since the latest listing began.
    fresh: HashMap<String, i64>,
    /// When the last successful listing began (ms), if any.
    listed_at: Option<i64>,
    /// Number of the latest listing begun.
    epoch: u64,
}

/// A listing under way, from [`DueHint::begin`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listing {
    epoch: u64,
    at: i64,
}

fn lower(map: &mut HashMap<String, i64>, queue: &str, due: i64) {
    match map.get_mut(queue) {
        Some(d) => *d = (*d).min(due),
        None => {
            map.insert(queue.to_string(), due);
        }
    }
}

impl DueHint {
    /// This process wrote (or may have written) a schedule entry of
    /// `queue` due at `due` (ms).
    pub(crate) fn note(&self, queue: &str, due: i64) {
        if let Ok(mut s) = self.state.lock() {
            lower(&mut s.due, queue, due);
            lower(&mut s.fresh, queue, due);
        }
    }

    /// Whether a reserve of `queues` at `now` (ms) must list the schedule.
    pub(crate) fn must_list(&self, queues: &[String], now: i64) -> bool {
        let Ok(s) = self.state.lock() else {
            return true;
        };
        match s.listed_at {
            None => return true,
            Some(at) if now < at || now - at >= PERIOD => return true,
            Some(_) => {}
        }
        queues
            .iter()
            .any(|q| s.due.get(q).is_some_and(|d| *d <= now))
    }

    /// A listing begins at `now` (ms), before its request is sent.
    pub(crate) fn begin(&self, now: i64) -> Listing {
        let mut epoch = 0;
        if let Ok(mut s) = self.state.lock() {
            s.epoch += 1;
            s.fresh.clear();
            epoch = s.epoch;
        }
        Listing { epoch, at: now }
    }

    /// The listing `l` and the promotion after it succeeded and found
    /// `found`: queue → earliest due time of an entry that still waits.
    pub(crate) fn listed(&self, l: Listing, found: HashMap<String, i64>) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        if l.epoch == s.epoch {
            let mut due = found;
            let fresh: Vec<(String, i64)> = s.fresh.drain().collect();
            for (q, d) in fresh {
                lower(&mut due, &q, d);
            }
            s.due = due;
            // The latest listing: its time stands even when the clock went
            // back (otherwise every reserve would list until it caught up).
            s.listed_at = Some(l.at);
        } else {
            for (q, d) in found {
                lower(&mut s.due, &q, d);
            }
            s.listed_at = Some(s.listed_at.map_or(l.at, |at| at.max(l.at)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qs(q: &str) -> Vec<String> {
        vec![q.to_string()]
    }

    #[test]
    fn lists_first_then_on_known_due_times_and_every_period() {
        let h = DueHint::default();
        assert!(h.must_list(&qs("a"), 0));
        let l = h.begin(0);
        h.listed(l, HashMap::from([("a".to_string(), 5_000)]));
        assert!(!h.must_list(&qs("a"), 999));
        assert!(h.must_list(&qs("a"), 1_000), "the period");
        let l = h.begin(1_000);
        h.listed(l, HashMap::from([("a".to_string(), 5_000)]));
        assert!(!h.must_list(&qs("a"), 1_500));
        assert!(!h.must_list(&qs("b"), 1_500));
        h.note("b", 1_600);
        assert!(!h.must_list(&qs("b"), 1_599));
        assert!(
            h.must_list(&qs("b"), 1_600),
            "a due time this process wrote"
        );
        assert!(h.must_list(&qs("a"), 500), "the clock went back");
        let l = h.begin(500);
        h.listed(l, HashMap::new());
        assert!(!h.must_list(&qs("a"), 600), "listed since it went back");
    }

    #[test]
    fn a_note_made_during_a_listing_survives_it() {
        let h = DueHint::default();
        let l = h.begin(0);
        h.note("a", 300);
        h.listed(l, HashMap::new());
        assert!(h.must_list(&qs("a"), 300));
        // A note made before a listing began is the listing's to find.
        let l = h.begin(400);
        h.listed(l, HashMap::new());
        assert!(!h.must_list(&qs("a"), 500));
    }

    #[test]
    fn overlapping_listings_only_add() {
        let h = DueHint::default();
        let first = h.begin(0);
        let second = h.begin(0);
        h.listed(second, HashMap::from([("a".to_string(), 700)]));
        h.listed(first, HashMap::new());
        assert!(h.must_list(&qs("a"), 700));
    }
}
