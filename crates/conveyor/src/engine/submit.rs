//! Submitting a task to a job: waiting for room in the job's queue, then
//! boxing the task into an envelope and sending it to the dispatcher, or
//! straight to the workers when no limit applies; and what a submitter gets
//! back, a [`TaskHandle`] or the params with the reason they were refused.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::time::Instant;

use conveyor_core::{Error, Lane, TaskId, TaskOptions};

use crate::engine::cancel::Cancels;
use crate::engine::envelope::{Envelope, Event, Ready};
use crate::engine::instance::Engine;
use crate::engine::job_state::JobState;
use crate::engine::task_result::TaskResult;
use crate::engine::work::HandlerCore;

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

impl JobState {
    /// A job whose tasks reply on their own channels (map helpers, pipelines).
    pub(crate) fn detached(engine: &Arc<Engine>, capacity: usize) -> Arc<JobState> {
        JobState::new(engine, capacity, None, None)
    }

    pub(crate) fn refusal(&self) -> Option<Error> {
        if self.engine.closing.load(Ordering::Relaxed) {
            Some(Error::ShuttingDown)
        } else if self.is_cancelled() {
            Some(Error::Closed)
        } else {
            None
        }
    }

    /// Puts a task whose capacity permit is already taken into the pool.
    pub(crate) fn enqueue<In>(
        self: &Arc<Self>,
        id: TaskId,
        core: &Arc<HandlerCore>,
        params: In,
        opts: TaskOptions,
        reply: Option<oneshot::Sender<TaskResult>>,
    ) -> Result<TaskHandle, Rejected<In>>
    where
        In: Send + 'static,
    {
        let managed = opts.ordering_key.is_some()
            || opts.delay.is_some()
            || core.config.concurrency.is_some()
            || core.config.rate.is_some()
            || core.lane != Lane::Io
            || !self.engine.fast_io;
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
            self.engine
                .events
                .send(Event::Submit(env))
                .map_err(|e| match e.0 {
                    Event::Submit(env) => Some(env),
                    _ => None,
                })
        } else {
            self.engine.ready.send(Ready { env, slot: None });
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
    pub(crate) async fn submit<In>(
        job: Option<&Arc<Self>>,
        id: TaskId,
        core: &Arc<HandlerCore>,
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
            Ok(()) => job.enqueue(id, core, params, opts, reply),
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
