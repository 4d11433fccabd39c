//! Task records kept beside the broker: RabbitMQ keeps messages, not
//! records, so (as Celery separates its broker from its result backend) a
//! backend may be given a store that keeps one record per task for it, any
//! backend with the record keeper part ([`RecordKeeper`]; Redis has it), in
//! that store's own format: `amqp://…?results=redis://HOST/DB?prefix=P`.
//! Results, `wait()` and `conveyor show` read them through the keeper's
//! result store.
//!
//! The process that did a step writes the record: at enqueue (available or
//! scheduled) and reserve (running), and at each report (retrying,
//! completed with its result, dead, cancelled), follow-ups included; one
//! `keep` call per batch, whatever its size. The keeper expires finished
//! records after the retention, unfinished ones the dead retention after
//! they were due (each write drops a batch of the expired ones, and every
//! backend the rest once a minute: `backend::expire`), and wakes result waiters
//! when a finished one is kept.
//!
//! A report's record is written just before its commit, the others after
//! their broker step. A commit once sent is applied whenever it reaches the
//! broker, even after its worker gave up on it or died, and a record
//! written after it would then never be: the task done, its record running
//! for good. Written first, a report's record is at most one step ahead
//! until the task's next step: when its commit never applies, the delivery
//! comes back and the next reservation writes the record again. A worker
//! that dies between a reservation and its record leaves the record one
//! step behind until the task's next step. A task the broker dead-letters
//! on its own (`delivery_limit`) keeps its last record.
//!
//! When the store does not answer, an enqueue fails before it publishes
//! (nothing is sent that has no record), and a report fails before its
//! commit, so the worker settles it again once the store is back: a task is
//! never acknowledged with its result dropped. A reservation's record is
//! only a step of progress: one that cannot be written is skipped (the
//! record says available a little longer).
//!
//! It keeps no attempt history ([`TaskRecord::history`] stays empty, and
//! the backend's `Capabilities::history` is unset): a record can lag its
//! broker step, and a killed worker's delivery comes back from the broker
//! with nothing telling which attempt's lease ran out, so a history here
//! would guess.

use std::sync::Arc;

use conveyor_core::{
    Backend, Error, RecordKeeper, ResultStore, Retention, TaskId, TaskRecord, TaskState, Timestamp,
};

use crate::message::TaskMessage;

/// The store that keeps this backend's task records.
pub(crate) struct Records {
    keeper: Arc<dyn Backend>,
    retention: Retention,
}

impl Records {
    /// Records kept by `keeper`, which must have the record keeper and
    /// result store parts; finished ones kept for `retention`.
    pub(crate) fn new(keeper: Arc<dyn Backend>, retention: Retention) -> Result<Records, Error> {
        let refuse = |e: Error| {
            Error::InvalidConfig(format!(
                "the {} store cannot keep RabbitMQ's task records: {e}",
                keeper.kind()
            ))
        };
        keeper.record_keeper().map_err(refuse)?;
        keeper.result_store().map_err(refuse)?;
        Ok(Records { keeper, retention })
    }

    /// The keeper's record keeper part.
    pub(crate) fn keeper(&self) -> Result<&dyn RecordKeeper, Error> {
        self.keeper.record_keeper()
    }

    /// Writes `records` in one step.
    pub(crate) async fn put(&self, records: &[TaskRecord]) -> Result<(), Error> {
        if records.is_empty() {
            return Ok(());
        }
        self.keeper()?.keep(records, self.retention).await
    }

    /// Removes records (of tasks whose enqueue failed); a failure leaves
    /// them to expire.
    pub(crate) async fn forget(&self, ids: &[TaskId]) {
        if let Ok(keeper) = self.keeper() {
            if let Err(e) = keeper.forget(ids).await {
                tracing::warn!(error = %e.chain(), "could not remove the records of tasks never enqueued; they expire alone");
            }
        }
    }

    /// The keeper's result store, where the records are read.
    pub(crate) fn store(&self) -> Result<&dyn ResultStore, Error> {
        self.keeper.result_store()
    }

    /// The store that keeps them.
    pub(crate) fn keeper_backend(&self) -> &Arc<dyn Backend> {
        &self.keeper
    }
}

/// The record of `m` in `state`: `attempts` started so far, waiting until
/// `run_at`; `finished_at` for a final state.
pub(crate) fn record(
    m: &TaskMessage,
    state: TaskState,
    attempts: u32,
    now: Timestamp,
) -> TaskRecord {
    TaskRecord {
        id: m.id,
        queue: m.queue.clone(),
        handler: m.handler.clone(),
        state,
        payload: m.payload.clone(),
        priority: 0,
        attempts,
        max_attempts: m.max_attempts,
        run_at: m.due_at,
        unique_key: None,
        ordering_key: None,
        result: None,
        error: m.error.clone(),
        created_at: m.enqueued_at,
        finished_at: state.is_finished().then_some(now),
        trace: m.trace.clone(),
        keep: m.keep,
        // The task's own keep; a report's retention is stamped over it
        // where the task has none (`Inner::plan`).
        expires_at: m.keep.filter(|_| state.is_finished()).map(|k| now.plus(k)),
        history: Vec::new(),
    }
}

/// A waiting task's record as enqueued (scheduled when due later).
pub(crate) fn waiting(m: &TaskMessage, now: Timestamp) -> TaskRecord {
    let state = if m.due_at.0 > now.0 {
        TaskState::Scheduled
    } else {
        TaskState::Available
    };
    record(m, state, m.attempts, now)
}
