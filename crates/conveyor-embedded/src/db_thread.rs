//! The database thread and group commit.
//!
//! All SQLite work happens on one dedicated OS thread that owns the connection,
//! so async callers on any tokio runtime (current-thread included) never block:
//! they send a request down a channel and await a oneshot reply.
//!
//! Group commit: with `synchronous=FULL` every commit costs an fsync, which caps
//! one-operation-per-transaction at a few thousand operations a second. So the
//! thread takes a request, then drains every other request already waiting (up
//! to [`MAX_BATCH_REQUESTS`] requests or [`MAX_BATCH_WEIGHT`] tasks), runs them
//! all in one transaction and answers each only after the `COMMIT` returned:
//! callers that arrive together share one fsync, and a reply always means
//! "durable".
//!
//! Each writing request runs inside its own `SAVEPOINT` when the batch holds
//! more than one, so one request's error (a stale lease, an unknown id, a bad
//! task, an unreadable row) rolls back that request alone and the others
//! commit. Only a failure of the transaction as a whole (`BEGIN`, `COMMIT`, or an
//! error after which SQLite rolled the transaction back itself, such as a full
//! disk) fails every request of the batch, and then nothing of it is applied.
//! A batch of reads only opens a deferred transaction and takes no write lock.

use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

use conveyor_core::{BackendErrorKind, Error, FinishBoard};
use tokio::sync::{oneshot, Notify};

use crate::store::{db_err, Store};

/// Requests run in one transaction at most.
pub(crate) const MAX_BATCH_REQUESTS: usize = 1024;

/// Tasks (enqueued, reserved, reported) one transaction takes on at most
/// before the thread stops draining (a single bigger request still runs whole).
pub(crate) const MAX_BATCH_WEIGHT: usize = 32 * 1024;

/// What the thread receives.
pub(crate) enum Message {
    /// An operation to run.
    Job(Box<dyn Job>),
    /// Stop after the requests before this one; answer once the connection is
    /// closed.
    Close(oneshot::Sender<()>),
}

/// One caller's operation, run inside the batch's transaction.
pub(crate) trait Job: Send {
    /// Whether it may write (a batch of reads needs no write lock).
    fn writes(&self) -> bool;
    /// Roughly how many tasks it touches, to bound a batch.
    fn weight(&self) -> usize;
    /// Runs it, keeping its outcome for [`Job::reply`]. Returns false when it
    /// failed, so its writes must be undone.
    fn run(&mut self, store: &mut Store) -> bool;
    /// Sends the outcome, or `batch_failure` when the transaction failed as a
    /// whole.
    fn reply(self: Box<Self>, batch_failure: Option<&str>);
}

/// A [`Job`] made of a closure and the channel its caller awaits.
pub(crate) struct Call<T, F> {
    work: Option<F>,
    writes: bool,
    weight: usize,
    outcome: Option<Result<T, Error>>,
    reply: oneshot::Sender<Result<T, Error>>,
}

impl<T, F> Call<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut Store) -> Result<T, Error> + Send + 'static,
{
    /// A job running `work`, answering on `reply`.
    pub(crate) fn new(
        writes: bool,
        weight: usize,
        work: F,
        reply: oneshot::Sender<Result<T, Error>>,
    ) -> Self {
        Self {
            work: Some(work),
            writes,
            weight,
            outcome: None,
            reply,
        }
    }
}

impl<T, F> Job for Call<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut Store) -> Result<T, Error> + Send + 'static,
{
    fn writes(&self) -> bool {
        self.writes
    }

    fn weight(&self) -> usize {
        self.weight
    }

    fn run(&mut self, store: &mut Store) -> bool {
        let Some(work) = self.work.take() else {
            return true;
        };
        let outcome = work(store);
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn reply(self: Box<Self>, batch_failure: Option<&str>) {
        let outcome = match (batch_failure, self.outcome) {
            // A transaction that failed as a whole (busy past the timeout, an
            // I/O error): nothing was applied, and the same call may pass.
            (Some(why), _) => Err(Error::backend(BackendErrorKind::Unavailable, why)),
            (None, Some(outcome)) => outcome,
            (None, None) => Err(Error::backend_other("the request was not run")),
        };
        // The caller may have stopped waiting; the work is done either way.
        let _ = self.reply.send(outcome);
    }
}

/// Who hears of a commit: waiting workers (work became available) and result
/// waiters (tasks finished).
pub(crate) struct Listeners {
    /// Woken after a commit that made tasks available.
    pub(crate) work: Arc<Notify>,
    /// Posted the tasks a commit finished.
    pub(crate) finished: Arc<FinishBoard>,
}

/// The thread's loop: batches until every sender is gone or `Close` arrives.
pub(crate) fn run(mut store: Store, inbox: Receiver<Message>, listeners: Listeners) {
    let mut batch: Vec<Box<dyn Job>> = Vec::new();
    let mut closing = None;
    while closing.is_none() {
        let first = match inbox.recv() {
            Ok(Message::Job(job)) => job,
            Ok(Message::Close(done)) => {
                closing = Some(done);
                break;
            }
            Err(_) => break,
        };
        let mut weight = first.weight();
        batch.push(first);
        while batch.len() < MAX_BATCH_REQUESTS && weight < MAX_BATCH_WEIGHT {
            match inbox.try_recv() {
                Ok(Message::Job(job)) => {
                    weight = weight.saturating_add(job.weight());
                    batch.push(job);
                }
                Ok(Message::Close(done)) => {
                    closing = Some(done);
                    break;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        run_batch(&mut store, &mut batch, &listeners);
    }
    // Dropping the store closes the connection (and checkpoints the WAL when
    // this is the file's last connection).
    drop(store);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// Runs `batch` in one transaction and replies to each job. Result waiters
/// hear of finished tasks before the callers get their replies, so a finish
/// that returned has been posted.
fn run_batch(store: &mut Store, batch: &mut Vec<Box<dyn Job>>, listeners: &Listeners) {
    store.woke = false;
    store.finished.clear();
    store.tally.clear();
    let writes = batch.iter().any(|j| j.writes());
    let isolate = batch.len() > 1;
    let failure = run_in_transaction(store, batch, writes, isolate);
    let woke = store.woke && failure.is_none();
    if failure.is_none() {
        listeners.finished.post(store.finished.drain(..));
    }
    for job in batch.drain(..) {
        job.reply(failure.as_deref());
    }
    if woke {
        listeners.work.notify_waiters();
    }
}

/// Runs the jobs between `BEGIN` and `COMMIT`. Returns why the transaction
/// failed as a whole, if it did (then it is rolled back).
fn run_in_transaction(
    store: &mut Store,
    batch: &mut [Box<dyn Job>],
    writes: bool,
    isolate: bool,
) -> Option<String> {
    let begin = if writes { "BEGIN IMMEDIATE" } else { "BEGIN" };
    if let Err(e) = exec(store, begin) {
        return Some(format!("cannot begin a transaction: {e}"));
    }
    for job in batch.iter_mut() {
        let guarded = isolate && job.writes();
        if guarded {
            if let Err(e) = exec(store, "SAVEPOINT job") {
                return Some(abandon(store, format!("cannot open a savepoint: {e}")));
            }
        }
        let ok = job.run(store);
        // A request's count changes join the transaction's when it stands.
        if ok {
            store.tally.keep_request();
        } else {
            store.tally.drop_request();
        }
        if store.conn.is_autocommit() {
            // SQLite rolled the whole transaction back (disk full, I/O error).
            return Some("the transaction was rolled back by SQLite".to_string());
        }
        if !ok && !guarded {
            if isolate {
                continue; // a read: nothing to undo
            }
            // The only job of the batch failed: undo it; its own error is its reply.
            return match exec(store, "ROLLBACK") {
                Ok(()) => None,
                Err(e) => Some(abandon(store, format!("cannot roll back: {e}"))),
            };
        }
        if guarded {
            let end = if ok {
                exec(store, "RELEASE job")
            } else {
                exec(store, "ROLLBACK TO job").and_then(|()| exec(store, "RELEASE job"))
            };
            if let Err(e) = end {
                return Some(abandon(store, format!("cannot close a savepoint: {e}")));
            }
        }
    }
    // The kept counts of every request that stood, written with them.
    if let Err(e) = store.tally.flush(&store.conn) {
        return Some(abandon(store, format!("cannot write the kept counts: {e}")));
    }
    match exec(store, "COMMIT") {
        Ok(()) => None,
        Err(e) => Some(abandon(store, format!("commit failed: {e}"))),
    }
}

/// Rolls back what is left of a failed transaction, returning `why`.
fn abandon(store: &mut Store, why: String) -> String {
    tracing::warn!(error = %why, "embedded: transaction failed, rolling back");
    if !store.conn.is_autocommit() {
        if let Err(e) = exec(store, "ROLLBACK") {
            tracing::error!(error = %e, "embedded: rollback failed");
        }
    }
    why
}

/// Runs a transaction-control statement (prepared once, then cached).
fn exec(store: &mut Store, sql: &str) -> Result<(), Error> {
    store
        .conn
        .prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(db_err)
}
