//! The dispatcher: where every limit except the worker count is applied.
//!
//! A single task owns every limit's state — per-lane and per-handler in-flight
//! counts, rate limiters, per-key queues and timers — so no lock guards it.
//! Producers, finished attempts and cancellations reach it as [`Event`]s,
//! drained in batches. A task that cannot start yet waits in a queue here and
//! holds no worker and no thread; the moment a slot, key or permit frees up, the
//! next task is handed to the workers' ready queue (the worker count itself is
//! the global limit). Plain io tasks with no limit to wait for skip the
//! dispatcher entirely (see `worker`).
//!
//! Order of checks for a task: its delay (timer), its key (a busy key queues the
//! task behind it, in submission order), then — per handler, round-robin across
//! handlers so one busy handler cannot starve another — the lane's limit, the
//! handler's limit, the handler's rate and the pool's rate.

use std::cmp::{Ordering, Reverse};
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use conveyor_core::Lane;

use crate::engine::attempt::finish_unstarted;
use crate::engine::envelope::{Envelope, Event, Ready};
use crate::engine::instance::Engine;
use crate::engine::rate::RateLimiter;
use crate::engine::work::HandlerCore;

/// Limits a dispatcher enforces.
pub(crate) struct DispatchLimits {
    pub(crate) lanes: [usize; 3],
    pub(crate) rate: Option<RateLimiter>,
}

struct HandlerState {
    lane: Lane,
    limit: usize,
    in_flight: usize,
    rate: Option<RateLimiter>,
    pending: VecDeque<Box<Envelope>>,
    in_ring: bool,
    parked: bool,
    rate_wait: bool,
}

enum TimerItem {
    Task(Box<Envelope>),
    HandlerRate(usize),
    PoolRate,
}

struct Timer {
    at: Instant,
    seq: u64,
    item: TimerItem,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timer {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Running,
    /// Graceful shutdown: nothing new starts; running attempts finish.
    Draining,
    /// Immediate shutdown: everything is cancelled; exit once nothing runs.
    Stopping,
}

pub(crate) struct Dispatcher {
    rx: mpsc::UnboundedReceiver<Event>,
    pool: Arc<Engine>,
    limits: DispatchLimits,
    in_flight: usize,
    lane_in_flight: [usize; 3],
    handlers: Vec<HandlerState>,
    slots: HashMap<u64, usize>,
    ring: VecDeque<usize>,
    parked: Vec<usize>,
    keys: HashMap<Arc<str>, VecDeque<Box<Envelope>>>,
    timers: BinaryHeap<Reverse<Timer>>,
    seq: u64,
    pool_rate_wait: bool,
    mode: Mode,
    not_started: u64,
    sweep: bool,
    unpark: bool,
    /// Tasks received and waiting for their first start (holding a permit).
    queued: i64,
}

impl Dispatcher {
    pub(crate) fn new(
        rx: mpsc::UnboundedReceiver<Event>,
        pool: Arc<Engine>,
        limits: DispatchLimits,
    ) -> Self {
        Self {
            rx,
            pool,
            limits,
            in_flight: 0,
            lane_in_flight: [0; 3],
            handlers: Vec::new(),
            slots: HashMap::new(),
            ring: VecDeque::new(),
            parked: Vec::new(),
            keys: HashMap::new(),
            timers: BinaryHeap::new(),
            seq: 0,
            pool_rate_wait: false,
            mode: Mode::Running,
            not_started: 0,
            sweep: false,
            unpark: false,
            queued: 0,
        }
    }

    /// Runs until the pool is stopped and nothing is in flight.
    pub(crate) async fn run(mut self) {
        let mut batch = Vec::with_capacity(512);
        let token = self.pool.token.clone();
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        let sleep = tokio::time::sleep_until(far);
        tokio::pin!(sleep);
        loop {
            let next_timer = self.timers.peek().map(|t| t.0.at);
            if let Some(at) = next_timer {
                if sleep.deadline() != at {
                    sleep.as_mut().reset(at);
                }
            }
            tokio::select! {
                biased;
                _ = token.cancelled(), if self.mode != Mode::Stopping => self.stop(),
                n = self.rx.recv_many(&mut batch, 512) => {
                    if n == 0 {
                        break;
                    }
                    for event in batch.drain(..) {
                        self.handle(event);
                    }
                }
                _ = &mut sleep, if next_timer.is_some() => {}
            }
            self.fire_timers();
            if self.sweep {
                self.sweep = false;
                self.sweep_unstartable();
            }
            if self.unpark {
                self.unpark = false;
                for h in std::mem::take(&mut self.parked) {
                    self.handlers[h].parked = false;
                    self.schedule(h);
                }
            }
            self.pump();
            self.pool.board.metrics.set_queued(self.queued);
            if self.in_flight == 0 && self.mode == Mode::Stopping {
                break;
            }
        }
        // Whatever is still in the channel never starts.
        self.rx.close();
        while let Ok(event) = self.rx.try_recv() {
            match event {
                Event::Submit(env) | Event::Retry { env, .. } => self.not_start(env),
                Event::Drain(reply) => {
                    let _ = reply.send(self.not_started);
                }
                Event::Released(_) | Event::Sweep => {}
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Submit(env) => {
                self.queued += 1;
                if self.mode != Mode::Running {
                    self.not_start(env);
                } else if env.not_before.is_some_and(|t| t > Instant::now()) {
                    let at = env.not_before.unwrap_or_else(Instant::now);
                    self.add_timer(at, TimerItem::Task(env));
                } else {
                    self.admit(env);
                }
            }
            Event::Released(r) => {
                self.release_slot(r.slot);
                if let Some(key) = r.key {
                    self.release_key(&key);
                }
            }
            Event::Retry { env, slot, at } => {
                if let Some(slot) = slot {
                    self.release_slot(slot);
                }
                if self.mode != Mode::Running {
                    self.not_start(env);
                } else {
                    self.add_timer(at, TimerItem::Task(env));
                }
            }
            Event::Sweep => self.sweep = true,
            Event::Drain(reply) => {
                if self.mode == Mode::Running {
                    self.mode = Mode::Draining;
                    self.cancel_waiting();
                }
                let _ = reply.send(self.not_started);
            }
        }
    }

    /// Immediate shutdown: everything waiting is cancelled; running attempts see
    /// the pool's token and end as cancelled.
    fn stop(&mut self) {
        self.mode = Mode::Stopping;
        self.cancel_waiting();
    }

    fn slot_of(&mut self, handler: &Arc<HandlerCore>) -> usize {
        if let Some(&slot) = self.slots.get(&handler.id) {
            return slot;
        }
        let cfg = &handler.config;
        // Submission rejects invalid rates, so this cannot fail in practice.
        let rate = cfg.rate.and_then(|r| RateLimiter::new(r).ok());
        let slot = self.handlers.len();
        self.handlers.push(HandlerState {
            lane: handler.lane,
            limit: cfg.concurrency.map_or(usize::MAX, |c| c as usize),
            in_flight: 0,
            rate,
            pending: VecDeque::new(),
            in_ring: false,
            parked: false,
            rate_wait: false,
        });
        self.slots.insert(handler.id, slot);
        slot
    }

    /// A task due to start: queue it behind its key, or make it ready.
    fn admit(&mut self, mut env: Box<Envelope>) {
        if !env.holds_key {
            if let Some(key) = env.key.clone() {
                match self.keys.entry(key) {
                    Entry::Occupied(mut waiting) => {
                        waiting.get_mut().push_back(env);
                        return;
                    }
                    Entry::Vacant(free) => {
                        free.insert(VecDeque::new());
                        env.holds_key = true;
                    }
                }
            }
        }
        let slot = self.slot_of(env.handler());
        self.handlers[slot].pending.push_back(env);
        self.schedule(slot);
    }

    /// Puts a handler with ready tasks on the round-robin ring.
    fn schedule(&mut self, h: usize) {
        let st = &mut self.handlers[h];
        if !st.in_ring && !st.parked && !st.rate_wait && !st.pending.is_empty() {
            st.in_ring = true;
            self.ring.push_back(h);
        }
    }

    fn release_slot(&mut self, slot: usize) {
        let st = &mut self.handlers[slot];
        st.in_flight -= 1;
        self.lane_in_flight[st.lane.index()] -= 1;
        self.in_flight -= 1;
        self.unpark = true;
    }

    fn release_key(&mut self, key: &Arc<str>) {
        let next = match self.keys.get_mut(key) {
            Some(waiting) => waiting.pop_front(),
            None => return,
        };
        match next {
            Some(mut env) => {
                env.holds_key = true;
                let slot = self.slot_of(env.handler());
                self.handlers[slot].pending.push_back(env);
                self.schedule(slot);
            }
            None => {
                self.keys.remove(key);
            }
        }
    }

    fn add_timer(&mut self, at: Instant, item: TimerItem) {
        self.seq += 1;
        self.timers.push(Reverse(Timer {
            at,
            seq: self.seq,
            item,
        }));
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while self.timers.peek().is_some_and(|t| t.0.at <= now) {
            let Some(Reverse(timer)) = self.timers.pop() else {
                break;
            };
            match timer.item {
                TimerItem::Task(env) => {
                    if self.mode != Mode::Running {
                        self.not_start(env);
                    } else if env.managed {
                        self.admit(env);
                    } else {
                        self.hand_over(env, None);
                    }
                }
                TimerItem::HandlerRate(h) => {
                    self.handlers[h].rate_wait = false;
                    self.schedule(h);
                }
                TimerItem::PoolRate => self.pool_rate_wait = false,
            }
        }
    }

    /// Starts as many ready tasks as the limits allow.
    fn pump(&mut self) {
        if self.mode != Mode::Running {
            return;
        }
        while !self.pool_rate_wait {
            let Some(h) = self.ring.pop_front() else {
                break;
            };
            let st = &mut self.handlers[h];
            st.in_ring = false;
            // Tasks at the head that must not start leave without a slot.
            let Some(head) = st.pending.front() else {
                continue;
            };
            if head.must_not_start() {
                if let Some(env) = st.pending.pop_front() {
                    self.drop_waiting(env);
                }
                self.schedule(h);
                continue;
            }
            let lane = st.lane.index();
            if self.lane_in_flight[lane] >= self.limits.lanes[lane] || st.in_flight >= st.limit {
                st.parked = true;
                self.parked.push(h);
                continue;
            }
            if let Some(rate) = &mut st.rate {
                if let Err(at) = rate.try_take() {
                    st.rate_wait = true;
                    self.add_timer(at, TimerItem::HandlerRate(h));
                    continue;
                }
            }
            if let Some(rate) = &mut self.limits.rate {
                if let Err(at) = rate.try_take() {
                    self.pool_rate_wait = true;
                    self.add_timer(at, TimerItem::PoolRate);
                    self.handlers[h].in_ring = true;
                    self.ring.push_front(h);
                    break;
                }
            }
            let st = &mut self.handlers[h];
            let Some(env) = st.pending.pop_front() else {
                continue;
            };
            st.in_flight += 1;
            self.lane_in_flight[lane] += 1;
            self.in_flight += 1;
            self.hand_over(env, Some(h));
            self.schedule(h);
        }
    }

    /// Hands a task that may start to the workers.
    fn hand_over(&mut self, env: Box<Envelope>, slot: Option<usize>) {
        if env.holds_permit {
            self.queued -= 1;
        }
        self.pool.ready.send(Ready { env, slot });
    }

    /// A waiting task leaves without running: free its key and report it.
    fn drop_waiting(&mut self, env: Box<Envelope>) {
        if env.holds_permit {
            self.queued -= 1;
        }
        if env.holds_key {
            if let Some(key) = env.key.clone() {
                self.release_key(&key);
            }
        }
        finish_unstarted(env);
    }

    /// A task that will never start (shutdown).
    fn not_start(&mut self, env: Box<Envelope>) {
        self.not_started += 1;
        self.drop_waiting(env);
    }

    /// Takes every waiting task out of every queue and reports it cancelled.
    fn cancel_waiting(&mut self) {
        let mut all: Vec<Box<Envelope>> = Vec::new();
        for st in &mut self.handlers {
            all.extend(st.pending.drain(..));
            st.in_ring = false;
        }
        self.ring.clear();
        for (_, waiting) in self.keys.drain() {
            all.extend(waiting);
        }
        for Reverse(timer) in std::mem::take(&mut self.timers) {
            if let TimerItem::Task(env) = timer.item {
                all.push(env);
            }
        }
        for mut env in all {
            env.holds_key = false;
            self.not_start(env);
        }
    }

    /// Takes the tasks that must not start (cancelled, or of a halted job) out
    /// of the queues and timers.
    fn sweep_unstartable(&mut self) {
        let mut gone: Vec<Box<Envelope>> = Vec::new();
        for st in &mut self.handlers {
            take_unstartable(&mut st.pending, &mut gone);
        }
        for waiting in self.keys.values_mut() {
            take_unstartable(waiting, &mut gone);
        }
        let timers = std::mem::take(&mut self.timers).into_vec();
        for Reverse(timer) in timers {
            match timer.item {
                TimerItem::Task(env) if env.must_not_start() => gone.push(env),
                item => self.timers.push(Reverse(Timer { item, ..timer })),
            }
        }
        for env in gone {
            self.drop_waiting(env);
        }
    }
}

/// Moves the tasks of `queue` that must not start to `out`, keeping the
/// others in order.
#[allow(clippy::vec_box)] // envelopes stay boxed so moving them between queues is cheap
fn take_unstartable(queue: &mut VecDeque<Box<Envelope>>, out: &mut Vec<Box<Envelope>>) {
    if !queue.iter().any(|e| e.must_not_start()) {
        return;
    }
    let mut keep = VecDeque::with_capacity(queue.len());
    for env in queue.drain(..) {
        if env.must_not_start() {
            out.push(env);
        } else {
            keep.push_back(env);
        }
    }
    *queue = keep;
}
