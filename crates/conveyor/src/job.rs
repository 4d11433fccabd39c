//! Jobs and producers: the producer–consumer pattern.
//!
//! A [`Job`] is a group of tasks with its own bounded queue and its own result
//! handler. Any number of [`Producer`]s (clones, usable from async tasks or OS
//! threads) submit tasks; `submit` waits while the queue is full, `try_submit`
//! does not. When every producer is dropped and every task has an outcome,
//! `on_job_complete` fires exactly once and awaiting the job returns the same
//! [`JobSummary`].
//!
//! **Queue capacity** is the number of tasks submitted but not yet started
//! (waiting for a worker, a limit, a key or a delay). A larger queue lets
//! producers run further ahead and absorbs bursts, at the cost of memory for the
//! waiting tasks' params; a smaller one makes producers wait sooner. The
//! **result capacity** is how many finished results may wait for a slow
//! `on_task_complete` before workers wait too.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant as StdInstant};

use tokio::sync::oneshot;
use tokio::time::Instant;

use conveyor_core::{Error, Lane, TaskId, TaskOptions};

use crate::engine::cancel::Cancels;
use crate::engine::envelope::{Envelope, Event, Halt, JobShared, Ready};
use crate::engine::result_queue::result_queue;
use crate::handler::Handler;
use crate::pool::Pool;
use crate::results::{spawn_result_handler, OnJobComplete, OnTaskComplete, TaskResult};
use crate::summary::JobSummary;

/// The default job queue capacity.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// The default result queue capacity.
pub const DEFAULT_RESULT_CAPACITY: usize = 1024;

/// A submission that was refused, with the params given back.
pub struct Rejected<In> {
    /// Why: [`Error::Closed`], [`Error::ShuttingDown`], [`Error::QueueFull`] or
    /// [`Error::InvalidConfig`] (the handler's rate cannot be enforced).
    pub reason: Error,
    /// The params, untouched.
    pub params: In,
}

impl<In> fmt::Debug for Rejected<In> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl<In> fmt::Display for Rejected<In> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task rejected: {}", self.reason)
    }
}

impl<In> std::error::Error for Rejected<In> {}

/// A submitted task: its id, and a way to cancel it.
#[derive(Debug, Clone)]
pub struct TaskHandle {
    id: TaskId,
    /// The job's record of cancelled ids (not the job itself, so a handle kept
    /// around never keeps its job open).
    cancels: Arc<Cancels>,
}

impl TaskHandle {
    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Cancels the task: if it waits it never starts; if it runs, its attempt is
    /// stopped (a child process is killed; a cpu closure sees
    /// [`TaskContext::is_cancelled`](crate::TaskContext::is_cancelled)). Its outcome
    /// is [`Outcome::Cancelled`](crate::Outcome::Cancelled) unless it already had one.
    pub fn cancel(&self) {
        self.cancels.cancel(self.id);
    }

    /// True once this task was cancelled through a handle.
    pub fn is_cancelled(&self) -> bool {
        self.cancels.contains(self.id)
    }
}

impl fmt::Debug for JobShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JobShared")
    }
}

impl JobShared {
    /// A job whose tasks reply on their own channels (map helpers, pipelines).
    pub(crate) fn detached(pool: &Pool, capacity: usize) -> Arc<JobShared> {
        JobShared::new(&pool.shared, capacity, None, None)
    }

    fn refusal(&self) -> Option<Error> {
        if self.pool.closing.load(Ordering::Relaxed) {
            Some(Error::ShuttingDown)
        } else if self.is_cancelled() {
            Some(Error::Closed)
        } else {
            None
        }
    }

    /// Puts a task whose capacity permit is already taken into the pool.
    pub(crate) fn enqueue<In, Out>(
        self: &Arc<Self>,
        id: TaskId,
        handler: &Handler<In, Out>,
        params: In,
        opts: TaskOptions,
        reply: Option<oneshot::Sender<TaskResult>>,
    ) -> Result<TaskHandle, Rejected<In>>
    where
        In: Send + 'static,
    {
        let core = &handler.core;
        let managed = opts.ordering_key.is_some()
            || opts.delay.is_some()
            || core.config.concurrency.is_some()
            || core.config.rate.is_some()
            || core.lane != Lane::Io
            || !self.pool.fast_io;
        if let Some(rate) = &core.config.rate {
            if let Err(reason) = rate.validate() {
                self.capacity.add_permits(1);
                return Err(Rejected { reason, params });
            }
        }
        // Frees, on this thread, the envelopes workers handed back: the
        // allocation below reuses their memory.
        self.spent.free_returned();
        let now = Instant::now();
        let env: Box<Envelope> = Box::new(Envelope::new(
            id,
            core.clone(),
            opts.ordering_key,
            opts.timeout.or(core.config.timeout),
            opts.max_attempts
                .unwrap_or(core.config.retry.max_attempts)
                .max(1),
            opts.delay.map(|d| now + d),
            now,
            self.clone(),
            reply,
            managed,
            Some(params),
        ));
        let sent = if managed {
            self.pool
                .events
                .send(Event::Submit(env))
                .map_err(|e| match e.0 {
                    Event::Submit(env) => Some(env),
                    _ => None,
                })
        } else {
            self.pool.ready.send(Ready { env, slot: None });
            Ok(())
        };
        match sent {
            Ok(()) => Ok(TaskHandle {
                id,
                cancels: self.cancels.clone(),
            }),
            Err(failed) => {
                let Some(mut env) = failed else {
                    return Ok(TaskHandle {
                        id,
                        cancels: self.cancels.clone(),
                    });
                };
                env.release_permit();
                match env
                    .params
                    .downcast_mut::<Option<In>>()
                    .and_then(Option::take)
                {
                    Some(params) => Err(Rejected {
                        reason: Error::ShuttingDown,
                        params,
                    }),
                    // Unreachable: the params were put in as `In` just above.
                    None => Ok(TaskHandle {
                        id,
                        cancels: self.cancels.clone(),
                    }),
                }
            }
        }
    }

    /// Waits for a permit, then enqueues: every submit's one async step (the
    /// public submits return this future as it is), so a submit's future
    /// carries its params once. `None`, a closed job's missing producer,
    /// refuses the task.
    pub(crate) async fn submit<In, Out>(
        job: Option<&Arc<Self>>,
        id: TaskId,
        handler: &Handler<In, Out>,
        params: In,
        opts: TaskOptions,
        reply: Option<oneshot::Sender<TaskResult>>,
    ) -> Result<TaskHandle, Rejected<In>>
    where
        In: Send + 'static,
    {
        let Some(job) = job else {
            return Err(Rejected {
                reason: Error::Closed,
                params,
            });
        };
        match job.admit().await {
            Ok(()) => job.enqueue(id, handler, params, opts, reply),
            Err(reason) => Err(Rejected { reason, params }),
        }
    }

    /// Takes a capacity permit for one task, waiting while the job's queue is
    /// full; an error when the job or its pool no longer takes tasks. Holds
    /// nothing of the task: the task is made only once admitted.
    async fn admit(&self) -> Result<(), Error> {
        if let Some(reason) = self.refusal() {
            return Err(reason);
        }
        if self.capacity.try_acquire().map(|p| p.forget()).is_ok() {
            return Ok(());
        }
        tokio::select! {
            permit = self.capacity.acquire() => match permit {
                Ok(p) => {
                    p.forget();
                    Ok(())
                }
                Err(_) => Err(Error::Closed),
            },
            _ = self.token.cancelled() => Err(Error::Closed),
        }
    }
}

/// Submits tasks into a job. Clone it for every producer; the job's producers are
/// done when every clone is dropped.
#[derive(Debug)]
pub struct Producer {
    pub(crate) job: Arc<JobShared>,
}

impl Clone for Producer {
    fn clone(&self) -> Self {
        Producer::new(self.job.clone())
    }
}

impl Drop for Producer {
    /// The job's last producer closes the return of settled envelopes
    /// (`engine::spent`), freeing what it holds: each holds the job open.
    fn drop(&mut self) {
        self.job.spent.producer_left();
    }
}

impl Producer {
    /// A producer of `job`, counted among its producers.
    pub(crate) fn new(job: Arc<JobShared>) -> Self {
        job.spent.producer_joined();
        Producer { job }
    }

    /// Submits a task, waiting while the job's queue is full.
    pub fn submit<'a, In, Out>(
        &'a self,
        handler: &'a Handler<In, Out>,
        params: In,
    ) -> impl Future<Output = Result<TaskHandle, Rejected<In>>> + 'a
    where
        In: Send + 'static,
    {
        let opts = TaskOptions::default();
        JobShared::submit(Some(&self.job), TaskId::next(), handler, params, opts, None)
    }

    /// Submits a task with options (key, timeout, attempts, delay).
    pub fn submit_with<'a, In, Out>(
        &'a self,
        handler: &'a Handler<In, Out>,
        params: In,
        opts: TaskOptions,
    ) -> impl Future<Output = Result<TaskHandle, Rejected<In>>> + 'a
    where
        In: Send + 'static,
    {
        JobShared::submit(Some(&self.job), TaskId::next(), handler, params, opts, None)
    }

    /// `submit_with` under an id chosen by the caller (from [`TaskId::next`]), so
    /// the caller can record what the task is before its result can arrive (the
    /// result names the task only by id).
    pub fn submit_as<'a, In, Out>(
        &'a self,
        id: TaskId,
        handler: &'a Handler<In, Out>,
        params: In,
        opts: TaskOptions,
    ) -> impl Future<Output = Result<TaskHandle, Rejected<In>>> + 'a
    where
        In: Send + 'static,
    {
        JobShared::submit(Some(&self.job), id, handler, params, opts, None)
    }

    /// Submits a task if the queue has room now; never waits.
    pub fn try_submit<In, Out>(
        &self,
        handler: &Handler<In, Out>,
        params: In,
        opts: TaskOptions,
    ) -> Result<TaskHandle, Rejected<In>>
    where
        In: Send + 'static,
    {
        self.try_submit_as(TaskId::next(), handler, params, opts)
    }

    /// `try_submit` under an id chosen by the caller (from [`TaskId::next`]), so
    /// the caller can record the task before its result can arrive.
    pub(crate) fn try_submit_as<In, Out>(
        &self,
        id: TaskId,
        handler: &Handler<In, Out>,
        params: In,
        opts: TaskOptions,
    ) -> Result<TaskHandle, Rejected<In>>
    where
        In: Send + 'static,
    {
        if let Some(reason) = self.job.refusal() {
            return Err(Rejected { reason, params });
        }
        if self.job.capacity.try_acquire().map(|p| p.forget()).is_err() {
            return Err(Rejected {
                reason: Error::QueueFull,
                params,
            });
        }
        self.job.enqueue(id, handler, params, opts, None)
    }

    /// Submits from an OS thread (not from inside the async runtime), blocking the
    /// thread while the queue is full.
    pub fn blocking_submit<In, Out>(
        &self,
        handler: &Handler<In, Out>,
        params: In,
        opts: TaskOptions,
    ) -> Result<TaskHandle, Rejected<In>>
    where
        In: Send + 'static,
    {
        let id = TaskId::next();
        futures_executor::block_on(JobShared::submit(
            Some(&self.job),
            id,
            handler,
            params,
            opts,
            None,
        ))
    }
}

/// Configures and opens a [`Job`].
pub struct JobBuilder {
    pool: Pool,
    queue_capacity: usize,
    result_capacity: usize,
    on_task: Option<OnTaskComplete>,
    on_job: Option<OnJobComplete>,
    halt_after: Option<u64>,
}

impl JobBuilder {
    pub(crate) fn new(pool: Pool) -> Self {
        Self {
            pool,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            result_capacity: DEFAULT_RESULT_CAPACITY,
            on_task: None,
            on_job: None,
            halt_after: None,
        }
    }

    /// Tasks submitted but not started that the job holds before `submit` waits
    /// (default 1024). Memory grows with it; producers' waits shrink with it.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n.max(1);
        self
    }

    /// Results that may wait for `on_task_complete` before workers wait (default 1024).
    pub fn result_capacity(mut self, n: usize) -> Self {
        self.result_capacity = n.max(1);
        self
    }

    /// After `n` tasks have failed (failed, timed out or panicked, after their
    /// last attempt), no other task of the job starts: waiting tasks end
    /// [`Outcome::Cancelled`](conveyor_core::Outcome::Cancelled) at once
    /// without running, while attempts already running finish (and are not
    /// retried). The worker that settles
    /// the `n`-th failure counts it before it takes another task, so with one
    /// worker no task starts after it. Like `--halt soon,fail=n` of GNU parallel.
    pub fn halt_after_failures(mut self, n: u64) -> Self {
        self.halt_after = Some(n.max(1));
        self
    }

    /// Called with every task's final result, on the job's result handler thread.
    pub fn on_task_complete(mut self, f: impl FnMut(TaskResult) + Send + 'static) -> Self {
        self.on_task = Some(Box::new(f));
        self
    }

    /// Called once when producers are done and every task has an outcome.
    pub fn on_job_complete(mut self, f: impl FnOnce(&JobSummary) + Send + 'static) -> Self {
        self.on_job = Some(Box::new(f));
        self
    }

    /// Opens the job.
    pub fn start(self) -> Result<Job, Error> {
        if self.pool.is_closing() {
            return Err(Error::ShuttingDown);
        }
        let (tx, rx) = result_queue(self.result_capacity);
        let (done_tx, done_rx) = oneshot::channel();
        spawn_result_handler(rx, self.on_task, self.on_job, StdInstant::now(), done_tx)?;
        let halt = self.halt_after.map(Halt::new);
        let shared = JobShared::new(&self.pool.shared, self.queue_capacity, Some(tx), halt);
        Ok(Job {
            control: Arc::downgrade(&shared),
            producer: Some({
                // Settled envelopes go back to the producers while there are
                // any (the last one closes the return).
                shared.spent.open();
                Producer::new(shared)
            }),
            done: done_rx,
        })
    }
}

/// A running job. Await it (or call [`Job::wait`]) for its [`JobSummary`].
pub struct Job {
    producer: Option<Producer>,
    /// For `cancel`; weak, so holding the `Job` never keeps the job open.
    control: Weak<JobShared>,
    done: oneshot::Receiver<JobSummary>,
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("open", &self.producer.is_some())
            .field(
                "cancelled",
                &self.control.upgrade().is_some_and(|j| j.is_cancelled()),
            )
            .finish()
    }
}

impl Job {
    /// A new producer for this job, or `None` once the job is closed.
    pub fn producer(&self) -> Option<Producer> {
        self.producer.clone()
    }

    /// Submits through the job's own producer.
    pub fn submit<'a, In, Out>(
        &'a self,
        handler: &'a Handler<In, Out>,
        params: In,
    ) -> impl Future<Output = Result<TaskHandle, Rejected<In>>> + 'a
    where
        In: Send + 'static,
    {
        self.submit_with(handler, params, TaskOptions::default())
    }

    /// Submits with options through the job's own producer.
    pub fn submit_with<'a, In, Out>(
        &'a self,
        handler: &'a Handler<In, Out>,
        params: In,
        opts: TaskOptions,
    ) -> impl Future<Output = Result<TaskHandle, Rejected<In>>> + 'a
    where
        In: Send + 'static,
    {
        let job = self.producer.as_ref().map(|p| &p.job);
        JobShared::submit(job, TaskId::next(), handler, params, opts, None)
    }

    /// Drops the job's own producer: the job completes once the other producers
    /// are dropped too and every task has an outcome.
    pub fn close(&mut self) {
        self.producer = None;
    }

    /// Cancels the job: no more submissions; waiting tasks never start; running
    /// attempts are cancelled.
    pub fn cancel(&self) {
        if let Some(job) = self.control.upgrade() {
            job.cancel();
        }
    }

    /// Closes the job's own producer and waits for the summary.
    pub async fn wait(mut self) -> JobSummary {
        self.close();
        match self.done.await {
            Ok(summary) => summary,
            Err(_) => {
                tracing::error!("the job's result handler ended without a summary");
                JobSummary::default()
            }
        }
    }

    /// Like [`Job::wait`], giving up after `timeout` (the job keeps running).
    pub async fn wait_timeout(&mut self, timeout: Duration) -> Option<JobSummary> {
        self.close();
        tokio::time::timeout(timeout, &mut self.done)
            .await
            .ok()
            .and_then(Result::ok)
    }
}

impl IntoFuture for Job {
    type Output = JobSummary;
    type IntoFuture = Pin<Box<dyn Future<Output = JobSummary> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}
