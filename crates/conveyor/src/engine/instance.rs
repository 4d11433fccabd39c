//! One running engine: its workers, its dispatcher, its cpu lane, the ready
//! queue between them, and what stopping needs (the cancellation token, the
//! open jobs to wake). A pool is a handle on one; every job on the pool, and
//! every task of those jobs, holds it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use conveyor_core::{Error, Rate};

use crate::engine::cancel::Cancels;
use crate::engine::dispatcher::{DispatchLimits, Dispatcher};
use crate::engine::envelope::{Event, Ready};
use crate::engine::rate::RateLimiter;
use crate::engine::ready_queue::{ready_queue, ReadyReceiver, ReadySender};
use crate::engine::worker::{self, Board};
use crate::lane::cpu::CpuPool;

/// What an engine is started with.
pub(crate) struct EngineLimits {
    /// Workers: tasks running at once across all lanes.
    pub(crate) workers: usize,
    /// The io lane's limit.
    pub(crate) io: usize,
    /// The cpu lane's threads (and limit).
    pub(crate) cpu: usize,
    /// The process lane's limit.
    pub(crate) process: usize,
    /// A pool-wide rate of starts.
    pub(crate) rate: Option<Rate>,
    /// Whether the cpu lane's threads run at background priority.
    pub(crate) cpu_background: bool,
}

/// The dispatcher's inbox.
pub(crate) type EventSender = mpsc::UnboundedSender<Event>;

/// One running engine: what every job and task of a pool shares. A
/// [`Pool`](crate::Pool) is a user's handle on one.
pub(crate) struct Engine {
    pub(crate) events: EventSender,
    /// Workers' shared state and the pool's counters.
    pub(crate) board: Arc<Board>,
    /// Tasks that may start now, taken by the workers.
    pub(crate) ready: ReadySender<Ready>,
    /// Kept so shutdown can take back tasks no worker has picked up.
    pub(super) ready_rx: ReadyReceiver<Ready>,
    /// Plain io tasks may skip the dispatcher: no pool rate, no io-lane limit
    /// below the worker count.
    pub(crate) fast_io: bool,
    pub(crate) cpu: CpuPool,
    /// Cancelled on immediate shutdown (and when the last `Pool` handle drops).
    pub(crate) token: CancellationToken,
    /// Set once shutdown begins: no new submissions.
    pub(crate) closing: AtomicBool,
    /// Set with `token`, so hot paths can check it without a lock.
    pub(crate) stopped: AtomicBool,
    /// Every open job's [`Cancels`], woken when the pool stops; with the
    /// length at which dead entries are pruned next.
    jobs: Mutex<(Vec<Weak<Cancels>>, usize)>,
}

impl Engine {
    /// Starts an engine on `runtime`: its `limits.workers` workers and its
    /// dispatcher. The limits are checked by the caller.
    pub(crate) fn start(
        runtime: &tokio::runtime::Handle,
        limits: EngineLimits,
    ) -> Result<Arc<Engine>, Error> {
        let rate = limits.rate.map(RateLimiter::new).transpose()?;
        let (events, rx) = mpsc::unbounded_channel();
        let (ready, ready_rx) = ready_queue(limits.workers);
        let board = Arc::new(Board::new(limits.workers, events.clone()));
        for me in 0..limits.workers {
            runtime.spawn(worker::run(ready_rx.clone(), board.clone(), me));
        }
        let engine = Arc::new(Engine {
            events,
            board,
            ready,
            ready_rx,
            fast_io: limits.rate.is_none() && limits.io >= limits.workers,
            cpu: CpuPool::new(limits.cpu, limits.cpu_background)?,
            token: CancellationToken::new(),
            closing: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            jobs: Mutex::new((Vec::new(), 64)),
        });
        let dispatch = DispatchLimits {
            lanes: [limits.io, limits.cpu, limits.process],
            rate,
        };
        runtime.spawn(Dispatcher::new(rx, engine.clone(), dispatch).run());
        Ok(engine)
    }

    /// Immediate stop: no new submissions; everything is cancelled.
    pub(crate) fn stop(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.stopped.store(true, Ordering::SeqCst);
        self.token.cancel();
        let jobs: Vec<_> = self
            .jobs
            .lock()
            .0
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for cancels in jobs {
            cancels.wake_handlers();
        }
        for signal in self.board.signals.iter() {
            signal.wake();
        }
    }

    /// Registers a new job's [`Cancels`], to be woken when the pool stops.
    pub(crate) fn register(&self, cancels: &Arc<Cancels>) {
        let mut jobs = self.jobs.lock();
        let (list, prune_at) = &mut *jobs;
        list.push(Arc::downgrade(cancels));
        if list.len() >= *prune_at {
            list.retain(|w| w.strong_count() > 0);
            *prune_at = (list.len() * 2).max(64);
        }
    }
}
