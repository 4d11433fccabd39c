//! The consumer's shared state and the rules that change it on the way in:
//! taking a record and handing records to the runner as it asks for them.
//! Holding, pausing at the limit and resuming are in `flow.rs`; what happens
//! on the way out in `outcome.rs`; commits and rebalances in `rebalance.rs`.
//!
//! Three kinds of thread touch this state, each under one mutex: the polling
//! thread (records, rebalances, commits), the runner's fetcher and settler
//! (records out, outcomes in) and the dead-letter producer's thread (write
//! acknowledgements). Resuming is event-driven: whoever makes room resumes
//! the partitions itself (librdkafka's pause/resume may be called from any
//! thread), so there is no pause interval and no sleep.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::TopicPartitionList;

use conveyor::events::{Event, SourceEvent};
use conveyor::source::{CallbackQueue, Control, RunnerHandle};
use conveyor::TaskId;

use crate::config::ConsumerConfig;
use crate::context::Ctx;
use crate::dead_letter::DeadLetterWriter;
use crate::keys::{Item, KeyGate};
use crate::message::Message;
use crate::metrics::{Completion, ConsumerMetrics, Counters, PartitionMetrics};
use crate::partition::{Coord, Partition};

/// Called with every finished message, on a callback thread of its own.
pub(crate) type Observer = Box<dyn FnMut(Completion) + Send>;

/// A record handed to the runner: its coordinates, the record, and the
/// ordering key it holds until its final outcome.
pub(crate) struct Record {
    /// The task the record runs as.
    pub(crate) id: TaskId,
    pub(crate) coord: Coord,
    pub(crate) message: Message,
    pub(crate) key: Option<Arc<str>>,
}

/// Everything the three threads share, behind [`ConsumerState::state`].
pub(crate) struct Flow {
    pub(crate) partitions: Vec<Partition>,
    /// Records handed to the runner and not finished (running, retrying, or
    /// being dead-lettered).
    pub(crate) in_flight: usize,
    pub(crate) paused: bool,
    /// The polling thread holds: the read-ahead is full, nothing is taken,
    /// the partitions are not paused (see `flow.rs`).
    pub(crate) holding: bool,
    /// Read-ahead: records taken while every slot was busy, in order.
    pub(crate) waiting: VecDeque<Item>,
    /// Records whose key was freed, next in line for a slot (key reserved).
    pub(crate) ready: VecDeque<(Arc<str>, Item)>,
    /// Records waiting for their busy key.
    pub(crate) gate: KeyGate,
    pub(crate) next_epoch: u64,
    pub(crate) counters: Counters,
    pub(crate) stopping: bool,
}

impl Flow {
    /// Records taken ahead of the engine: read-ahead, ready and key-held.
    pub(crate) fn ahead(&self) -> usize {
        self.waiting.len() + self.ready.len() + self.gate.held()
    }

    /// Records taken ahead that the runner could start now (there is room
    /// in flight), but has not fetched yet.
    pub(crate) fn startable(&self, max_in_flight: usize) -> usize {
        let room = max_in_flight.saturating_sub(self.in_flight);
        (self.waiting.len() + self.ready.len()).min(room)
    }

    /// Records taken ahead that cannot start now: beyond the in-flight room,
    /// or behind a busy key. The read-ahead limit counts these: a record the
    /// runner is about to fetch is not read ahead.
    pub(crate) fn backlog(&self, max_in_flight: usize) -> usize {
        self.ahead() - self.startable(max_in_flight)
    }

    /// True when every in-flight place is taken or about to be.
    pub(crate) fn no_room(&self, max_in_flight: usize) -> bool {
        self.in_flight + self.startable(max_in_flight) >= max_in_flight
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
pub(crate) struct ConsumerState {
    pub(crate) config: ConsumerConfig,
    /// Prefix of this consumer's engine ordering keys.
    pub(crate) scope: String,
    pub(crate) state: Mutex<Flow>,
    /// Notified whenever a message finishes (revoke and shutdown wait on it,
    /// and the polling thread while it holds).
    pub(crate) changed: Condvar,
    pub(crate) consumer: OnceLock<Weak<BaseConsumer<Ctx>>>,
    pub(crate) dead_letters: DeadLetterWriter,
    pub(crate) observer: Option<CallbackQueue<Completion>>,
    /// Signalled when the runner may find records: new ones, a freed key,
    /// room under the in-flight limit.
    pub(crate) work: tokio::sync::Notify,
    /// Cancels running tasks of revoked partitions.
    pub(crate) control: OnceLock<Control>,
    /// The runner's counts, once it runs.
    pub(crate) runner: OnceLock<RunnerHandle>,
    /// The handler every record runs.
    pub(crate) handler: Arc<str>,
    pub(crate) me: Weak<ConsumerState>,
}

impl ConsumerState {
    pub(crate) fn new(
        config: ConsumerConfig,
        dead_letters: DeadLetterWriter,
        observer: Option<CallbackQueue<Completion>>,
        handler: Arc<str>,
    ) -> Arc<Self> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Arc::new_cyclic(|me| ConsumerState {
            config,
            scope: format!("kafka#{n}:"),
            state: Mutex::new(Flow {
                partitions: Vec::new(),
                in_flight: 0,
                paused: false,
                holding: false,
                waiting: VecDeque::new(),
                ready: VecDeque::new(),
                gate: KeyGate::default(),
                next_epoch: 1,
                counters: Counters::default(),
                stopping: false,
            }),
            changed: Condvar::new(),
            consumer: OnceLock::new(),
            dead_letters,
            observer,
            work: tokio::sync::Notify::new(),
            control: OnceLock::new(),
            runner: OnceLock::new(),
            handler,
            me: me.clone(),
        })
    }

    /// Lets other threads pause and resume the consumer.
    pub(crate) fn attach(&self, consumer: &Arc<BaseConsumer<Ctx>>) {
        let _ = self.consumer.set(Arc::downgrade(consumer));
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Flow> {
        self.state.lock()
    }

    /// Emits a source event on the runner's bus.
    pub(crate) fn emit(&self, make: impl FnOnce(std::time::SystemTime) -> SourceEvent) {
        if let Some(control) = self.control.get() {
            control.emit(|| Event::Source(make(std::time::SystemTime::now())));
        }
    }

    /// Gives finished messages to the `on_complete` callback, never waiting
    /// for it (one that falls far behind misses some, logged).
    pub(crate) fn observe(&self, done: Vec<Completion>) {
        if let Some(q) = &self.observer {
            for c in done {
                if !q.offer(c) {
                    tracing::warn!(
                        "on_complete is falling behind: a finished message was not given to it"
                    );
                }
            }
        }
    }

    // ---- the polling thread ----

    /// Messages from the client: record them and hold them for the runner,
    /// in order. Returns how many more may be taken before the read-ahead is
    /// full (0: full; the polling thread then holds, see `flow.rs`).
    pub(crate) fn take(&self, batch: &[BorrowedMessage<'_>]) -> usize {
        let room = {
            let mut st = self.lock();
            if st.stopping {
                return 0;
            }
            for m in batch {
                self.take_one(&mut st, m);
            }
            if st.paused {
                // Paused partitions deliver nothing; whatever is still
                // buffered is taken one message at a time.
                1
            } else {
                let room = self.room_left(&st);
                if room == 0 && !st.holding {
                    st.holding = true;
                    st.counters.holds += 1;
                }
                room
            }
        };
        self.work.notify_one();
        room
    }

    fn take_one(&self, st: &mut Flow, m: &BorrowedMessage<'_>) {
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
    }

    /// The engine ordering key of a record, if its mode gives it one.
    fn key_of(&self, coord: &Coord, message: &Message) -> Option<Arc<str>> {
        self.config
            .ordering
            .task_key(&self.scope, &coord.topic, coord.partition, message.key())
            .map(Arc::from)
    }

    /// A message of `key` reached its final outcome: the key's next record (if
    /// any) is next in line for a slot.
    pub(crate) fn release_key(&self, st: &mut Flow, key: &Arc<str>) {
        if st.gate.is_busy(key) {
            if let Some(next) = st.gate.release(key) {
                st.ready.push_back((key.clone(), next));
            }
        }
    }

    /// Takes up to `max` records for the runner, within the in-flight limit:
    /// first those whose key was freed, then the read-ahead in order (a record
    /// whose key is busy goes behind its key without taking a slot). Each is
    /// counted in flight, its key reserved. Then resumes if there is room.
    pub(crate) fn take_ready(&self, max: usize) -> Vec<Arc<Record>> {
        let mut out = Vec::new();
        let mut st = self.lock();
        let limit = self.config.max_in_flight;
        while !st.stopping && out.len() < max && st.in_flight < limit {
            let (item, key) = match st.ready.pop_front() {
                Some((key, item)) => {
                    if st.current(&item.0).is_none_or(|p| p.revoking) {
                        st.gate.forget(&key);
                        continue;
                    }
                    (item, Some(key))
                }
                None => {
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
                    if let Some(k) = &key {
                        st.gate.reserve(k);
                    }
                    (item, key)
                }
            };
            let (coord, message) = item;
            let id = TaskId::next();
            st.in_flight += 1;
            if let Some(p) = st.current(&coord) {
                p.in_flight += 1;
                p.tasks.insert(coord.offset, id);
            }
            out.push(Arc::new(Record {
                id,
                coord,
                message,
                key,
            }));
        }
        self.resume_if_room(&mut st);
        out
    }

    /// True when the runner could take a record now.
    pub(crate) fn has_ready(&self) -> bool {
        let st = self.lock();
        !st.stopping
            && st.in_flight < self.config.max_in_flight
            && (!st.ready.is_empty() || !st.waiting.is_empty())
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

    /// Cancels every task still running (they are not committed) and
    /// waits, at most `flush`, for pending dead-letter writes.
    pub(crate) fn end(&self, flush: Duration) {
        let ids: Vec<TaskId> = {
            let mut st = self.lock();
            st.partitions
                .iter_mut()
                .flat_map(|p| p.tasks.drain().map(|(_, id)| id))
                .collect()
        };
        self.cancel_tasks(ids);
        self.dead_letters.flush(flush);
    }

    /// Cancels running tasks through the runner.
    pub(crate) fn cancel_tasks(&self, ids: Vec<TaskId>) {
        if let Some(control) = self.control.get() {
            for id in ids {
                control.cancel(id);
            }
        }
    }

    /// A snapshot of the metrics.
    pub(crate) fn metrics(&self) -> ConsumerMetrics {
        let st = self.lock();
        ConsumerMetrics {
            in_flight: st.in_flight,
            max_in_flight: self.config.max_in_flight,
            paused: st.paused,
            holding: st.holding,
            waiting: st.ahead(),
            counters: st.counters,
            runner: self
                .runner
                .get()
                .map(RunnerHandle::stats)
                .unwrap_or_default(),
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
