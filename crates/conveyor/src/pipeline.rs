//! Pipelines: stages joined by bounded queues.
//!
//! Each stage has its own handler (so its own lane and limits) and its own
//! concurrency; a stage's successful outputs feed the next stage, and a failed
//! item is counted, reported to the failure callback and dropped — it never stops
//! the pipeline. Closing the input drains the stages in order: stage 1 finishes
//! its in-flight items and closes its output queue, then stage 2, and so on, with
//! no sentinel values. Every queue is bounded, so a slow stage slows the ones
//! before it instead of growing memory.
//!
//! ```no_run
//! # use conveyor::{Handler, Pool, TaskError, Pipeline};
//! # async fn demo(pool: Pool) {
//! let parse = Handler::cpu("parse", |s: String, _| s.trim().parse::<u64>());
//! let square = Handler::io("square", |n: u64, _| async move { Ok::<_, TaskError>(n * n) });
//! let mut pipeline = Pipeline::builder(&pool, 100).stage(&parse, 4).stage(&square, 8).build();
//! let input = pipeline.input().expect("open");
//! tokio::spawn(async move {
//!     for line in ["1", "2", "x", "3"] {
//!         let _ = input.send(line.to_string()).await;
//!     }
//! });
//! pipeline.close_input();
//! while let Some(n) = pipeline.recv().await {
//!     println!("{n}");
//! }
//! let stats = pipeline.finish().await;
//! assert_eq!(stats[0].failed, 1);
//! # }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use conveyor_core::{Outcome, OutcomeKind, TaskError};

use crate::engine::job_state::JobState;
use crate::handler::Handler;
use crate::map::call;
use crate::pool::Pool;

/// A failed item, as told to the failure callback.
#[derive(Debug, Clone)]
pub struct StageFailure {
    /// The stage's index (0 = first).
    pub stage: usize,
    /// The stage's handler name.
    pub handler: String,
    /// How the item ended.
    pub kind: OutcomeKind,
    /// The error, for failures.
    pub error: Option<TaskError>,
}

/// Called for every item that a stage did not complete.
pub type OnFailure = Arc<dyn Fn(StageFailure) + Send + Sync>;

/// What one stage did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageStats {
    /// The stage's handler name.
    pub handler: String,
    /// Items taken from the stage's input queue.
    pub received: u64,
    /// Items completed and passed on.
    pub succeeded: u64,
    /// Items that failed.
    pub failed: u64,
    /// Items cancelled, timed out or panicked.
    pub lost: u64,
    /// The order in which the stage finished draining (0 = first).
    pub finish_order: u64,
    /// From the pipeline's start to the stage's drain.
    pub elapsed: Duration,
}

#[derive(Default)]
struct StageCounters {
    received: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    lost: AtomicU64,
    finish_order: AtomicU64,
    elapsed_us: AtomicU64,
}

/// A pipeline under construction; `Cur` is the type the last stage produces.
pub struct PipelineBuilder<In, Cur> {
    pool: Pool,
    capacity: usize,
    input: flume::Sender<In>,
    last: flume::Receiver<Cur>,
    stages: Vec<(String, Arc<StageCounters>)>,
    tasks: Vec<JoinHandle<()>>,
    finished: Arc<AtomicU64>,
    on_failure: Arc<Mutex<Option<OnFailure>>>,
    started: Instant,
}

/// Entry point for building pipelines.
pub struct Pipeline<In, Out> {
    input: Option<flume::Sender<In>>,
    output: flume::Receiver<Out>,
    stages: Vec<(String, Arc<StageCounters>)>,
    tasks: Vec<JoinHandle<()>>,
}

impl<In, Out> fmt::Debug for Pipeline<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field(
                "stages",
                &self.stages.iter().map(|s| &s.0).collect::<Vec<_>>(),
            )
            .field("open", &self.input.is_some())
            .finish()
    }
}

impl<In: Send + 'static> Pipeline<In, In> {
    /// Starts a pipeline on `pool` whose queues each hold `capacity` items.
    pub fn builder(pool: &Pool, capacity: usize) -> PipelineBuilder<In, In> {
        let (tx, rx) = flume::bounded(capacity.max(1));
        PipelineBuilder {
            pool: pool.clone(),
            capacity: capacity.max(1),
            input: tx,
            last: rx,
            stages: Vec::new(),
            tasks: Vec::new(),
            finished: Arc::new(AtomicU64::new(0)),
            on_failure: Arc::new(Mutex::new(None)),
            started: Instant::now(),
        }
    }
}

impl<In: Send + 'static, Cur: Clone + Send + 'static> PipelineBuilder<In, Cur> {
    /// Adds a stage running `handler` with at most `concurrency` items at once.
    pub fn stage<Next: Send + 'static>(
        mut self,
        handler: &Handler<Cur, Next>,
        concurrency: usize,
    ) -> PipelineBuilder<In, Next> {
        let (tx, rx) = flume::bounded(self.capacity);
        let counters = Arc::new(StageCounters::default());
        let index = self.stages.len();
        self.stages
            .push((handler.name().to_string(), counters.clone()));
        let stage = Stage {
            index,
            input: self.last,
            output: tx,
            job: JobState::detached(&self.pool.engine, concurrency.max(1)),
            handler: handler.clone(),
            concurrency: concurrency.max(1),
            counters,
            finished: self.finished.clone(),
            on_failure: self.on_failure.clone(),
            started: self.started,
        };
        self.tasks.push(tokio::spawn(stage.run()));
        PipelineBuilder {
            pool: self.pool,
            capacity: self.capacity,
            input: self.input,
            last: rx,
            stages: self.stages,
            tasks: self.tasks,
            finished: self.finished,
            on_failure: self.on_failure,
            started: self.started,
        }
    }
}

impl<In, Cur> PipelineBuilder<In, Cur> {
    /// Called for every item a stage fails, cancels, times out or panics on.
    pub fn on_failure(self, f: impl Fn(StageFailure) + Send + Sync + 'static) -> Self {
        *self.on_failure.lock() = Some(Arc::new(f));
        self
    }

    /// Finishes building: the pipeline is running.
    pub fn build(self) -> Pipeline<In, Cur> {
        Pipeline {
            input: Some(self.input),
            output: self.last,
            stages: self.stages,
            tasks: self.tasks,
        }
    }
}

/// A clonable handle that feeds a pipeline's first stage.
#[derive(Debug)]
pub struct PipelineInput<In> {
    tx: flume::Sender<In>,
}

impl<In> Clone for PipelineInput<In> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<In> PipelineInput<In> {
    /// Sends an item, waiting while the first queue is full. Gives the item back
    /// if the pipeline is gone.
    pub async fn send(&self, item: In) -> Result<(), In> {
        self.tx.send_async(item).await.map_err(|e| e.into_inner())
    }

    /// Sends from an OS thread, blocking while the first queue is full.
    pub fn blocking_send(&self, item: In) -> Result<(), In> {
        self.tx.send(item).map_err(|e| e.into_inner())
    }
}

impl<In, Out> Pipeline<In, Out> {
    /// A handle to feed the pipeline, or `None` once the input is closed. The input
    /// is closed when [`Pipeline::close_input`] was called and every handle is
    /// dropped.
    pub fn input(&self) -> Option<PipelineInput<In>> {
        self.input
            .as_ref()
            .map(|tx| PipelineInput { tx: tx.clone() })
    }

    /// Sends through the pipeline's own input.
    pub async fn send(&self, item: In) -> Result<(), In> {
        match &self.input {
            Some(tx) => tx.send_async(item).await.map_err(|e| e.into_inner()),
            None => Err(item),
        }
    }

    /// Drops the pipeline's own input handle.
    pub fn close_input(&mut self) {
        self.input = None;
    }

    /// The next output of the last stage; `None` once every stage has drained.
    pub async fn recv(&self) -> Option<Out> {
        self.output.recv_async().await.ok()
    }

    /// Per-stage statistics so far.
    pub fn stats(&self) -> Vec<StageStats> {
        self.stages
            .iter()
            .map(|(name, c)| StageStats {
                handler: name.clone(),
                received: c.received.load(Relaxed),
                succeeded: c.succeeded.load(Relaxed),
                failed: c.failed.load(Relaxed),
                lost: c.lost.load(Relaxed),
                finish_order: c.finish_order.load(Relaxed),
                elapsed: Duration::from_micros(c.elapsed_us.load(Relaxed)),
            })
            .collect()
    }

    /// Closes the input, drains every stage in order (discarding outputs not yet
    /// received) and returns per-stage statistics.
    pub async fn finish(mut self) -> Vec<StageStats> {
        self.close_input();
        while self.output.recv_async().await.is_ok() {}
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        self.stats()
    }
}

struct Stage<A, B> {
    index: usize,
    input: flume::Receiver<A>,
    output: flume::Sender<B>,
    job: Arc<JobState>,
    handler: Handler<A, B>,
    concurrency: usize,
    counters: Arc<StageCounters>,
    finished: Arc<AtomicU64>,
    on_failure: Arc<Mutex<Option<OnFailure>>>,
    started: Instant,
}

impl<A: Clone + Send + 'static, B: Send + 'static> Stage<A, B> {
    async fn run(self) {
        let mut running = FuturesUnordered::new();
        let mut open = true;
        loop {
            tokio::select! {
                item = self.input.recv_async(), if open && running.len() < self.concurrency => {
                    match item {
                        Ok(item) => {
                            self.counters.received.fetch_add(1, Relaxed);
                            running.push(call(self.job.clone(), self.handler.clone(), item));
                        }
                        Err(_) => open = false,
                    }
                }
                Some(outcome) = running.next(), if !running.is_empty() => {
                    self.done(outcome).await;
                }
                else => break,
            }
        }
        let elapsed = self.started.elapsed().as_micros() as u64;
        self.counters.elapsed_us.store(elapsed, Relaxed);
        let order = self.finished.fetch_add(1, Relaxed);
        self.counters.finish_order.store(order, Relaxed);
        // Dropping `self.output` here closes the next stage's input.
    }

    async fn done(&self, outcome: Outcome<B>) {
        let kind = outcome.kind();
        match outcome {
            Outcome::Succeeded(item) => {
                self.counters.succeeded.fetch_add(1, Relaxed);
                // If the consumer is gone the item has nowhere to go; keep draining.
                let _ = self.output.send_async(item).await;
            }
            Outcome::Failed(ref e) => {
                self.counters.failed.fetch_add(1, Relaxed);
                self.report(kind, Some(e.clone()));
            }
            _ => {
                self.counters.lost.fetch_add(1, Relaxed);
                self.report(kind, None);
            }
        }
    }

    fn report(&self, kind: OutcomeKind, error: Option<TaskError>) {
        let callback = self.on_failure.lock().clone();
        if let Some(cb) = callback {
            cb(StageFailure {
                stage: self.index,
                handler: self.handler.name().to_string(),
                kind,
                error,
            });
        }
    }
}
