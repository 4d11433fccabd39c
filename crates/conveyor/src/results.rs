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
use std::time::Instant as StdInstant;

use tokio::sync::oneshot;

use crate::engine::result_pause::ResultPause;
use crate::engine::result_queue::ResultReceiver;
use crate::engine::task_result::TaskResult;
use crate::summary::{JobSummary, SummaryRecorder};

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
