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
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant as StdInstant};

use tokio::sync::oneshot;

use conveyor_core::{Error, TaskId, TaskOptions};

use crate::engine::job_state::{Halt, JobState};
use crate::engine::result_queue::result_queue;
use crate::engine::submit::{Rejected, TaskHandle};
use crate::engine::task_result::TaskResult;
use crate::handler::Handler;
use crate::pool::Pool;
use crate::results::{spawn_result_handler, OnJobComplete, OnTaskComplete};
use crate::summary::JobSummary;

/// The default job queue capacity.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// The default result queue capacity.
pub const DEFAULT_RESULT_CAPACITY: usize = 1024;

/// Submits tasks into a job. Clone it for every producer; the job's producers are
/// done when every clone is dropped.
#[derive(Debug)]
pub struct Producer {
    pub(crate) job: Arc<JobState>,
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
    pub(crate) fn new(job: Arc<JobState>) -> Self {
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
        JobState::submit(
            Some(&self.job),
            TaskId::next(),
            &handler.core,
            params,
            opts,
            None,
        )
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
        JobState::submit(
            Some(&self.job),
            TaskId::next(),
            &handler.core,
            params,
            opts,
            None,
        )
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
        JobState::submit(Some(&self.job), id, &handler.core, params, opts, None)
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
        self.job.enqueue(id, &handler.core, params, opts, None)
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
        futures_executor::block_on(JobState::submit(
            Some(&self.job),
            id,
            &handler.core,
            params,
            opts,
            None,
        ))
    }
}

impl Pool {
    /// Opens a job on this pool. (Defined here, beside the job, so the pool
    /// knows nothing of jobs: a job is built on a pool, not the reverse.)
    pub fn job(&self) -> JobBuilder {
        JobBuilder::new(self.clone())
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
    fn new(pool: Pool) -> Self {
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
        let shared = JobState::new(&self.pool.engine, self.queue_capacity, Some(tx), halt);
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
    control: Weak<JobState>,
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
        JobState::submit(job, TaskId::next(), &handler.core, params, opts, None)
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
