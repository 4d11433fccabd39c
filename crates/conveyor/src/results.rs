//! Task results and the dedicated result handler that calls `on_task_complete`.
//!
//! Workers push each task's final [`TaskResult`] into the job's bounded result
//! queue (in batches, see `outbox`) and go back to work; a dedicated OS thread
//! drains the queue and calls the callbacks, so a slow (even blocking) callback
//! never runs on a worker or on the async runtime. Under load it takes results
//! in batches, pausing between them for as long as the flow allows (see
//! [`ResultPause`]). Only when the result queue is full do workers
//! wait: its capacity is how much callback slowness the workers absorb.
//!
//! The job is complete when the queue's last sender is gone: senders are held by
//! the job's producers and by every task not yet reported, so disconnection means
//! exactly "producers done and every task has an outcome".

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant as StdInstant;

use tokio::sync::oneshot;
use tokio::time::Instant;

use conveyor_core::{Outcome, TaskId};

use crate::engine::result_pause::ResultPause;
use crate::engine::result_queue::ResultReceiver;
use crate::handler_name::HandlerName;
use crate::output::Output;
use crate::summary::{JobSummary, SummaryRecorder};

/// The final result of one task, as given to `on_task_complete`.
#[derive(Debug)]
pub struct TaskResult {
    /// The task's id.
    pub id: TaskId,
    /// The handler's name.
    pub handler: HandlerName,
    /// The ordering key, if the task had one.
    pub ordering_key: Option<Arc<str>>,
    /// Attempts started (0 when the task was cancelled before its first start).
    pub attempts: u32,
    /// How the task ended.
    pub outcome: Outcome<Output>,
    /// When the task was submitted.
    pub submitted_at: Instant,
    /// When the last attempt started, if one did.
    pub started_at: Option<Instant>,
    /// When the outcome was decided.
    pub finished_at: Instant,
}

impl TaskResult {
    /// The success value, if the task succeeded with a `T`.
    pub fn output<T: 'static>(&self) -> Option<&T> {
        match &self.outcome {
            Outcome::Succeeded(out) => out.downcast_ref::<T>(),
            _ => None,
        }
    }
}

/// Called with every task's result, on the result handler thread.
pub type OnTaskComplete = Box<dyn FnMut(TaskResult) + Send>;
/// Called once with the job's summary, on the result handler thread.
pub type OnJobComplete = Box<dyn FnOnce(&JobSummary) + Send>;

/// Starts the result handler thread of one job.
pub(crate) fn spawn_result_handler(
    rx: ResultReceiver,
    mut on_task: Option<OnTaskComplete>,
    on_job: Option<OnJobComplete>,
    started: StdInstant,
    done: oneshot::Sender<JobSummary>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("conveyor-results".into())
        .spawn(move || {
            let mut recorder = SummaryRecorder::default();
            // The handler references of a batch's results, let go of together.
            let mut spent = Vec::new();
            let mut handle = |batch: Vec<TaskResult>| {
                for mut result in batch {
                    result.handler.detach_into(&mut spent);
                    recorder.record(&result);
                    if let Some(cb) = on_task.as_mut() {
                        if catch_unwind(AssertUnwindSafe(|| cb(result))).is_err() {
                            tracing::error!("on_task_complete panicked; the job goes on");
                        }
                    }
                }
                spent.clear();
            };
            // Block for the first result; then, while results keep coming, drain in
            // batches with a short pause between them instead of being woken for
            // every single result.
            let mut pause = ResultPause::new(rx.room());
            'outer: while let Some(first) = rx.recv() {
                handle(first);
                loop {
                    pause.wait();
                    let mut found = 0;
                    loop {
                        match rx.try_recv() {
                            Ok(batch) => {
                                found += batch.len();
                                handle(batch);
                            }
                            Err(false) => break,
                            Err(true) => break 'outer,
                        }
                    }
                    pause.found(found);
                    if found == 0 {
                        break;
                    }
                }
            }
            drop(rx);
            let summary = recorder.finish(started.elapsed());
            if let Some(cb) = on_job {
                if catch_unwind(AssertUnwindSafe(|| cb(&summary))).is_err() {
                    tracing::error!("on_job_complete panicked");
                }
            }
            let _ = done.send(summary);
        })
        .map(|_| ())
}
