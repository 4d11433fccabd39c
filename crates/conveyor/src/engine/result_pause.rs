//! How long a job's result thread pauses between drains while results keep
//! coming.
//!
//! Pausing lets results gather, so the thread wakes once per many results
//! instead of once per batch a worker sends. But while it pauses, the results
//! fill the job's result queue, and workers wait once it is full: a pause
//! longer than the queue takes to fill stalls the whole job. A fixed pause of
//! 200 µs (250 µs with the kernel's timer slack) did exactly that to a no-op
//! job at 4M results/s with the default room of 1,024 results (measured: 3.2M
//! tasks/s against 3.9–4.1M with a 100 µs pause).
//!
//! So the pause adapts to the flow: after each pause the thread counts what
//! it found waiting. More than half the room, and the next pause is shorter
//! in proportion; less than a quarter, and it doubles, up to [`LONGEST`].
//! A fast flow is drained at about half the room, a slow one keeps the long
//! pause and its few wake-ups. Below [`SHORTEST`] the thread only yields.

use std::time::Duration;

/// The longest pause, and the first: a slow flow's added delay at most.
pub(crate) const LONGEST: Duration = Duration::from_micros(200);

/// The shortest pause worth a timer: below it the thread yields instead.
pub(crate) const SHORTEST: Duration = Duration::from_micros(5);

/// The result thread's current pause between drains.
#[derive(Debug)]
pub(crate) struct ResultPause {
    pause: Duration,
    /// The result queue's room, in results.
    room: usize,
}

impl ResultPause {
    /// A pause for a result queue with room for `room` results.
    pub(crate) fn new(room: usize) -> Self {
        Self {
            pause: LONGEST,
            room: room.max(1),
        }
    }

    /// How long to pause now; zero means yield once instead.
    pub(crate) fn now(&self) -> Duration {
        self.pause
    }

    /// Pauses the calling thread for [`ResultPause::now`].
    pub(crate) fn wait(&self) {
        match self.now() {
            Duration::ZERO => std::thread::yield_now(),
            pause => std::thread::sleep(pause),
        }
    }

    /// Adapts the pause to `found`, the results that were waiting after it.
    pub(crate) fn found(&mut self, found: usize) {
        let found = found.saturating_mul(2);
        if found > self.room {
            // More than half the room: shorter, in proportion.
            let shorter = self.pause.mul_f64(self.room as f64 / found as f64);
            self.pause = if shorter < SHORTEST {
                Duration::ZERO
            } else {
                shorter
            };
        } else if found.saturating_mul(2) < self.room {
            // Less than a quarter: longer.
            self.pause = (self.pause * 2).clamp(SHORTEST, LONGEST);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_flow_keeps_the_longest_pause() {
        let mut p = ResultPause::new(1024);
        for _ in 0..10 {
            p.found(3);
        }
        assert_eq!(p.now(), LONGEST);
    }

    #[test]
    fn a_fast_flow_shortens_the_pause_in_proportion_and_a_lull_lengthens_it() {
        let mut p = ResultPause::new(1000);
        p.found(1000);
        assert_eq!(
            p.now(),
            LONGEST / 2,
            "twice the mark of 500: half the pause"
        );
        p.found(400);
        assert_eq!(
            p.now(),
            LONGEST / 2,
            "between a quarter and half: unchanged"
        );
        p.found(100);
        assert_eq!(p.now(), LONGEST, "below a quarter: doubled, capped");
    }

    #[test]
    fn a_flood_drops_to_yielding_and_comes_back_to_a_timer() {
        let mut p = ResultPause::new(1024);
        p.found(1_000_000);
        assert_eq!(p.now(), Duration::ZERO, "below the shortest: yield");
        p.found(1_000_000);
        assert_eq!(p.now(), Duration::ZERO);
        p.found(0);
        assert_eq!(p.now(), SHORTEST, "back to the shortest timer");
        for _ in 0..10 {
            p.found(0);
        }
        assert_eq!(p.now(), LONGEST);
    }

    #[test]
    fn a_room_of_one_still_adapts() {
        let mut p = ResultPause::new(1);
        p.found(1);
        assert_eq!(p.now(), LONGEST / 2, "a full room: shorter");
        p.found(0);
        assert_eq!(p.now(), LONGEST, "an empty one: longer");
    }
}
