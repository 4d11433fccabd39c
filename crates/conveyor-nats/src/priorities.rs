//! When a reserve may skip the ready listing: [`ReadyHint`], the one
//! priority a queue is known to hold while its fetches come back full.
//!
//! A reserve lists the ready subjects (one stream-info request, a walk of
//! the stream's subject state on the server) to fetch the highest priority
//! first. For a queue whose last listing showed messages at exactly one
//! priority, and whose last fetch there came back full (it handed out all
//! that was asked, so more may wait), fetching from that priority straight
//! away is what the listing would have led to anyway, unless another
//! priority got messages since. So the shortcut holds only while
//!
//! - this process published no ready message of the queue at another
//!   priority since that listing began (each publish is noted, once it
//!   returned; a note drops the shortcut);
//! - the listing is younger than [`MAX_AGE`] (what *other* processes
//!   published at another priority is seen that late at the latest: a
//!   bound on priority inversion across processes, on the monotonic clock,
//!   since it is about how stale knowledge of the server is, not a task's
//!   time);
//! - every fetch there comes back full. A fetch that comes back short drops
//!   the shortcut, and the same reserve goes on by the full path (listing,
//!   then every priority from the highest), so no priority is starved.
//!
//! Only the first queue of a reserve matters: the full path takes the first
//! queue's highest priority first, and a full fetch there ends the call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a listing's word on a queue's priorities is trusted.
pub(crate) const MAX_AGE: Duration = Duration::from_millis(200);

/// Queue → the single priority known to hold its messages.
#[derive(Debug, Default)]
pub(crate) struct ReadyHint {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    known: HashMap<String, Known>,
    /// Bumped by every note that dropped (or would drop) a shortcut.
    generation: u64,
}

#[derive(Debug, Clone, Copy)]
struct Known {
    priority: i32,
    listed: Instant,
    /// The last fetch at `priority` came back full.
    full: bool,
}

/// A listing under way, from [`ReadyHint::begin`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listing {
    generation: u64,
    at: Instant,
}

impl ReadyHint {
    /// A ready listing begins (before its request is sent).
    pub(crate) fn begin(&self) -> Listing {
        let generation = self.state.lock().map(|s| s.generation).unwrap_or(0);
        Listing {
            generation,
            at: Instant::now(),
        }
    }

    /// Listing `l` found `queue`'s messages at `priorities`.
    pub(crate) fn listed(&self, l: Listing, queue: &str, priorities: &[i32]) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        match priorities {
            // A note since the listing began may concern this queue.
            [p] if s.generation == l.generation => {
                s.known.insert(
                    queue.to_string(),
                    Known {
                        priority: *p,
                        listed: l.at,
                        full: false,
                    },
                );
            }
            _ => {
                s.known.remove(queue);
            }
        }
    }

    /// A fetch of `queue` at `priority` came back `full` (or short).
    pub(crate) fn fetched(&self, queue: &str, priority: i32, full: bool) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        if !full {
            s.known.remove(queue);
        } else if let Some(k) = s.known.get_mut(queue) {
            k.full = k.priority == priority;
        }
    }

    /// This process published a ready message of `queue` at `priority`.
    pub(crate) fn note(&self, queue: &str, priority: i32) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        if s.known.get(queue).is_none_or(|k| k.priority != priority) {
            s.known.remove(queue);
            s.generation += 1;
        }
    }

    /// The priority to fetch `queue` from without listing, if any.
    pub(crate) fn straight(&self, queue: &str) -> Option<i32> {
        let s = self.state.lock().ok()?;
        let k = s.known.get(queue)?;
        (k.full && k.listed.elapsed() < MAX_AGE).then_some(k.priority)
    }

    /// Forgets what is known of `queue`.
    pub(crate) fn forget(&self, queue: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.known.remove(queue);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_priority_fetched_full_goes_straight_until_a_short_fetch() {
        let h = ReadyHint::default();
        let l = h.begin();
        h.listed(l, "q", &[3]);
        assert_eq!(h.straight("q"), None, "not yet fetched full");
        h.fetched("q", 3, true);
        assert_eq!(h.straight("q"), Some(3));
        h.note("q", 3);
        assert_eq!(
            h.straight("q"),
            Some(3),
            "the same priority changes nothing"
        );
        h.fetched("q", 3, false);
        assert_eq!(h.straight("q"), None);
    }

    #[test]
    fn another_priority_or_several_mean_listing() {
        let h = ReadyHint::default();
        let l = h.begin();
        h.listed(l, "q", &[1, 0]);
        h.fetched("q", 1, true);
        assert_eq!(h.straight("q"), None);
        let l = h.begin();
        h.listed(l, "q", &[0]);
        h.fetched("q", 0, true);
        h.note("q", 5);
        assert_eq!(h.straight("q"), None);
    }

    #[test]
    fn a_note_during_a_listing_wins() {
        let h = ReadyHint::default();
        let l = h.begin();
        h.note("q", 5);
        h.listed(l, "q", &[0]);
        h.fetched("q", 0, true);
        assert_eq!(h.straight("q"), None);
    }
}
