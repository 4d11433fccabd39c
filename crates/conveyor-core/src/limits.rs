//! Global per-handler limits: how many tasks of a handler may run at once and
//! how fast they may start, enforced by the backend for every worker sharing
//! it (not per process).
//!
//! A backend stores one [`HandlerLimits`] record per handler
//! ([`GlobalLimits::set_limits`](crate::GlobalLimits::set_limits), last writer wins) and
//! the rate's state next to it, and `reserve` consults both in the same atomic
//! step that marks tasks running. A task whose handler is at its concurrency
//! limit, or whose start the rate does not allow yet, is skipped: it stays
//! ready, keeps its place among its handler's tasks, and does not hold back
//! other handlers' tasks.
//!
//! The rate is GCRA (the leaky bucket as a meter): starts are spaced
//! `per / count` apart and up to `burst` unused starts accumulate. Its state is
//! one number per handler, the theoretical arrival time (TAT) of the next
//! start, kept in microseconds since the Unix epoch so rates faster than one
//! per millisecond stay exact. [`Admission`] holds the arithmetic so every
//! backend written in Rust decides identically; the Redis scripts repeat it in
//! Lua.

use std::collections::HashMap;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::{Error, Rate};

/// The tick of a stored rate state: a microsecond.
const MICROSECOND: Duration = Duration::from_micros(1);

/// Limits on one handler's tasks across every worker of a backend. `None`
/// means unlimited; a record with neither limit removes the handler's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandlerLimits {
    /// Most tasks of the handler running at once.
    pub concurrency: Option<u32>,
    /// Most starts over time.
    pub rate: Option<Rate>,
}

impl HandlerLimits {
    /// No limits.
    pub fn none() -> Self {
        Self::default()
    }

    /// Sets the concurrency limit.
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = Some(n);
        self
    }

    /// Sets the rate limit.
    pub fn rate(mut self, rate: Rate) -> Self {
        self.rate = Some(rate);
        self
    }

    /// True when neither limit is set.
    pub fn is_unlimited(&self) -> bool {
        self.concurrency.is_none() && self.rate.is_none()
    }

    /// Checks the values a backend can enforce: concurrency at least 1, a rate
    /// with a positive count, a period of at least 1 ms and a burst of at least 1.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if self.concurrency == Some(0) {
            return bad("a handler's global concurrency must be at least 1".into());
        }
        if let Some(r) = self.rate {
            if r.count() == 0 || r.period() < Duration::from_millis(1) || r.burst_size() == 0 {
                return bad(format!(
                    "a handler's global rate needs a positive count, a period of at least 1 ms \
                     and a burst of at least 1, got {}/{:?} burst {}",
                    r.count(),
                    r.period(),
                    r.burst_size()
                ));
            }
        }
        Ok(())
    }
}

/// A handler's limits as a backend read them for one reservation, with the
/// handler's running count and rate state.
#[derive(Debug, Clone, Copy)]
struct Gate {
    limits: HandlerLimits,
    running: u64,
    tat_us: Option<i64>,
    taken: u64,
    blocked: bool,
}

/// The admission decisions of one `reserve` call: fed the limited handlers'
/// limits, running counts and rate states, it answers task by task, in
/// reservation order, whether the task's handler may start one more, and
/// afterwards says which rate states moved.
///
/// Once a handler is refused it stays refused for the rest of the call, so the
/// tasks a call takes of one handler are always a prefix of that handler's
/// ready tasks (no reordering).
#[derive(Debug, Clone)]
pub struct Admission {
    now_us: i64,
    gates: HashMap<String, Gate>,
}

impl Admission {
    /// Decisions at `now`.
    pub fn new(now: Timestamp) -> Self {
        Self {
            now_us: now.as_millis().saturating_mul(1000),
            gates: HashMap::new(),
        }
    }

    /// Registers a limited handler: its limits, how many of its tasks run now
    /// and its stored TAT (µs since the epoch; `None` when never started).
    pub fn limit(
        &mut self,
        handler: &str,
        limits: HandlerLimits,
        running: u64,
        tat_us: Option<i64>,
    ) {
        self.gates.insert(
            handler.to_string(),
            Gate {
                limits,
                running,
                tat_us,
                taken: 0,
                blocked: false,
            },
        );
    }

    /// True when no handler is limited (every task is admitted).
    pub fn is_empty(&self) -> bool {
        self.gates.is_empty()
    }

    /// The limited handlers.
    pub fn handlers(&self) -> impl Iterator<Item = &str> {
        self.gates.keys().map(String::as_str)
    }

    /// Sets the running count of a registered handler.
    pub fn set_running(&mut self, handler: &str, running: u64) {
        if let Some(g) = self.gates.get_mut(handler) {
            g.running = running;
        }
    }

    /// Decides one task of `handler`: `true` admits it (counting it as
    /// running and spending a start of the rate), `false` skips it.
    pub fn admit(&mut self, handler: &str) -> bool {
        let Some(g) = self.gates.get_mut(handler) else {
            return true;
        };
        if g.blocked {
            return false;
        }
        if let Some(c) = g.limits.concurrency {
            if g.running + g.taken >= u64::from(c) {
                g.blocked = true;
                return false;
            }
        }
        if let Some(r) = g.limits.rate {
            match r.gcra(MICROSECOND).admit(g.tat_us, self.now_us, 0) {
                Ok(tat) => g.tat_us = Some(tat),
                Err(_) => {
                    g.blocked = true;
                    return false;
                }
            }
        }
        g.taken += 1;
        true
    }

    /// Handlers refused so far in this call (none of their tasks may be taken
    /// any more).
    pub fn blocked(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .gates
            .iter()
            .filter(|(_, g)| g.blocked)
            .map(|(h, _)| h.clone())
            .collect();
        out.sort();
        out
    }

    /// Handlers that are refused before any task is looked at (at their
    /// concurrency limit, or their rate allows no start now), so a backend can
    /// leave their tasks out of its scan. Does not change any state.
    pub fn closed(&self) -> Vec<String> {
        let mut out: Vec<String> =
            self.gates
                .iter()
                .filter(|(_, g)| {
                    let full = g
                        .limits
                        .concurrency
                        .is_some_and(|c| g.running + g.taken >= u64::from(c));
                    let early = g.limits.rate.is_some_and(|r| {
                        r.gcra(MICROSECOND).admit(g.tat_us, self.now_us, 0).is_err()
                    });
                    g.blocked || full || early
                })
                .map(|(h, _)| h.clone())
                .collect();
        out.sort();
        out
    }

    /// The new TAT of every rate-limited handler that started a task in this
    /// call, to store back.
    pub fn moved_rates(&self) -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> = self
            .gates
            .iter()
            .filter(|(_, g)| g.taken > 0 && g.limits.rate.is_some())
            .filter_map(|(h, g)| g.tat_us.map(|t| (h.clone(), t)))
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_000_000);

    #[test]
    fn concurrency_counts_running_and_taken() {
        let mut a = Admission::new(NOW);
        a.limit("h", HandlerLimits::none().concurrency(3), 1, None);
        assert!(a.admit("other"));
        assert!(a.admit("h"));
        assert!(a.admit("h"));
        assert!(!a.admit("h"));
        assert_eq!(a.blocked(), vec!["h".to_string()]);
        assert!(a.moved_rates().is_empty());
    }

    #[test]
    fn rate_allows_the_burst_then_spaces_starts() {
        let rate = Rate::new(10, Duration::from_secs(1)).burst(3);
        let mut a = Admission::new(NOW);
        a.limit("h", HandlerLimits::none().rate(rate), 0, None);
        assert!(a.closed().is_empty());
        assert!((0..3).all(|_| a.admit("h")));
        assert!(!a.admit("h"), "burst spent");
        let tat = a.moved_rates()[0].1;
        assert_eq!(tat, NOW.as_millis() * 1000 + 300_000);

        // 100 ms later exactly one more start is due.
        let later = Timestamp(NOW.0 + 100);
        let mut b = Admission::new(later);
        b.limit("h", HandlerLimits::none().rate(rate), 0, Some(tat));
        assert!(b.admit("h"));
        assert!(!b.admit("h"));
        let mut c = Admission::new(Timestamp(NOW.0 + 99));
        c.limit("h", HandlerLimits::none().rate(rate), 0, Some(tat));
        assert_eq!(c.closed(), vec!["h".to_string()]);
    }

    #[test]
    fn validation() {
        assert!(HandlerLimits::none().concurrency(0).validate().is_err());
        let r = Rate::new(0, Duration::from_secs(1));
        assert!(HandlerLimits::none().rate(r).validate().is_err());
        assert!(HandlerLimits::none().concurrency(1).validate().is_ok());
        assert_eq!(
            Rate::new(3, Duration::from_millis(1))
                .gcra(MICROSECOND)
                .interval,
            333
        );
    }
}
