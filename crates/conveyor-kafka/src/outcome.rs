//! Outcomes: what happens to a record when the runner settles it — finished
//! (succeeded or discarded), dead-lettered (failed, timed out, panicked, or
//! undecodable), or handed back (cancelled: left uncommitted, delivered
//! again) — and the dead-letter writes' acknowledgements.

use std::sync::Arc;

use conveyor::durable::FinishAction;
use conveyor::source::Settlement;
use conveyor::OutcomeKind;

use crate::consumer_state::{ConsumerState, Flow, Record};
use crate::dead_letter::{Failure, Ticket};
use crate::message::Message;
use crate::metrics::{Completion, Disposition};
use crate::partition::Coord;

impl ConsumerState {
    /// The runner settles records (its settler task).
    pub(crate) fn settle(&self, batch: Vec<Settlement<Arc<Record>>>) {
        let mut done = Vec::new();
        {
            let mut st = self.lock();
            for s in batch {
                self.settle_one(&mut st, s, &mut done);
            }
            self.resume_if_room(&mut st);
        }
        self.changed.notify_all();
        self.work.notify_one();
        self.observe(done);
    }

    fn settle_one(&self, st: &mut Flow, s: Settlement<Arc<Record>>, done: &mut Vec<Completion>) {
        let record = s.receipt;
        let coord = record.coord.clone();
        // Its final outcome: the next record of its key may go.
        if let Some(k) = &record.key {
            self.release_key(st, k);
        }
        if let Some(p) = st.current(&coord) {
            p.tasks.remove(&coord.offset);
        }
        let message = record.message.clone();
        let owned = st.current(&coord).is_some_and(|p| !p.revoking);
        match s.action {
            FinishAction::Complete { .. } => self.finish(
                st,
                &coord,
                message,
                Disposition::Succeeded,
                s.attempts,
                None,
                done,
            ),
            FinishAction::Discard { .. } => self.finish(
                st,
                &coord,
                message,
                Disposition::Discarded,
                s.attempts,
                None,
                done,
            ),
            FinishAction::DeadLetter { error } if owned => {
                let reason = match s.outcome {
                    None => {
                        st.counters.undecodable += 1;
                        "undecodable"
                    }
                    Some(OutcomeKind::TimedOut) => "timed_out",
                    Some(OutcomeKind::Panicked) => "panicked",
                    Some(_) => "failed",
                };
                let failure = Failure {
                    reason,
                    error,
                    attempts: s.attempts,
                };
                self.dead_letter(st, coord, message, failure, done);
            }
            // A failure of a partition no longer ours, a cancelled attempt, a
            // record handed back: not finished, so never committed here.
            _ => self.finish(
                st,
                &coord,
                message,
                Disposition::Cancelled,
                s.attempts,
                None,
                done,
            ),
        }
    }

    /// Frees a message's in-flight slot and, unless it was cancelled, marks its
    /// offset finished.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finish(
        &self,
        st: &mut Flow,
        coord: &Coord,
        message: Message,
        disposition: Disposition,
        attempts: u32,
        error: Option<String>,
        done: &mut Vec<Completion>,
    ) {
        st.in_flight = st.in_flight.saturating_sub(1);
        if disposition == Disposition::DeadLettered {
            st.counters.dead_lettered += 1;
        }
        if let Some(p) = st.current(coord) {
            p.in_flight = p.in_flight.saturating_sub(1);
            if disposition != Disposition::Cancelled {
                p.offsets.finished(coord.offset);
            }
        }
        if self.observer.is_some() {
            done.push(Completion {
                message,
                disposition,
                attempts,
                error,
            });
        }
    }

    // ---- dead letters ----

    /// Writes a failed message to the dead-letter topic; it stays in flight
    /// until the broker acknowledges the write.
    pub(crate) fn dead_letter(
        &self,
        st: &mut Flow,
        coord: Coord,
        message: Message,
        failure: Failure,
        done: &mut Vec<Completion>,
    ) {
        let Some(topic) = self.config.dead_letter.topic_for(&coord.topic) else {
            tracing::warn!(topic = %coord.topic, partition = coord.partition, offset = coord.offset, error = %failure.error, "message failed; no dead-letter topic, dropped");
            let (attempts, error) = (failure.attempts, Some(failure.error));
            self.finish(
                st,
                &coord,
                message,
                Disposition::DeadLettered,
                attempts,
                error,
                done,
            );
            return;
        };
        let ticket = Ticket {
            shared: self.me.clone(),
            coord,
            message,
            failure,
        };
        if let Err((ticket, error)) = self.dead_letters.send(&topic, ticket) {
            self.dead_letter_failed(st, *ticket, &error);
        }
    }

    /// The broker answered a dead-letter write (producer thread).
    pub(crate) fn dead_letter_done(&self, ticket: Ticket, error: Option<String>) {
        let mut done = Vec::new();
        {
            let mut st = self.lock();
            match error {
                None => {
                    let Ticket {
                        coord,
                        message,
                        failure,
                        ..
                    } = ticket;
                    let (attempts, error) = (failure.attempts, Some(failure.error));
                    self.finish(
                        &mut st,
                        &coord,
                        message,
                        Disposition::DeadLettered,
                        attempts,
                        error,
                        &mut done,
                    );
                }
                Some(e) => self.dead_letter_failed(&mut st, ticket, &e),
            }
            self.resume_if_room(&mut st);
        }
        self.changed.notify_all();
        self.work.notify_one();
        self.observe(done);
    }

    /// A dead-letter write failed: the slot is freed but the offset stays
    /// unfinished, so nothing at or above it is committed and the message is
    /// delivered again after a restart or rebalance.
    pub(crate) fn dead_letter_failed(&self, st: &mut Flow, ticket: Ticket, error: &str) {
        let c = &ticket.coord;
        tracing::error!(topic = %c.topic, partition = c.partition, offset = c.offset, %error, "dead-letter write failed; the offset stays uncommitted");
        st.counters.dead_letter_errors += 1;
        st.in_flight = st.in_flight.saturating_sub(1);
        if let Some(p) = st.current(c) {
            p.in_flight = p.in_flight.saturating_sub(1);
        }
    }
}
