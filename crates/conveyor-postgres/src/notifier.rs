//! Workers' wake-up hints for enqueued work, sent after the enqueue commits.
//!
//! PostgreSQL takes one server-wide lock at the commit of every transaction
//! that called `pg_notify`, and holds it through the commit's WAL flush, so
//! that notifications queue in commit order. A wake-up inside each enqueue
//! statement therefore made every enqueue's commit wait for the one before
//! it (and for every other notifier on the server): 32 callers made
//! 2,500–2,600 single enqueues/s with it and 3,800–4,500 without
//! (`docs/postgres.md`).
//!
//! The wake-up is only a hint (a worker that misses it finds the work at its
//! next poll), so an `enqueue_many` made while others of the same backend are
//! under way sends it after its commit, through this backend's notifier: one
//! task that takes every queue named since its last send and names each
//! once, in one statement, in a transaction that commits
//! asynchronously (`SET LOCAL synchronous_commit = off`: nothing in it needs
//! to survive a crash, so it holds that lock only for the commit's memory
//! work, not a flush). A hint that fails to send is dropped. An enqueue made
//! alone keeps the wake-up in its statement: there is no other commit for it
//! to hold up, and a second transaction per call would cost a lone caller a
//! sixth of its rate (measured).
//!
//! `enqueue_in` keeps its wake-up inside the caller's transaction: only the
//! caller sees when that commits. The result waiters' notifications stay in
//! the finishing statement too: a waiter relies on hearing of its task.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::mpsc;

use crate::statements::notify_queues;

/// The pause after a send that failed, so an outage is not hammered.
const AFTER_FAILURE: Duration = Duration::from_millis(200);

/// Sends wake-ups for queues after their enqueues committed.
pub(crate) struct Notifier {
    pool: Pool,
    channel: String,
    sql: String,
    /// The running task's inbox; replaced when that task is gone (its
    /// runtime shut down).
    inbox: Mutex<Option<mpsc::UnboundedSender<Vec<String>>>>,
    /// Enqueues under way.
    in_flight: InFlight,
}

/// A count of enqueues under way.
#[derive(Default)]
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Counts one more until the turn is dropped.
    fn enter(&self) -> Turn {
        let before = self.0.fetch_add(1, Ordering::AcqRel);
        Turn {
            alone: before == 0,
            in_flight: self.0.clone(),
        }
    }
}

/// One enqueue under way (see [`Notifier::enter`]).
pub(crate) struct Turn {
    alone: bool,
    in_flight: Arc<AtomicUsize>,
}

impl Turn {
    /// True when no other enqueue was under way as this one began.
    pub(crate) fn alone(&self) -> bool {
        self.alone
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Notifier {
    /// A notifier on `pool` for the channel `channel`; its task starts with
    /// the first wake-up.
    pub(crate) fn new(pool: Pool, channel: String) -> Self {
        Self {
            pool,
            channel,
            sql: format!(
                "SELECT {}",
                notify_queues("unnest($2::text[]) AS u(queue)", "$1")
            ),
            inbox: Mutex::new(None),
            in_flight: InFlight::default(),
        }
    }

    /// Counts an enqueue under way until the turn is dropped.
    pub(crate) fn enter(&self) -> Turn {
        self.in_flight.enter()
    }

    /// Wakes the workers of `queues` once the notifier's task gets to it.
    /// Never waits. Must be called from within a tokio runtime.
    pub(crate) fn wake(&self, queues: Vec<String>) {
        if queues.is_empty() {
            return;
        }
        // Nothing panics while holding it, and what it holds is valid anyway.
        let mut inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
        let queues = match inbox.as_ref() {
            Some(tx) => match tx.send(queues) {
                Ok(()) => return,
                // The task is gone with the runtime it ran on.
                Err(mpsc::error::SendError(queues)) => queues,
            },
            None => queues,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(queues);
        tokio::spawn(run(
            self.pool.clone(),
            self.channel.clone(),
            self.sql.clone(),
            rx,
        ));
        *inbox = Some(tx);
    }
}

/// The notifier's task: until the backend is dropped, sends what has
/// arrived since its last send as one statement.
async fn run(
    pool: Pool,
    channel: String,
    sql: String,
    mut inbox: mpsc::UnboundedReceiver<Vec<String>>,
) {
    let mut queues = BTreeSet::new();
    while let Some(first) = inbox.recv().await {
        queues.extend(first);
        while let Ok(more) = inbox.try_recv() {
            queues.extend(more);
        }
        let batch: Vec<String> = std::mem::take(&mut queues).into_iter().collect();
        if let Err(e) = send(&pool, &channel, &sql, &batch).await {
            tracing::debug!(error = %e, queues = batch.len(), "a wake-up was not sent; workers find the work at their next poll");
            tokio::time::sleep(AFTER_FAILURE).await;
        }
    }
}

/// One asynchronously committed transaction that notifies `queues`.
async fn send(
    pool: &Pool,
    channel: &str,
    sql: &str,
    queues: &[String],
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    tx.batch_execute("SET LOCAL synchronous_commit = off")
        .await?;
    let statement = tx.prepare_cached(sql).await?;
    tx.query_one(&statement, &[&channel, &queues]).await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enqueue_is_alone_only_while_no_other_is_under_way() {
        let in_flight = InFlight::default();
        let first = in_flight.enter();
        assert!(first.alone());
        let second = in_flight.enter();
        assert!(!second.alone(), "the first is still under way");
        drop(first);
        assert!(!in_flight.enter().alone(), "the second is still under way");
        drop(second);
        assert!(in_flight.enter().alone(), "none is under way");
    }
}
