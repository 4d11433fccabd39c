//! The consumer's shared state and the rules that change it on the way in:
//! taking a message, dispatching it to the engine, pausing at the limit and
//! resuming when a slot frees. What happens on the way out is in `outcome.rs`;
//! commits and rebalances in `rebalance.rs`.
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
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::TopicPartitionList;

use conveyor::{TaskId, TaskOptions};

use crate::config::ConsumerConfig;
use crate::context::Ctx;
use crate::dead_letter::{DeadLetterWriter, Failure};
use crate::keys::{Item, KeyGate};
use crate::message::Message;
use crate::metrics::{Completion, ConsumerMetrics, Counters, PartitionMetrics};
use crate::partition::{Coord, Partition};

/// What dispatching one message did.
pub(crate) enum Dispatched {
    /// It runs in the engine as this task.
    Task(conveyor::TaskHandle),
    /// The decoder refused it, with this error.
    Undecodable(String),
    /// The engine's queue had no room this instant (a finished task's place is
    /// handed back a moment after its outcome): try again shortly.
    Busy,
    /// The engine refused it (shutting down).
    Refused(String),
}

/// Decodes a message and submits it to the engine (type-erased over the
/// handler's params and output).
pub(crate) type Dispatch = Box<dyn Fn(&Message, TaskOptions) -> Dispatched + Send + Sync>;

/// Called with every finished message.
pub(crate) type Observer = Box<dyn Fn(&Completion) + Send + Sync>;

/// One message in the engine.
pub(crate) struct InFlight {
    pub(crate) coord: Coord,
    pub(crate) message: Message,
    /// The ordering key it holds, released at its final outcome.
    pub(crate) key: Option<Arc<str>>,
}

/// Everything the three threads share, behind [`Shared::state`].
pub(crate) struct State {
    pub(crate) partitions: Vec<Partition>,
    pub(crate) tasks: HashMap<TaskId, InFlight>,
    pub(crate) in_flight: usize,
    pub(crate) paused: bool,
    /// Read-ahead: records taken while every slot was busy, in order.
    pub(crate) waiting: VecDeque<Item>,
    /// Records whose key was freed, next in line for a slot (key reserved).
    pub(crate) ready: VecDeque<(Arc<str>, Item)>,
    /// Records waiting for their busy key.
    pub(crate) gate: KeyGate,
    pub(crate) next_epoch: u64,
    pub(crate) counters: Counters,
    pub(crate) dispatch: Option<Dispatch>,
    pub(crate) stopping: bool,
}

impl State {
    /// Records taken ahead of the engine: read-ahead, ready and key-held.
    pub(crate) fn ahead(&self) -> usize {
        self.waiting.len() + self.ready.len() + self.gate.held()
    }

    pub(crate) fn partition(&mut self, topic: &str, partition: i32) -> Option<&mut Partition> {
        self.partitions.iter_mut().find(|p| p.is(topic, partition))
    }

    /// The partition of this coordinate, if it is still the same assignment.
    pub(crate) fn current(&mut self, c: &Coord) -> Option<&mut Partition> {
        self.partitions
            .iter_mut()
            .find(|p| p.epoch == c.epoch && p.is(&c.topic, c.partition))
    }

    /// The partitions that are not being revoked.
    pub(crate) fn active_list(&self) -> TopicPartitionList {
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
    pub(crate) scope: String,
    pub(crate) state: Mutex<State>,
    /// Notified whenever a message finishes (revoke and shutdown wait on it).
    pub(crate) changed: Condvar,
    pub(crate) consumer: OnceLock<Weak<BaseConsumer<Ctx>>>,
    pub(crate) dead_letters: DeadLetterWriter,
    pub(crate) observer: Option<Observer>,
    pub(crate) me: Weak<Shared>,
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
                ready: VecDeque::new(),
                gate: KeyGate::default(),
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

    pub(crate) fn observe(&self, done: Vec<Completion>) {
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
            // Behind whatever is already held, so order is kept.
            st.waiting.push_back((coord, message));
            self.refill(&mut st, &mut done);
            self.pause_if_full(&mut st, consumer);
        }
        self.observe(done);
    }

    /// The engine ordering key of a record, if its mode gives it one.
    fn key_of(&self, coord: &Coord, message: &Message) -> Option<Arc<str>> {
        self.config
            .ordering
            .task_key(&self.scope, &coord.topic, coord.partition, message.key())
            .map(Arc::from)
    }

    /// Hands one record to the engine (or to the dead-letter topic when it does
    /// not decode) and counts it in flight; gives it back when the engine has
    /// no room this instant. A `key` is reserved while its message runs.
    // The record comes back only in the rare busy case; boxing it would cost
    // an allocation per record instead.
    #[allow(clippy::result_large_err)]
    pub(crate) fn submit(
        &self,
        st: &mut State,
        (coord, message): Item,
        key: Option<Arc<str>>,
        done: &mut Vec<Completion>,
    ) -> Result<(), Item> {
        let opts = match &key {
            Some(k) => TaskOptions::new().key(k.clone()),
            None => TaskOptions::new(),
        };
        let Some(dispatch) = st.dispatch.as_ref() else {
            return Ok(());
        };
        let result = dispatch(&message, opts);
        match result {
            Dispatched::Task(handle) => {
                st.in_flight += 1;
                if let Some(p) = st.current(&coord) {
                    p.in_flight += 1;
                    p.handles.insert(coord.offset, handle.clone());
                }
                if let Some(k) = &key {
                    st.gate.reserve(k);
                }
                let task = InFlight {
                    coord,
                    message,
                    key,
                };
                st.tasks.insert(handle.id(), task);
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
                if let Some(k) = key {
                    self.release_key(st, &k);
                }
            }
            Dispatched::Busy => return Err((coord, message)),
            Dispatched::Refused(error) => {
                // Left unfinished: never committed, delivered again later.
                tracing::warn!(%error, topic = %coord.topic, partition = coord.partition, offset = coord.offset, "the engine refused a message");
                if let Some(k) = key {
                    self.release_key(st, &k);
                }
            }
        }
        Ok(())
    }

    /// A message of `key` reached its final outcome: the key's next record (if
    /// any) is next in line for a slot.
    pub(crate) fn release_key(&self, st: &mut State, key: &Arc<str>) {
        if st.gate.is_busy(key) {
            if let Some(next) = st.gate.release(key) {
                st.ready.push_back((key.clone(), next));
            }
        }
    }

    pub(crate) fn pause_if_full(&self, st: &mut State, consumer: &BaseConsumer<Ctx>) {
        let ahead = st.ahead();
        let full = if self.config.read_ahead == 0 {
            st.in_flight >= self.config.max_in_flight || ahead > 0
        } else {
            ahead >= self.config.read_ahead
        };
        if st.paused || !full {
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
    pub(crate) fn resume_if_room(&self, st: &mut State) {
        // Hysteresis: with a read-ahead, resume once it is half empty (each
        // resume refetches what the pause discarded, so not for every slot);
        // without one, as soon as an in-flight slot frees.
        let ahead = st.ahead();
        let room = if self.config.read_ahead == 0 {
            st.in_flight < self.config.max_in_flight && ahead == 0
        } else {
            ahead <= self.config.read_ahead / 2
        };
        if !st.paused || st.stopping || !room {
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

    /// Moves records on while there is room: first those whose key was freed,
    /// then the read-ahead in order (a record whose key is busy goes behind
    /// its key without taking a slot). Then resumes if possible.
    pub(crate) fn refill(&self, st: &mut State, done: &mut Vec<Completion>) {
        let max = self.config.max_in_flight;
        'fill: while !st.stopping {
            while st.in_flight < max {
                let Some((key, item)) = st.ready.pop_front() else {
                    break;
                };
                if st.current(&item.0).is_none_or(|p| p.revoking) {
                    st.gate.forget(&key);
                    continue;
                }
                if let Err(item) = self.submit(st, item, Some(key.clone()), done) {
                    st.ready.push_front((key, item));
                    break 'fill; // the engine is busy this instant
                }
            }
            let Some(item) = st.waiting.pop_front() else {
                break;
            };
            if st.current(&item.0).is_none_or(|p| p.revoking) {
                continue;
            }
            let key = self.key_of(&item.0, &item.1);
            if let Some(k) = key.as_ref().filter(|k| st.gate.is_busy(k)) {
                st.gate.hold(k, item);
                continue;
            }
            if st.in_flight >= max {
                st.waiting.push_front(item);
                break;
            }
            if let Err(item) = self.submit(st, item, key, done) {
                st.waiting.push_front(item);
                break;
            }
        }
        self.resume_if_room(st);
    }

    /// Dispatches held messages if there is room (the polling thread calls it
    /// every round, in case the engine was busy when the last slot freed).
    pub(crate) fn refill_now(&self) {
        let mut done = Vec::new();
        {
            let mut st = self.lock();
            if (st.waiting.is_empty() && st.ready.is_empty())
                || st.in_flight >= self.config.max_in_flight
            {
                return;
            }
            self.refill(&mut st, &mut done);
        }
        self.observe(done);
    }

    // ---- shutdown ----

    /// Stops taking and dispatching messages; held ones stay uncommitted.
    pub(crate) fn begin_stop(&self, consumer: &BaseConsumer<Ctx>) {
        let mut st = self.lock();
        st.stopping = true;
        st.waiting.clear();
        st.ready.clear();
        st.gate.clear();
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
            waiting: st.ahead(),
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
