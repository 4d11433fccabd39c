//! The children of one program, serving one persistent handler or several:
//! started on demand, reused task after task, replaced when they break,
//! recycled when they grow old or fat.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Semaphore;

use conveyor_core::TaskError;

use super::child::{CallEnd, LiveChild};
use super::protocol::Request;
use super::spec::PersistentProcess;

/// The first pause before restarting after a crash; it doubles per crash in
/// a row, up to [`MAX_RESTART_DELAY`], and resets on the next success.
const FIRST_RESTART_DELAY: Duration = Duration::from_millis(100);
/// The longest pause before restarting a crashing handler.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(10);

/// One task for a child.
pub(crate) struct Call<'a> {
    /// The handler it is for (one program may serve several).
    pub(crate) handler: &'a str,
    /// The task's id.
    pub(crate) id: u64,
    /// The attempt, from 1.
    pub(crate) attempt: u32,
    /// Time left before the attempt's timeout, if it has one.
    pub(crate) remaining: Option<Duration>,
    /// The params.
    pub(crate) params: &'a serde_json::Value,
}

/// The children of a [`PersistentPool`](super::PersistentPool).
pub(crate) struct ChildPool {
    spec: PersistentProcess,
    /// What the logs call the pool: its handler, or the handlers sharing it.
    label: Arc<str>,
    idle: Mutex<Vec<LiveChild>>,
    permits: Option<Semaphore>,
    /// Crashes in a row (reset by a success).
    crashes: Mutex<u32>,
}

impl ChildPool {
    pub(crate) fn new(label: &str, spec: PersistentProcess) -> Self {
        Self {
            permits: spec.processes.map(Semaphore::new),
            spec,
            label: Arc::from(label),
            idle: Mutex::new(Vec::new()),
            crashes: Mutex::new(0),
        }
    }

    /// What its children run.
    pub(crate) fn spec(&self) -> &PersistentProcess {
        &self.spec
    }

    /// Runs one task on a free child (started if none is idle). Dropping the
    /// future mid-task (timeout, cancellation) kills that child.
    pub(crate) async fn run(&self, call: Call<'_>) -> Result<serde_json::Value, TaskError> {
        let line = Request {
            id: call.id,
            handler: call.handler,
            attempt: call.attempt,
            deadline_ms: call.remaining.and_then(super::protocol::deadline_ms),
            params: call.params,
        }
        .line()?;
        let _permit = match &self.permits {
            Some(s) => Some(
                s.acquire()
                    .await
                    .map_err(|_| TaskError::new("the handler's processes are shut down"))?,
            ),
            None => None,
        };
        let mut child = match self.take_idle() {
            Some(child) => child,
            None => self.start().await?,
        };
        match child.call(call.id, &line).await {
            CallEnd::Reply(reply) => {
                *self.crashes.lock() = 0;
                child.tasks += 1;
                self.put_back(child);
                reply
            }
            CallEnd::Broken(e) => {
                *self.crashes.lock() += 1;
                tracing::warn!(
                    target: "conveyor::handler",
                    handler = %call.handler,
                    task = call.id,
                    "{}; replacing it",
                    e.message()
                );
                Err(e)
            }
        }
    }

    /// An idle child that is still alive.
    fn take_idle(&self) -> Option<LiveChild> {
        let mut idle = self.idle.lock();
        while let Some(mut child) = idle.pop() {
            if !child.has_exited() {
                return Some(child);
            }
            tracing::warn!(
                target: "conveyor::handler",
                handler = %self.label,
                pid = child.pid,
                "an idle handler process exited; replacing it"
            );
        }
        None
    }

    /// Starts a child, after a pause when the last ones crashed.
    async fn start(&self) -> Result<LiveChild, TaskError> {
        let crashes = *self.crashes.lock();
        if crashes > 0 {
            let delay = FIRST_RESTART_DELAY
                .saturating_mul(1 << (crashes - 1).min(16))
                .min(MAX_RESTART_DELAY);
            tokio::time::sleep(delay).await;
        }
        LiveChild::start(&self.spec, &self.label)
    }

    /// Keeps a child that answered for the next task, or retires it when it
    /// has run its share of tasks or grown past the memory ceiling.
    fn put_back(&self, child: LiveChild) {
        let worn = self
            .spec
            .max_tasks_per_child
            .is_some_and(|n| child.tasks >= n);
        let fat = self.spec.max_memory.and_then(|limit| {
            child
                .resident_bytes()
                .filter(|rss| *rss > limit)
                .map(|rss| (rss, limit))
        });
        if !worn && fat.is_none() {
            self.idle.lock().push(child);
            return;
        }
        match fat {
            Some((rss, limit)) => tracing::info!(
                target: "conveyor::handler",
                handler = %self.label,
                pid = child.pid,
                "handler process uses {rss} bytes, over its max_memory of {limit}: replacing it"
            ),
            None => tracing::debug!(
                target: "conveyor::handler",
                handler = %self.label,
                pid = child.pid,
                "handler process ran {} tasks: replacing it",
                child.tasks
            ),
        }
        tokio::spawn(child.retire(self.spec.retire_grace));
    }
}
