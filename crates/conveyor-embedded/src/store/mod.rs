//! The backend's operations as SQL on one connection, each run inside a
//! transaction that the database thread (`crate::db_thread`) opened.
//!
//! Every method is one operation of the [`Backend`](conveyor_core::Backend)
//! contract with its exact semantics; none of them begins or commits, so the
//! thread can put many callers' operations into one transaction (group commit).
//! Times come from the injected [`Clock`]. Values read back from the file are
//! checked, never trusted: a row this crate could not have written (an unknown
//! state code, a negative count, a wrong type) becomes an
//! [`Error::Backend`] naming the task and column, and a reserved row that cannot
//! be decoded is dead-lettered instead of wedging its queue.
//!
//! One file per duty, each adding its operations to [`Store`]: `enqueue`;
//! `reserve` (due tasks promoted first); `renew`; `finish` (plain
//! completions applied together by `completion_batch`); `results` (one task
//! read); `administration` (cancel, requeue and purge dead tasks);
//! `maintenance` (expired leases, pruning, the lead); `workflows` (graphs
//! stored and moved forward by the operations that end their tasks). Global limits, paused
//! queues, the registry and inspection add theirs beside their tables
//! (`crate::limits`, `crate::queue_control`, `crate::registry`,
//! `crate::inspect`); rows are read back by `crate::row`.
//!
//! [`Error::Backend`]: conveyor_core::Error::Backend

mod administration;
mod completion_batch;
mod enqueue;
mod finish;
mod maintenance;
mod renew;
mod reserve;
mod results;
mod schedules;
mod workflow_list;
mod workflows;

use std::sync::Arc;

use conveyor_core::{Clock, TaskId, Timestamp};
use rusqlite::Connection;

use crate::held_names::HeldNames;
use crate::tally::Tally;

/// The connection, the clock, and what the current transaction did that
/// waiting workers and result waiters should hear about.
pub(crate) struct Store {
    /// The connection (owned by the database thread).
    pub(crate) conn: Connection,
    clock: Arc<dyn Clock>,
    /// Set when an operation made tasks available; the thread wakes waiting
    /// workers after the commit and clears it.
    pub(crate) woke: bool,
    /// Tasks the transaction brought to a final state; the thread posts them
    /// for result waiters after the commit and clears it. (A request rolled
    /// back to its savepoint leaves its ids here: a spurious wake-up, which
    /// result waiters allow.)
    pub(crate) finished: Vec<TaskId>,
    /// Count changes of the running request, written at its end.
    pub(crate) tally: Tally,
    /// Queue and handler of the tasks this store reserved.
    held: HeldNames,
    /// Workflows' graphs read back.
    graphs: conveyor_core::workflow::Graphs,
}

impl Store {
    /// A store on an opened connection.
    pub(crate) fn new(conn: Connection, clock: Arc<dyn Clock>) -> Self {
        Self {
            conn,
            clock,
            woke: false,
            finished: Vec::new(),
            tally: Tally::default(),
            held: HeldNames::default(),
            graphs: conveyor_core::workflow::Graphs::default(),
        }
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// Duration as whole milliseconds (saturating), as the time columns hold it.
pub(super) fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
