//! Outcomes: what happens to a message when the engine reports its final
//! outcome — finished (succeeded or discarded), dead-lettered (failed, timed
//! out, panicked, or undecodable), or cancelled (left uncommitted, delivered
//! again) — and the dead-letter writes' acknowledgements.

use conveyor::{ErrorKind, Outcome, TaskResult};

use crate::dead_letter::{Failure, Ticket};
use crate::message::Message;
use crate::metrics::{Completion, Disposition};
use crate::partition::Coord;
use crate::shared::{InFlight, Shared, State};

impl Shared {
    /// A task's final outcome from the engine.
    pub(crate) fn complete(&self, result: TaskResult) {
        let mut done = Vec::new();
        {
            let mut st = self.lock();
            let Some(InFlight {
                coord,
                message,
                key,
            }) = st.tasks.remove(&result.id)
            else {
                return;
            };
            // Its final outcome: the next record of its key may go.
            if let Some(k) = &key {
                self.release_key(&mut st, k);
            }
            if let Some(p) = st.current(&coord) {
                p.handles.remove(&coord.offset);
            }
            let failure = |reason: &'static str, error: String| Failure {
                reason,
                error,
                attempts: result.attempts,
            };
            let failed = match &result.outcome {
                Outcome::Succeeded(_) => None,
                Outcome::Failed(e) if e.kind() == ErrorKind::Discard => None,
                Outcome::Cancelled => None,
                Outcome::Failed(e) => Some(failure("failed", e.message().to_string())),
                Outcome::TimedOut => Some(failure("timed_out", "the attempt timed out".into())),
                Outcome::Panicked(m) => Some(failure("panicked", m.clone())),
            };
            let owned = st.current(&coord).is_some_and(|p| !p.revoking);
            match (failed, &result.outcome) {
                (Some(f), _) if owned => self.dead_letter(&mut st, coord, message, f, &mut done),
                (Some(_), _) | (None, Outcome::Cancelled) => self.finish(
                    &mut st,
                    &coord,
                    message,
                    Disposition::Cancelled,
                    result.attempts,
                    None,
                    &mut done,
                ),
                (None, Outcome::Failed(_)) => self.finish(
                    &mut st,
                    &coord,
                    message,
                    Disposition::Discarded,
                    result.attempts,
                    None,
                    &mut done,
                ),
                (None, _) => self.finish(
                    &mut st,
                    &coord,
                    message,
                    Disposition::Succeeded,
                    result.attempts,
                    None,
                    &mut done,
                ),
            }
            self.refill(&mut st, &mut done);
        }
        self.changed.notify_all();
        self.observe(done);
    }

    /// Frees a message's in-flight slot and, unless it was cancelled, marks its
    /// offset finished.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finish(
        &self,
        st: &mut State,
        coord: &Coord,
        message: Message,
        disposition: Disposition,
        attempts: u32,
        error: Option<String>,
        done: &mut Vec<Completion>,
    ) {
        st.in_flight = st.in_flight.saturating_sub(1);
        let counters = &mut st.counters;
        match disposition {
            Disposition::Succeeded => counters.succeeded += 1,
            Disposition::Discarded => counters.discarded += 1,
            Disposition::DeadLettered => counters.dead_lettered += 1,
            Disposition::Cancelled => counters.cancelled += 1,
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
        st: &mut State,
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
            self.refill(&mut st, &mut done);
        }
        self.changed.notify_all();
        self.observe(done);
    }

    /// A dead-letter write failed: the slot is freed but the offset stays
    /// unfinished, so nothing at or above it is committed and the message is
    /// delivered again after a restart or rebalance.
    pub(crate) fn dead_letter_failed(&self, st: &mut State, ticket: Ticket, error: &str) {
        let c = &ticket.coord;
        tracing::error!(topic = %c.topic, partition = c.partition, offset = c.offset, %error, "dead-letter write failed; the offset stays uncommitted");
        st.counters.dead_letter_errors += 1;
        st.in_flight = st.in_flight.saturating_sub(1);
        if let Some(p) = st.current(c) {
            p.in_flight = p.in_flight.saturating_sub(1);
        }
    }
}
