//! The consumer's shared state and the rules that change it: taking a message,
//! dispatching it to the engine, finishing it, dead-lettering it, pausing at
//! the limit and resuming when a slot frees.
//!
//! Three threads touch this state, each under one mutex: the polling thread
//! (messages, rebalances, commits), the job's result thread (outcomes) and the
//! dead-letter producer's thread (write acknowledgements). Resuming is
//! event-driven: the thread that frees a slot resumes the partitions itself
//! (librdkafka's pause/resume may be called from any thread), so there is no
//! pause interval and no sleep. A message is dispatched under the same lock
//! that records its task id, so its outcome can never arrive first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};

use conveyor::{ErrorKind, Outcome, TaskId, TaskOptions, TaskResult};

use crate::config::ConsumerConfig;
use crate::context::Ctx;
use crate::dead_letter::{DeadLetterWriter, Failure, Ticket};
use crate::message::Message;
use crate::metrics::{Completion, ConsumerMetrics, Counters, Disposition, PartitionMetrics};
use crate::partition::{Coord, Partition};

/// What dispatching one message did.
pub(crate) enum Dispatched {
    /// It runs in the engine as this task.
    Task(conveyor::TaskHandle),
    /// The decoder refused it, with this error.
    Undecodable(String),
    /// The engine refused it (shutting down).
    Refused(String),
}

/// Decodes a message and submits it to the engine (type-erased over the
/// handler's params and output).
pub(crate) type Dispatch = Box<dyn Fn(&Message, TaskOptions) -> Dispatched + Send + Sync>;

/// Called with every finished message.
pub(crate) type Observer = Box<dyn Fn(&Completion) + Send + Sync>;

/// One message in the engine.
struct InFlight {
    coord: Coord,
    message: Message,
}

/// Everything the three threads share, behind [`Shared::state`].
pub(crate) struct State {
    pub(crate) partitions: Vec<Partition>,
    tasks: HashMap<TaskId, InFlight>,
    in_flight: usize,
    paused: bool,
    waiting: VecDeque<(Coord, Message)>,
    next_epoch: u64,
    pub(crate) counters: Counters,
    dispatch: Option<Dispatch>,
    stopping: bool,
}

impl State {
    fn partition(&mut self, topic: &str, partition: i32) -> Option<&mut Partition> {
        self.partitions.iter_mut().find(|p| p.is(topic, partition))
    }

    /// The partition of this coordinate, if it is still the same assignment.
    fn current(&mut self, c: &Coord) -> Option<&mut Partition> {
        self.partitions
            .iter_mut()
            .find(|p| p.epoch == c.epoch && p.is(&c.topic, c.partition))
    }

    /// The partitions that are not being revoked.
    fn active_list(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for p in self.partitions.iter().filter(|p| !p.revoking) {
            tpl.add_partition(&p.topic, p.partition);
        }
        tpl
    }
}

/// The consumer's shared state.
pub(crate) struct Shared {
    pub(crate) config: ConsumerConfig,
    /// Prefix of this consumer's engine ordering keys.
    scope: String,
    state: Mutex<State>,
    /// Notified whenever a message finishes (revoke and shutdown wait on it).
    changed: Condvar,
    consumer: OnceLock<Weak<BaseConsumer<Ctx>>>,
    dead_letters: DeadLetterWriter,
    observer: Option<Observer>,
    me: Weak<Shared>,
}

impl Shared {
    pub(crate) fn new(
        config: ConsumerConfig,
        dead_letters: DeadLetterWriter,
        observer: Option<Observer>,
    ) -> Arc<Self> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Arc::new_cyclic(|me| Shared {
            config,
            scope: format!("kafka#{n}:"),
            state: Mutex::new(State {
                partitions: Vec::new(),
                tasks: HashMap::new(),
                in_flight: 0,
                paused: false,
                waiting: VecDeque::new(),
                next_epoch: 1,
                counters: Counters::default(),
                dispatch: None,
                stopping: false,
            }),
            changed: Condvar::new(),
            consumer: OnceLock::new(),
            dead_letters,
            observer,
            me: me.clone(),
        })
    }

    /// Connects the consumer to the engine: from now on messages are dispatched.
    pub(crate) fn set_dispatch(&self, dispatch: Dispatch) {
        self.lock().dispatch = Some(dispatch);
    }

    /// Lets other threads pause and resume the consumer.
    pub(crate) fn attach(&self, consumer: &Arc<BaseConsumer<Ctx>>) {
        let _ = self.consumer.set(Arc::downgrade(consumer));
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    fn observe(&self, done: Vec<Completion>) {
        if let Some(f) = &self.observer {
            for c in &done {
                f(c);
            }
        }
    }

    // ---- the polling thread ----

    /// A message from the client: record it, dispatch it or hold it at the limit.
    pub(crate) fn take(&self, consumer: &BaseConsumer<Ctx>, m: &BorrowedMessage<'_>) {
        let mut done = Vec::new();
        {
            let mut st = self.lock();
            if st.stopping {
                return;
            }
            let Some(p) = st.partition(m.topic(), m.partition()) else {
                tracing::debug!(
                    topic = m.topic(),
                    partition = m.partition(),
                    "message of a partition not assigned here; ignored"
                );
                return;
            };
            if p.revoking || !p.offsets.taken(m.offset()) {
                return;
            }
            let coord = Coord {
                topic: p.topic.clone(),
                partition: p.partition,
                epoch: p.epoch,
                offset: m.offset(),
            };
            let message = Message::copy_from(m, p.topic.clone());
            st.counters.received += 1;
            if st.in_flight >= self.config.max_in_flight {
                st.waiting.push_back((coord, message));
            } else {
                self.dispatch(&mut st, coord, message, &mut done);
            }
            self.pause_if_full(&mut st, consumer);
        }
        self.observe(done);
    }

    /// Hands one message to the engine (or to the dead-letter topic when it
    /// does not decode). Counts it in flight.
    fn dispatch(&self, st: &mut State, coord: Coord, message: Message, done: &mut Vec<Completion>) {
        let key = self.config.ordering.task_key(
            &self.scope,
            &coord.topic,
            coord.partition,
            message.key(),
        );
        let opts = match key {
            Some(k) => TaskOptions::new().key(k),
            None => TaskOptions::new(),
        };
        let Some(dispatch) = st.dispatch.as_ref() else {
            return;
        };
        let result = dispatch(&message, opts);
        match result {
            Dispatched::Task(handle) => {
                st.in_flight += 1;
                if let Some(p) = st.current(&coord) {
                    p.in_flight += 1;
                    p.handles.insert(coord.offset, handle.clone());
                }
                st.tasks.insert(handle.id(), InFlight { coord, message });
            }
            Dispatched::Undecodable(error) => {
                st.in_flight += 1;
                if let Some(p) = st.current(&coord) {
                    p.in_flight += 1;
                }
                st.counters.undecodable += 1;
                let failure = Failure {
                    reason: "undecodable",
                    error,
                    attempts: 0,
                };
                self.dead_letter(st, coord, message, failure, done);
            }
            Dispatched::Refused(error) => {
                // Left unfinished: never committed, delivered again later.
                tracing::warn!(%error, topic = %coord.topic, partition = coord.partition, offset = coord.offset, "the engine refused a message");
            }
        }
    }

    fn pause_if_full(&self, st: &mut State, consumer: &BaseConsumer<Ctx>) {
        if st.paused || st.in_flight + st.waiting.len() < self.config.max_in_flight {
            return;
        }
        match consumer.pause(&st.active_list()) {
            Ok(()) => {
                st.paused = true;
                st.counters.pauses += 1;
            }
            Err(e) => tracing::warn!(error = %e, "pausing partitions failed"),
        }
    }

    /// Resumes the partitions when there is room again (any thread).
    fn resume_if_room(&self, st: &mut State) {
        if !st.paused || st.stopping || st.in_flight + st.waiting.len() >= self.config.max_in_flight
        {
            return;
        }
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            return;
        };
        match consumer.resume(&st.active_list()) {
            Ok(()) => st.paused = false,
            Err(e) => tracing::warn!(error = %e, "resuming partitions failed"),
        }
    }

    /// Dispatches held messages while there is room, then resumes if possible.
    fn refill(&self, st: &mut State, done: &mut Vec<Completion>) {
        while st.in_flight < self.config.max_in_flight && !st.stopping {
            let Some((coord, message)) = st.waiting.pop_front() else {
                break;
            };
            if st.current(&coord).is_some_and(|p| !p.revoking) {
                self.dispatch(st, coord, message, done);
            }
        }
        self.resume_if_room(st);
    }

    // ---- outcomes (the job's result thread) ----

    /// A task's final outcome from the engine.
    pub(crate) fn complete(&self, result: TaskResult) {
        let mut done = Vec::new();
        {
            let mut st = self.lock();
            let Some(InFlight { coord, message }) = st.tasks.remove(&result.id) else {
                return;
            };
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
    fn finish(
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
    fn dead_letter(
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
    fn dead_letter_failed(&self, st: &mut State, ticket: Ticket, error: &str) {
        let c = &ticket.coord;
        tracing::error!(topic = %c.topic, partition = c.partition, offset = c.offset, %error, "dead-letter write failed; the offset stays uncommitted");
        st.counters.dead_letter_errors += 1;
        st.in_flight = st.in_flight.saturating_sub(1);
        if let Some(p) = st.current(c) {
            p.in_flight = p.in_flight.saturating_sub(1);
        }
    }

    // ---- commits ----

    /// Commits the safe offset of every partition (or of `only`) that moved.
    pub(crate) fn commit(
        &self,
        consumer: &BaseConsumer<Ctx>,
        mode: CommitMode,
        only: Option<&[(Arc<str>, i32)]>,
    ) {
        let mut tpl = TopicPartitionList::new();
        let mut list = Vec::new();
        {
            let mut st = self.lock();
            for p in st.partitions.iter_mut() {
                if only.is_some_and(|o| !o.iter().any(|(t, n)| p.is(t, *n))) {
                    continue;
                }
                if let Some(offset) = p.offsets.take_commit() {
                    if tpl
                        .add_partition_offset(&p.topic, p.partition, Offset::Offset(offset))
                        .is_ok()
                    {
                        list.push((p.topic.clone(), p.partition, p.epoch, offset));
                    }
                }
            }
        }
        if list.is_empty() {
            return;
        }
        if let Err(e) = consumer.commit(&tpl, mode) {
            tracing::warn!(error = %e, "offset commit failed; retried next round");
            let mut st = self.lock();
            for (topic, partition, epoch, offset) in list {
                if let Some(p) = st.partition(&topic, partition).filter(|p| p.epoch == epoch) {
                    p.offsets.commit_failed(offset);
                }
            }
        }
    }

    /// The broker answered a commit.
    pub(crate) fn committed(&self, ok: bool, tpl: &TopicPartitionList) {
        let mut st = self.lock();
        if ok {
            st.counters.commits += 1;
            return;
        }
        for e in tpl.elements() {
            if let (Some(p), Offset::Offset(o)) =
                (st.partition(e.topic(), e.partition()), e.offset())
            {
                p.offsets.commit_failed(o);
            }
        }
    }

    // ---- rebalances (the polling thread, inside poll) ----

    /// New partitions: track them; pause them too while at the limit.
    pub(crate) fn assigned(&self, consumer: &BaseConsumer<Ctx>, tpl: &TopicPartitionList) {
        let mut st = self.lock();
        let mut fresh = TopicPartitionList::new();
        for e in tpl.elements() {
            if st.partition(e.topic(), e.partition()).is_some() {
                continue;
            }
            let epoch = st.next_epoch;
            st.next_epoch += 1;
            st.partitions
                .push(Partition::new(Arc::from(e.topic()), e.partition(), epoch));
            fresh.add_partition(e.topic(), e.partition());
        }
        tracing::info!(partitions = ?fresh.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect::<Vec<_>>(), "assigned");
        let r = if st.paused || st.stopping {
            consumer.pause(&fresh)
        } else {
            consumer.resume(&fresh)
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "pause/resume of new partitions failed");
        }
    }

    /// Partitions being taken away: stop dispatching them, wait (bounded) for
    /// their in-flight messages, commit what is safe, then forget them; work of
    /// theirs still running can no longer commit anything.
    pub(crate) fn revoked(&self, consumer: &BaseConsumer<Ctx>, tpl: &TopicPartitionList) {
        let list: Vec<(Arc<str>, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (Arc::from(e.topic()), e.partition()))
            .collect();
        let deadline = Instant::now() + self.config.revoke_timeout;
        {
            let mut st = self.lock();
            for (t, n) in &list {
                if let Some(p) = st.partition(t, *n) {
                    p.revoking = true;
                }
            }
            st.waiting
                .retain(|(c, _)| !list.iter().any(|(t, n)| *t == c.topic && *n == c.partition));
            loop {
                let busy: usize = st
                    .partitions
                    .iter()
                    .filter(|p| p.revoking)
                    .map(|p| p.in_flight)
                    .sum();
                if busy == 0 || self.changed.wait_until(&mut st, deadline).timed_out() {
                    break;
                }
            }
        }
        self.commit(consumer, CommitMode::Sync, Some(&list));
        let cancelled: Vec<conveyor::TaskHandle> = {
            let mut st = self.lock();
            let (gone, kept): (Vec<Partition>, Vec<Partition>) = std::mem::take(&mut st.partitions)
                .into_iter()
                .partition(|p| list.iter().any(|(t, n)| p.is(t, *n)));
            st.partitions = kept;
            gone.into_iter()
                .flat_map(|p| p.handles.into_values())
                .collect()
        };
        if !cancelled.is_empty() {
            tracing::warn!(count = cancelled.len(), "revoked partitions still had work in flight past the revoke timeout; cancelled (it runs again on the new owner)");
        }
        for h in cancelled {
            h.cancel();
        }
        tracing::info!(partitions = ?list, "revoked");
    }

    /// High watermarks from the client's statistics.
    pub(crate) fn watermarks(&self, stats: &rdkafka::Statistics) {
        let mut st = self.lock();
        for p in st.partitions.iter_mut() {
            if let Some(s) = stats
                .topics
                .get(&*p.topic)
                .and_then(|t| t.partitions.get(&p.partition))
            {
                if s.hi_offset >= 0 {
                    p.high_watermark = Some(s.hi_offset);
                }
            }
        }
    }

    // ---- shutdown ----

    /// Stops taking and dispatching messages; held ones stay uncommitted.
    pub(crate) fn begin_stop(&self, consumer: &BaseConsumer<Ctx>) {
        let mut st = self.lock();
        st.stopping = true;
        st.waiting.clear();
        if !st.paused && consumer.pause(&st.active_list()).is_ok() {
            st.paused = true;
        }
    }

    /// Messages in flight now.
    pub(crate) fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Waits until nothing is in flight or `timeout` passes; true when idle.
    pub(crate) fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        while st.in_flight > 0 {
            if self.changed.wait_until(&mut st, deadline).timed_out() {
                return st.in_flight == 0;
            }
        }
        true
    }

    /// Cancels every task still running and lets the engine job close.
    pub(crate) fn end(&self, flush: Duration) {
        let handles: Vec<conveyor::TaskHandle> = {
            let mut st = self.lock();
            st.dispatch = None;
            st.partitions
                .iter_mut()
                .flat_map(|p| p.handles.drain().map(|(_, h)| h))
                .collect()
        };
        for h in handles {
            h.cancel();
        }
        self.dead_letters.flush(flush);
    }

    /// A snapshot of the metrics.
    pub(crate) fn metrics(&self) -> ConsumerMetrics {
        let st = self.lock();
        ConsumerMetrics {
            in_flight: st.in_flight,
            max_in_flight: self.config.max_in_flight,
            paused: st.paused,
            waiting: st.waiting.len(),
            counters: st.counters,
            partitions: st
                .partitions
                .iter()
                .map(|p| PartitionMetrics {
                    topic: p.topic.to_string(),
                    partition: p.partition,
                    in_flight: p.in_flight,
                    unfinished: p.offsets.unfinished(),
                    committed: p.offsets.committed(),
                    next_offset: p.offsets.next(),
                    high_watermark: p.high_watermark,
                    lag: p
                        .high_watermark
                        .zip(p.offsets.committed())
                        .map(|(h, c)| (h - c).max(0)),
                })
                .collect(),
        }
    }
}
