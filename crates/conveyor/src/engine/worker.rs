//! Workers: the pool's N long-lived tasks that run attempts.
//!
//! Every attempt, in every lane, runs on one of the pool's `workers` tasks, so
//! the number of workers *is* the global concurrency limit. A worker takes a
//! task from the shared ready queue — put there directly by a producer (the fast
//! path: an io task with no key, delay or handler limit on a pool without a rate
//! or io limit) or by the dispatcher once the task's limits allow it — gives the
//! job its capacity permit back, runs the attempt (awaiting a cpu thread or a
//! child process for those lanes), records the outcome in its own counters, and
//! tells the dispatcher when a managed task's limits can be freed.
//!
//! Capacity permits of attempts that finish on their first poll are handed back
//! in bulk; as soon as an attempt has to wait, the worker hands back what it
//! holds first, so a long attempt never keeps a permit that a producer needs.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::time::Instant;

use tracing::Instrument;

use crate::engine::attempt::{
    attempt_span, conclude, conclude_abandoned, deliver_unstarted, run_attempt, Ran,
};
use crate::engine::envelope::{Envelope, Event, Ready};
use crate::engine::instance::EventSender;
use crate::engine::job_ref::JobRefs;
use crate::engine::job_state::JobState;
use crate::engine::metrics::Metrics;
use crate::engine::outbox::Outbox;
use crate::engine::ready_queue::{Empty, ReadyReceiver};
use crate::engine::signal::WorkerSignal;

/// Permits taken back from started tasks, not yet returned to their jobs.
#[derive(Default)]
struct Permits(Vec<(Arc<JobState>, usize)>);

impl Permits {
    fn add(&mut self, job: &Arc<JobState>) {
        match self.0.last_mut() {
            Some((j, n)) if Arc::ptr_eq(j, job) => *n += 1,
            _ => self.0.push((job.clone(), 1)),
        }
    }

    fn len(&self) -> usize {
        self.0.iter().map(|(_, n)| n).sum()
    }

    fn give_back(&mut self) {
        for (job, n) in self.0.drain(..) {
            job.capacity.add_permits(n);
        }
    }
}

/// What workers share with the pool. It holds no sender of the ready queue, so
/// the workers' loops end once the pool is gone.
#[derive(Debug)]
pub(crate) struct Board {
    pub(crate) metrics: Metrics,
    pub(crate) events: EventSender,
    /// Each worker's cancellation wake-up, by worker number.
    pub(crate) signals: Box<[WorkerSignal]>,
    /// Graceful shutdown: tasks taken from the ready queue are not started.
    draining: AtomicBool,
    not_started: AtomicU64,
    /// Signalled when a worker finishes something while draining.
    pub(crate) idle: Notify,
}

impl Board {
    pub(crate) fn new(workers: usize, events: EventSender) -> Self {
        Self {
            metrics: Metrics::new(workers),
            events,
            signals: (0..workers).map(|_| WorkerSignal::default()).collect(),
            draining: AtomicBool::new(false),
            not_started: AtomicU64::new(0),
            idle: Notify::new(),
        }
    }

    pub(crate) fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub(crate) fn count_not_started(&self, n: u64) {
        self.not_started.fetch_add(n, Ordering::SeqCst);
    }

    pub(crate) fn not_started(&self) -> u64 {
        self.not_started.load(Ordering::SeqCst)
    }

    /// Attempts running now.
    pub(crate) fn busy(&self) -> u64 {
        self.metrics.running().iter().sum()
    }
}

/// One worker's loop: runs until the ready queue is closed and empty.
pub(crate) async fn run(rx: ReadyReceiver<Ready>, board: Arc<Board>, me: usize) {
    let mut permits = Permits::default();
    let mut outbox = Outbox::new(board.metrics.stats_of(me));
    let mut jobs = JobRefs::default();
    // When the last attempt ended, if the worker has not waited since.
    let mut clock: Option<Instant> = None;
    loop {
        let ready = match rx.try_recv() {
            Ok(ready) => ready,
            Err(Empty::Now) => {
                clock = None;
                permits.give_back();
                outbox.flush();
                jobs.let_go();
                match rx.recv(me).await {
                    Some(ready) => ready,
                    None => break,
                }
            }
            Err(Empty::ForGood) => break,
        };
        clock = run_one(
            &board,
            me,
            ready,
            &mut permits,
            &mut outbox,
            &mut jobs,
            clock,
        )
        .await;
        if permits.len() >= 64 {
            permits.give_back();
        }
    }
    permits.give_back();
    outbox.flush();
}

/// Runs one task taken from the ready queue. `clock` is when the worker's last
/// attempt ended, if it has not waited since: the attempt starts then (the
/// moments between are the worker's own bookkeeping), which saves a clock read
/// per task. Returns when this attempt ended, if nothing was awaited since.
async fn run_one(
    pool: &Board,
    me: usize,
    ready: Ready,
    permits: &mut Permits,
    outbox: &mut Outbox<'_>,
    jobs: &mut JobRefs,
    clock: Option<Instant>,
) -> Option<Instant> {
    let slot = &pool.metrics.workers[me];
    let Ready {
        mut env,
        slot: handler_slot,
    } = ready;
    if env.take_permit() {
        permits.add(&env.job);
    }
    if pool.is_draining() || env.must_not_start() {
        // Rare: boxed, so the hot path's future stays small.
        Box::pin(skip(pool, env, handler_slot, permits, outbox, jobs)).await;
        return None;
    }
    slot.running(Some(env.handler().lane));
    let start = match &env.job.sink {
        Some(sink) => sink.started(env.id, env.attempt + 1),
        None => Default::default(),
    };
    let signal = &pool.signals[me];
    signal.running(env.job.cancels.id(), env.id.0);
    let started = clock.unwrap_or_else(Instant::now);
    let mut waited = false;
    let span = attempt_span(&env, &start);
    let ran: Ran = {
        let job = jobs.to(&env.job);
        let attempt = run_attempt(&mut env, job, started, signal, start);
        tokio::pin!(attempt);
        // Polled once per wake-up, in the attempt's span; the first time it
        // has to wait, the worker hands back what it holds.
        std::future::poll_fn(|cx| {
            let polled = span.in_scope(|| attempt.as_mut().poll(cx));
            if polled.is_pending() && !waited {
                waited = true;
                permits.give_back();
                outbox.flush();
            }
            polled
        })
        .await
    };
    let done = match ran.thread {
        None => {
            // Idle before anything is reported, so a job seen complete has no
            // attempt still counted as running.
            slot.running(None);
            span.in_scope(|| conclude(env, handler_slot, Some(started), ran.end, outbox))
        }
        Some(thread) => {
            // Rare (a cpu attempt abandoned at its timeout or cancel): boxed,
            // so the hot path's future stays small.
            waited = true;
            permits.give_back();
            outbox.flush();
            let done = Box::pin(conclude_abandoned(
                env,
                handler_slot,
                started,
                ran.end,
                thread,
                outbox,
            ))
            .instrument(span)
            .await;
            // The thread has returned: only now is its lane's slot free.
            slot.running(None);
            done
        }
    };
    let mut ended = done.ended_at.filter(|_| !waited);
    if let Some((env, result)) = done.unsent {
        // The job's result queue is full. Rare: boxed, as above.
        Box::pin(outbox.post_waiting(env, result)).await;
        ended = None;
    }
    if let Some(release) = done.release {
        if release.key.is_some() {
            // The next task of the key must not report before this one.
            outbox.flush();
        }
        let _ = pool.events.send(Event::Released(release));
    }
    if pool.is_draining() {
        pool.idle.notify_waiters();
    }
    ended
}

/// Reports a task taken from the ready queue that is not to start: the pool
/// is draining, or the task must not start (cancelled while it waited, or its
/// job halted).
async fn skip(
    pool: &Board,
    env: Box<Envelope>,
    handler_slot: Option<usize>,
    permits: &mut Permits,
    outbox: &mut Outbox<'_>,
    jobs: &mut JobRefs,
) {
    if pool.is_draining() {
        pool.count_not_started(1);
    }
    permits.give_back();
    // Reporting may wait for room in the result queue: never while holding
    // results that took room already, nor another job open (the job the
    // worker last ran may be one whose completion that queue's reader awaits).
    outbox.flush();
    jobs.let_go();
    let release = env.release(handler_slot);
    deliver_unstarted(env).await;
    if let Some(release) = release {
        let _ = pool.events.send(Event::Released(release));
    }
    pool.idle.notify_waiters();
}
