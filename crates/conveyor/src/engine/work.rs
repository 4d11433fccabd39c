//! What the engine runs: a handler with its types erased ([`HandlerCore`]),
//! its limits and failure policy ([`HandlerConfig`]), and the [`Work`] one
//! attempt does in its lane.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use conveyor_core::{Lane, Rate, RetryPolicy, TaskError};

use crate::engine::context::TaskContext;
use crate::lane::process::{exit_to_result, ProcessCommand};
use crate::output::Output;

/// The limits and failure policy of a handler.
#[derive(Debug, Clone, Default)]
pub struct HandlerConfig {
    /// At most this many tasks of the handler run at once (across all jobs).
    pub concurrency: Option<u32>,
    /// At most this rate of starts.
    pub rate: Option<Rate>,
    /// Attempts and backoff.
    pub retry: RetryPolicy,
    /// True once the handler chose its retry policy ([`Handler::retry`](crate::Handler::retry)):
    /// its `max_attempts` then caps the attempts a durable task gets, even
    /// when it is one (no retry). Without it, the task's own attempts decide.
    pub retry_chosen: bool,
    /// Time limit of one attempt (a task's own timeout overrides it).
    pub timeout: Option<Duration>,
}

/// What one attempt does, by lane.
pub(crate) enum Work {
    /// A future for the runtime.
    Io(BoxFuture<'static, Result<Output, TaskError>>),
    /// A closure for a cpu-lane thread.
    Cpu(Box<dyn FnOnce() -> Result<Output, TaskError> + Send>),
    /// A child process.
    Process(ProcessCommand),
    /// The attempt could not be set up.
    Failed(TaskError),
}

/// A task's params as the engine holds them: an `Option<In>`, type-erased.
pub(crate) type Params = dyn Any + Send;
/// Builds one attempt's work from the params (taken on the task's last attempt,
/// cloned on the others) and the context.
pub(crate) type WorkFn = dyn Fn(&mut Params, bool, TaskContext) -> Work + Send + Sync;

/// The erased part of a handler shared by the engine.
pub(crate) struct HandlerCore {
    pub(crate) id: u64,
    pub(crate) name: Arc<str>,
    pub(crate) lane: Lane,
    pub(crate) config: HandlerConfig,
    /// The most tasks that can really run at once (a persistent handler's
    /// children): a higher [`Handler::concurrency`](crate::Handler::concurrency) is lowered to it, so a
    /// task never starts (and its timeout never runs) waiting for a child.
    pub(crate) max_concurrency: Option<u32>,
    pub(crate) work: Arc<WorkFn>,
}

impl HandlerCore {
    /// Builds one attempt's work from the task's params: taken when this is the
    /// `last` attempt, cloned otherwise (a retry needs them again).
    pub(crate) fn work(&self, params: &mut Params, last: bool, ctx: TaskContext) -> Work {
        (self.work)(params, last, ctx)
    }
}

/// Runs one process-lane command and maps its exit to a result.
pub(crate) async fn run_process(cmd: ProcessCommand) -> Result<Output, TaskError> {
    cmd.run().await.and_then(exit_to_result).map(Output::new)
}
