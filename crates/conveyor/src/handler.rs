//! Handlers: the code that runs a task, under a stable name, in a lane, with its
//! own limits, retry policy and timeout.
//!
//! A [`Handler<In, Out>`] is a cheap, clonable value. Submitting `In` params to it
//! is checked at compile time; inside the engine the params and output are
//! type-erased so one job can mix handlers of different types and lanes. Every
//! configuring call (`concurrency`, `rate`, `retry`, `timeout`) returns a new
//! handler with its own identity, so limits always belong to exactly one
//! configuration.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::panic::{catch_unwind, AssertUnwindSafe};

use futures_util::FutureExt;

use conveyor_core::{Lane, Outcome, RetryPolicy, TaskError};

use crate::engine::context::TaskContext;
use crate::engine::work::{run_process, HandlerConfig, HandlerCore, Params, Work, WorkFn};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::lane::persistent::{Call, PersistentPool, PersistentProcess};
use crate::lane::process::ProcessCommand;
use crate::output::Output;
use conveyor_core::Rate;

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The params of one attempt: taken on the `last` one, cloned otherwise.
fn params_of<In: Clone + 'static>(
    params: &mut Params,
    last: bool,
    name: &str,
) -> Result<In, TaskError> {
    let Some(slot) = params.downcast_mut::<Option<In>>() else {
        return Err(mismatch(name));
    };
    let p = if last { slot.take() } else { slot.clone() };
    p.ok_or_else(|| TaskError::permanent("the task's params are gone"))
}

fn mismatch(name: &str) -> TaskError {
    TaskError::permanent(format!("handler {name}: params of an unexpected type"))
}

/// A named piece of code that runs tasks with params `In` and returns `Out`.
pub struct Handler<In, Out> {
    pub(crate) core: Arc<HandlerCore>,
    _types: PhantomData<fn(In) -> Out>,
}

impl<In, Out> Clone for Handler<In, Out> {
    fn clone(&self) -> Self {
        Self {
            core: self.core.clone(),
            _types: PhantomData,
        }
    }
}

impl<In, Out> fmt::Debug for Handler<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("name", &self.core.name)
            .field("lane", &self.core.lane)
            .field("config", &self.core.config)
            .finish()
    }
}

impl<In, Out> Handler<In, Out>
where
    In: Clone + Send + 'static,
    Out: Send + 'static,
{
    fn from_work(name: &str, lane: Lane, work: Arc<WorkFn>) -> Self {
        Self {
            core: Arc::new(HandlerCore {
                id: next_id(),
                name: Arc::from(name),
                lane,
                config: HandlerConfig::default(),
                max_concurrency: None,
                work,
            }),
            _types: PhantomData,
        }
    }

    /// An `io`-lane handler: an async function run on the tokio runtime.
    pub fn io<F, Fut, E>(name: &str, f: F) -> Self
    where
        F: Fn(In, TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Out, E>> + Send + 'static,
        E: Into<TaskError> + 'static,
    {
        let owner: Arc<str> = Arc::from(name);
        let work = move |params: &mut Params, last: bool, ctx: TaskContext| match params_of::<In>(
            params, last, &owner,
        ) {
            Ok(p) => {
                let fut = f(p, ctx);
                Work::Io(Box::pin(async move {
                    fut.await.map(Output::new).map_err(Into::into)
                }))
            }
            Err(e) => Work::Failed(e),
        };
        Self::from_work(name, Lane::Io, Arc::new(work))
    }

    /// A `cpu`-lane handler: a blocking function run on the pool's CPU threads.
    /// Long computations should check [`TaskContext::is_cancelled`] now and then.
    pub fn cpu<F, E>(name: &str, f: F) -> Self
    where
        F: Fn(In, TaskContext) -> Result<Out, E> + Send + Sync + 'static,
        E: Into<TaskError> + 'static,
    {
        let owner: Arc<str> = Arc::from(name);
        let f = Arc::new(f);
        let work = move |params: &mut Params, last: bool, ctx: TaskContext| match params_of::<In>(
            params, last, &owner,
        ) {
            Ok(p) => {
                let f = f.clone();
                Work::Cpu(Box::new(move || {
                    f(p, ctx).map(Output::new).map_err(Into::into)
                }))
            }
            Err(e) => Work::Failed(e),
        };
        Self::from_work(name, Lane::Cpu, Arc::new(work))
    }

    /// Returns a copy whose configuration is changed by `f`, with its own identity.
    fn reconfigured(&self, f: impl FnOnce(&mut HandlerConfig)) -> Self {
        let mut config = self.core.config.clone();
        f(&mut config);
        Self {
            core: Arc::new(HandlerCore {
                id: next_id(),
                name: self.core.name.clone(),
                lane: self.core.lane,
                config,
                max_concurrency: self.core.max_concurrency,
                work: self.core.work.clone(),
            }),
            _types: PhantomData,
        }
    }

    /// At most `n` tasks of this handler run at once. (A persistent handler
    /// runs at most as many tasks as it may have children: a larger `n` is
    /// lowered to that.)
    pub fn concurrency(self, n: u32) -> Self {
        let cap = self.core.max_concurrency.unwrap_or(u32::MAX);
        self.reconfigured(|c| c.concurrency = Some(n.clamp(1, cap)))
    }

    /// Starts at most at this rate.
    pub fn rate(self, rate: Rate) -> Self {
        self.reconfigured(|c| c.rate = Some(rate))
    }

    /// Retries failed attempts with this policy.
    pub fn retry(self, retry: RetryPolicy) -> Self {
        self.reconfigured(|c| {
            c.retry = retry;
            c.retry_chosen = true;
        })
    }

    /// Limits each attempt to `timeout`.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.reconfigured(|c| c.timeout = Some(timeout))
    }
}

impl<In> Handler<In, crate::lane::process::ProcessOutput>
where
    In: Clone + Send + 'static,
{
    /// A `process`-lane handler: builds a [`ProcessCommand`] from the params and runs
    /// it as a child process. Exit code 0 succeeds with the captured
    /// [`ProcessOutput`](crate::ProcessOutput); any other exit fails (retryable),
    /// with the output attached to the error as its detail.
    pub fn process<F>(name: &str, build: F) -> Self
    where
        F: Fn(In) -> Result<ProcessCommand, TaskError> + Send + Sync + 'static,
    {
        let owner: Arc<str> = Arc::from(name);
        let work = move |params: &mut Params, last: bool, _ctx: TaskContext| match params_of::<In>(
            params, last, &owner,
        )
        .and_then(&build)
        {
            Ok(cmd) => Work::Process(cmd),
            Err(e) => Work::Failed(e),
        };
        Self::from_work(name, Lane::Process, Arc::new(work))
    }
}

impl<In, Out> Handler<In, Out>
where
    In: Serialize + Clone + Send + 'static,
    Out: DeserializeOwned + Send + 'static,
{
    /// A `process`-lane handler served by **persistent** children: long-lived
    /// copies of one program, each fed one task at a time as a JSON line on
    /// its stdin and answering with a JSON line on its stdout (the
    /// [protocol](crate::lane::persistent::protocol)). The program starts once
    /// per child, not once per task. A child that crashes mid-task, hangs
    /// past the timeout or breaks the protocol is killed and replaced and the
    /// task retried by the handler's policy; see [`PersistentProcess`] for the
    /// pool's size and recycling. With [`PersistentProcess::processes`], the
    /// handler's concurrency is that many (a larger
    /// [`concurrency`](Handler::concurrency) is lowered to it): tasks beyond
    /// the children wait at dispatch, before their timeout starts.
    pub fn persistent(name: &str, spec: PersistentProcess) -> Self {
        Self::persistent_in(name, &PersistentPool::new(name, spec))
    }

    /// [`Handler::persistent`] served by the children of a pool other
    /// handlers may share (one program serving several handlers): the
    /// request names this handler. The handler's concurrency is capped at the
    /// pool's processes, as for a pool of its own; handlers sharing a pool
    /// together run at most that many tasks at once, the rest waiting for a
    /// free child.
    pub fn persistent_in(name: &str, pool: &PersistentPool) -> Self {
        let processes = pool.max_processes();
        let pool = pool.pool.clone();
        let owner: Arc<str> = Arc::from(name);
        let work = move |params: &mut Params, last: bool, ctx: TaskContext| match params_of::<In>(
            params, last, &owner,
        ) {
            Ok(p) => {
                let pool = pool.clone();
                let handler = owner.clone();
                Work::Io(Box::pin(async move {
                    let params = serde_json::to_value(&p).map_err(|e| {
                        TaskError::permanent(format!("cannot encode the params as JSON: {e}"))
                    })?;
                    let remaining = ctx
                        .deadline()
                        .map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
                    let call = Call {
                        handler: &handler,
                        id: ctx.id().0,
                        attempt: ctx.attempt(),
                        remaining,
                        params: &params,
                    };
                    let out = pool.run(call).await?;
                    let out: Out = serde_json::from_value(out).map_err(|e| {
                        TaskError::permanent(format!("the handler's result does not fit: {e}"))
                    })?;
                    Ok(Output::new(out))
                }))
            }
            Err(e) => Work::Failed(e),
        };
        let mut handler = Self::from_work(name, Lane::Process, Arc::new(work));
        if let Some(n) = processes {
            // Tasks beyond the children wait at dispatch, not inside an
            // attempt whose timeout is running.
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            handler = handler.concurrency(n);
            if let Some(core) = Arc::get_mut(&mut handler.core) {
                core.max_concurrency = Some(n);
            }
        }
        handler
    }
}

impl<In, Out> Handler<In, Out> {
    /// The handler's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The handler's lane.
    pub fn lane(&self) -> Lane {
        self.core.lane
    }

    /// The handler's configuration.
    pub fn config(&self) -> &HandlerConfig {
        &self.core.config
    }
}

impl<In, Out> Handler<In, Out>
where
    In: Clone + Send + 'static,
    Out: Send + 'static,
{
    /// A handler running this one over a whole batch of params in one task, in the
    /// same lane and under the same limits: for tasks so small that per-task
    /// overhead would dominate. Each item gets its own outcome; a panic or error
    /// in one item does not affect the others.
    pub fn batched(&self) -> Handler<Vec<In>, Vec<Outcome<Out>>> {
        let inner = self.core.clone();
        let lane = inner.lane;
        let work = move |params: &mut Params, last: bool, ctx: TaskContext| {
            let items = match params_of::<Vec<In>>(params, last, &inner.name) {
                Ok(items) => items,
                Err(e) => return Work::Failed(e),
            };
            let inner = inner.clone();
            if lane == Lane::Cpu {
                return Work::Cpu(Box::new(move || {
                    let outcomes = items
                        .into_iter()
                        .map(
                            |item| match inner.work(&mut Some(item), true, ctx.clone()) {
                                Work::Cpu(f) => item_outcome(catch_unwind(AssertUnwindSafe(f))),
                                Work::Failed(e) => Outcome::Failed(e),
                                _ => Outcome::Failed(TaskError::permanent(
                                    "lane mismatch in a batch",
                                )),
                            },
                        )
                        .collect::<Vec<Outcome<Out>>>();
                    Ok(Output::new(outcomes))
                }));
            }
            Work::Io(Box::pin(async move {
                let mut outcomes = Vec::with_capacity(items.len());
                for item in items {
                    let caught = match inner.work(&mut Some(item), true, ctx.clone()) {
                        Work::Io(fut) => AssertUnwindSafe(fut).catch_unwind().await,
                        Work::Process(cmd) => {
                            AssertUnwindSafe(run_process(cmd)).catch_unwind().await
                        }
                        Work::Failed(e) => Ok(Err(e)),
                        Work::Cpu(_) => Ok(Err(TaskError::permanent("lane mismatch in a batch"))),
                    };
                    outcomes.push(item_outcome::<Out>(caught));
                }
                Ok(Output::new(outcomes))
            }))
        };
        let core = HandlerCore {
            id: next_id(),
            name: Arc::from(format!("{}[batch]", self.core.name)),
            lane,
            config: HandlerConfig {
                retry: RetryPolicy::none(),
                retry_chosen: false,
                ..self.core.config.clone()
            },
            max_concurrency: self.core.max_concurrency,
            work: Arc::new(work),
        };
        Handler {
            core: Arc::new(core),
            _types: PhantomData,
        }
    }
}

/// One batch item's outcome from its caught result.
fn item_outcome<Out: 'static>(
    caught: Result<Result<Output, TaskError>, Box<dyn Any + Send>>,
) -> Outcome<Out> {
    match caught {
        Ok(Ok(out)) => match out.downcast::<Out>() {
            Ok(v) => Outcome::Succeeded(v),
            Err(_) => Outcome::Failed(TaskError::permanent("output of an unexpected type")),
        },
        Ok(Err(e)) => Outcome::Failed(e),
        Err(panic) => Outcome::Panicked(crate::engine::attempt::panic_message(&*panic)),
    }
}
