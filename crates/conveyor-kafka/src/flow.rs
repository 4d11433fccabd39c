//! Flow control between the client and the engine: when the read-ahead is
//! full the polling thread **holds** (stops taking records, which the client
//! keeps prefetched), and only if it stays full for `pause_after` does it
//! **pause** the partitions, which makes librdkafka drop its prefetch and
//! fetch it again on resume. A consumer that frees room within that time
//! never pays for the refetch; one stuck on slow work still bounds memory and
//! lets the client serve the group while it waits.
//!
//! Leaving a hold needs only a little room (an eighth of the read-ahead), so
//! the client's prefetch keeps the engine fed; leaving a pause needs half the
//! read-ahead, so each refetch is paid for by many records.

use std::time::Instant;

use conveyor::events::SourceEvent;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::consumer_state::{ConsumerState, Flow};
use crate::context::Ctx;

/// What a hold came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// There is room: take records again.
    Room,
    /// Still full, within `pause_after`: keep holding.
    Full,
    /// Full for `pause_after` (or stopping): the partitions are paused (or
    /// the consumer stops); poll as usual.
    Over,
}

impl ConsumerState {
    /// True when no more records should be taken: the read-ahead is full
    /// (with a read-ahead of 0: every in-flight slot is busy or about to be).
    pub(crate) fn is_full(&self, st: &Flow) -> bool {
        let max = self.config.max_in_flight;
        if self.config.read_ahead == 0 {
            st.no_room(max) || st.backlog(max) > 0
        } else {
            st.backlog(max) >= self.config.read_ahead
        }
    }

    /// How many more records may be taken before [`ConsumerState::is_full`]: the
    /// in-flight slots no record is waiting for, plus what the read-ahead
    /// still holds.
    pub(crate) fn room_left(&self, st: &Flow) -> usize {
        if self.is_full(st) {
            return 0;
        }
        let max = self.config.max_in_flight;
        let unclaimed = max.saturating_sub(st.in_flight + st.startable(max));
        unclaimed + self.config.read_ahead.saturating_sub(st.backlog(max))
    }

    /// True when a hold may end: some room is free again (an eighth of the
    /// read-ahead; with 0: a slot).
    fn hold_may_end(&self, st: &Flow) -> bool {
        let ahead = self.config.read_ahead;
        self.drained_to(st, ahead.saturating_sub((ahead / 8).max(1)))
    }

    /// True when a pause may end: the read-ahead is half empty (with 0: a
    /// slot is free).
    fn pause_may_end(&self, st: &Flow) -> bool {
        self.drained_to(st, self.config.read_ahead / 2)
    }

    /// True when at most `mark` records taken ahead cannot start (with a
    /// read-ahead of 0: a slot is free and no record waits).
    fn drained_to(&self, st: &Flow, mark: usize) -> bool {
        let max = self.config.max_in_flight;
        if self.config.read_ahead == 0 {
            !st.no_room(max) && st.backlog(max) == 0
        } else {
            st.backlog(max) <= mark
        }
    }

    /// The polling thread, with the read-ahead full since `since`: waits
    /// until there is room, but at most until `wait_until` (so it still
    /// notices a stop and commits on time); pauses the partitions once it
    /// has been full for `pause_after`.
    pub(crate) fn hold(
        &self,
        consumer: &BaseConsumer<Ctx>,
        since: Instant,
        wait_until: Instant,
    ) -> Hold {
        let pause_at = since + self.config.pause_after;
        let mut st = self.lock();
        let hold = loop {
            if st.stopping || st.paused {
                break Hold::Over;
            }
            if self.hold_may_end(&st) {
                break Hold::Room;
            }
            let now = Instant::now();
            if now >= pause_at {
                self.pause(&mut st, consumer);
                break Hold::Over;
            }
            if now >= wait_until {
                return Hold::Full;
            }
            let _ = self.changed.wait_until(&mut st, pause_at.min(wait_until));
        };
        st.holding = false;
        hold
    }

    /// Pauses every active partition.
    fn pause(&self, st: &mut Flow, consumer: &BaseConsumer<Ctx>) {
        match consumer.pause(&st.active_list()) {
            Ok(()) => {
                st.paused = true;
                st.counters.pauses += 1;
                self.emit(|at| SourceEvent::Paused { at });
            }
            Err(e) => tracing::warn!(error = %e, "pausing partitions failed"),
        }
    }

    /// Resumes the partitions when there is room again (any thread).
    pub(crate) fn resume_if_room(&self, st: &mut Flow) {
        if !st.paused || st.stopping || !self.pause_may_end(st) {
            return;
        }
        let Some(consumer) = self.consumer.get().and_then(std::sync::Weak::upgrade) else {
            return;
        };
        match consumer.resume(&st.active_list()) {
            Ok(()) => {
                st.paused = false;
                self.emit(|at| SourceEvent::Resumed { at });
            }
            Err(e) => tracing::warn!(error = %e, "resuming partitions failed"),
        }
    }
}
