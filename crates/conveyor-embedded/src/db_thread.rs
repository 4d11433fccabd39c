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

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::Arc;

use conveyor_core::{BackendErrorKind, Error, FinishBoard};
use tokio::sync::{oneshot, Notify};

use crate::error::db_err;
use crate::store::Store;

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
    /// Pause around a fork (`crate::fork`) after the requests before this one.
    Park(Park),
}

/// A pause around a fork: the thread closes its connection, says so on
/// `paused`, waits for `resume` (a message or its sender dropped), then
/// opens the file again.
pub(crate) struct Park {
    pub(crate) paused: SyncSender<()>,
    pub(crate) resume: Receiver<()>,
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

/// The thread's loop on the file at `path`: batches until every sender is
/// gone or `Close` arrives.
pub(crate) fn run(mut store: Store, path: PathBuf, inbox: Receiver<Message>, listeners: Listeners) {
    let mut batch: Vec<Box<dyn Job>> = Vec::new();
    let mut inbox = Inbox {
        inbox,
        closing: None,
        parking: None,
        weight: 0,
    };
    while inbox.closing.is_none() {
        match inbox.inbox.recv() {
            Ok(Message::Job(job)) => {
                inbox.weight = job.weight();
                batch.push(job);
                inbox.drain(&mut batch);
                run_batch(&mut store, &mut batch, &mut inbox, &listeners);
            }
            Ok(Message::Close(done)) => inbox.closing = Some(done),
            Ok(Message::Park(park)) => inbox.parking = Some(park),
            Err(_) => break,
        }
        if let Some(park) = inbox.parking.take() {
            if !pause(&mut store, &path, park) {
                break;
            }
        }
    }
    // Dropping the store closes the connection (and checkpoints the WAL when
    // this is the file's last connection).
    drop(store);
    if let Some(done) = inbox.closing {
        let _ = done.send(());
    }
}

/// The thread's requests, and what the open batch has taken of them.
struct Inbox {
    inbox: Receiver<Message>,
    /// Set when `Close` arrived: nothing after it is taken.
    closing: Option<oneshot::Sender<()>>,
    /// Set when `Park` arrived: the batch ends before it.
    parking: Option<Park>,
    /// Tasks the open batch touches.
    weight: usize,
}

impl Inbox {
    /// Moves the requests already waiting into `batch`, within the batch
    /// bounds; true if it took any.
    fn drain(&mut self, batch: &mut Vec<Box<dyn Job>>) -> bool {
        let before = batch.len();
        while self.closing.is_none()
            && self.parking.is_none()
            && batch.len() < MAX_BATCH_REQUESTS
            && self.weight < MAX_BATCH_WEIGHT
        {
            match self.inbox.try_recv() {
                Ok(Message::Job(job)) => {
                    self.weight = self.weight.saturating_add(job.weight());
                    batch.push(job);
                }
                Ok(Message::Close(done)) => self.closing = Some(done),
                Ok(Message::Park(park)) => self.parking = Some(park),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        batch.len() > before
    }
}

/// Pauses around a fork: closes the connection (an in-memory one, which
/// shares nothing with other connections, stands in meanwhile), says so,
/// waits to be resumed and opens the file at `path` again. False when it
/// cannot be opened again: the thread then stops, and every call after
/// fails as on a stopped thread.
fn pause(store: &mut Store, path: &std::path::Path, park: Park) -> bool {
    match rusqlite::Connection::open_in_memory() {
        Ok(stand_in) => drop(std::mem::replace(&mut store.conn, stand_in)),
        Err(e) => tracing::error!(error = %e, "embedded: cannot close the connection for a fork"),
    }
    let _ = park.paused.send(());
    let _ = park.resume.recv();
    match crate::schema::reopen(path) {
        Ok(conn) => {
            store.conn = conn;
            true
        }
        Err(e) => {
            tracing::error!(error = %e, path = %path.display(), "embedded: cannot open the file again after a fork");
            false
        }
    }
}

/// Runs `batch` in one transaction and replies to each job. Result waiters
/// hear of finished tasks before the callers get their replies, so a finish
/// that returned has been posted.
fn run_batch(
    store: &mut Store,
    batch: &mut Vec<Box<dyn Job>>,
    inbox: &mut Inbox,
    listeners: &Listeners,
) {
    store.woke = false;
    store.finished.clear();
    store.tally.clear();
    let failure = run_in_transaction(store, batch, inbox);
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

/// Runs the jobs between `BEGIN` and `COMMIT`. A write transaction also
/// takes in the requests that arrived while its jobs ran, until none is
/// waiting or the batch is full, and only then commits: a request sent a
/// moment after another (a worker's settle beside its next fetch) shares
/// its commit instead of paying one of its own, and nobody waits for it.
/// Returns why the transaction failed as a whole, if it did (then it is
/// rolled back).
fn run_in_transaction(
    store: &mut Store,
    batch: &mut Vec<Box<dyn Job>>,
    inbox: &mut Inbox,
) -> Option<String> {
    let writes = batch.iter().any(|j| j.writes());
    let begin = if writes { "BEGIN IMMEDIATE" } else { "BEGIN" };
    if let Err(e) = exec(store, begin) {
        return Some(format!("cannot begin a transaction: {e}"));
    }
    let mut isolate = batch.len() > 1;
    let mut next = 0;
    loop {
        while let Some(job) = batch.get_mut(next) {
            next += 1;
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
        // Late requests join only a write transaction (a read one would have
        // to upgrade its lock), each under a savepoint of its own: what ran
        // before them stands whatever they do.
        if !writes || !inbox.drain(batch) {
            break;
        }
        isolate = true;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::Path;
    use std::sync::mpsc::{self, Sender};

    use conveyor_core::SystemClock;

    use super::*;
    use crate::schema;

    /// A database thread on a fresh file with a table `t(x)`.
    fn thread(dir: &Path) -> (Sender<Message>, std::thread::JoinHandle<()>) {
        let conn = schema::open(&dir.join("db.sqlite")).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let (inbox, rx) = mpsc::channel();
        let listeners = Listeners {
            work: Arc::new(Notify::new()),
            finished: Arc::new(FinishBoard::new()),
        };
        let store = Store::new(conn, Arc::new(SystemClock));
        let path = dir.join("db.sqlite");
        let handle = std::thread::spawn(move || run(store, path, rx, listeners));
        (inbox, handle)
    }

    /// Sends a writing job running `work`; its answer comes on the receiver.
    fn send<F>(inbox: &Sender<Message>, work: F) -> oneshot::Receiver<Result<(), Error>>
    where
        F: FnOnce(&mut Store) -> Result<(), Error> + Send + 'static,
    {
        send_as(inbox, true, work)
    }

    /// Sends a job running `work` that `writes` or only reads.
    fn send_as<F>(
        inbox: &Sender<Message>,
        writes: bool,
        work: F,
    ) -> oneshot::Receiver<Result<(), Error>>
    where
        F: FnOnce(&mut Store) -> Result<(), Error> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = Call::new(writes, 1, work, tx);
        inbox.send(Message::Job(Box::new(job))).unwrap();
        rx
    }

    /// Sends a job (writing 1 if `writes`, else a read) that then waits for
    /// the sender returned to send; returns once it runs, with its answer's
    /// receiver.
    fn hold(
        inbox: &Sender<Message>,
        writes: bool,
    ) -> (oneshot::Receiver<Result<(), Error>>, Sender<()>) {
        let (started_tx, started_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let first = send_as(inbox, writes, move |s| {
            if writes {
                insert(s, 1)?;
            }
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            Ok(())
        });
        started_rx.recv().unwrap();
        (first, go_tx)
    }

    fn insert(store: &mut Store, x: i64) -> Result<(), Error> {
        store
            .conn
            .execute("INSERT INTO t (x) VALUES (?1)", [x])
            .map(|_| ())
            .map_err(db_err)
    }

    fn rows(dir: &Path) -> Vec<i64> {
        let conn = rusqlite::Connection::open(dir.join("db.sqlite")).unwrap();
        let mut stmt = conn.prepare("SELECT x FROM t ORDER BY x").unwrap();
        let xs = stmt.query_map([], |r| r.get(0)).unwrap();
        xs.map(Result::unwrap).collect()
    }

    /// A pause for a fork ends the running batch at its commit (a request
    /// behind it waits), closes the connection (nothing of it is left for a
    /// child to inherit), and after the resume the thread opens the file again and runs
    /// what waited.
    #[test]
    fn a_pause_for_a_fork_closes_the_connection_between_batches() {
        let dir = tempfile::tempdir().unwrap();
        let (inbox, handle) = thread(dir.path());
        let (first, go_tx) = hold(&inbox, true);
        let (paused_tx, paused_rx) = mpsc::sync_channel(1);
        let (resume_tx, resume_rx) = mpsc::channel();
        inbox
            .send(Message::Park(Park {
                paused: paused_tx,
                resume: resume_rx,
            }))
            .unwrap();
        let after = send(&inbox, |s| insert(s, 2));
        go_tx.send(()).unwrap();
        first.blocking_recv().unwrap().unwrap();
        paused_rx.recv().unwrap();
        assert!(
            !dir.path().join("db.sqlite-wal").exists(),
            "the connection is closed: the file's last one removed its WAL"
        );
        assert_eq!(
            rows(dir.path()),
            vec![1],
            "the batch before the pause committed"
        );
        drop(resume_tx);
        after.blocking_recv().unwrap().unwrap();
        assert_eq!(
            rows(dir.path()),
            vec![1, 2],
            "the request behind the pause ran after it"
        );
        drop(inbox);
        handle.join().unwrap();
    }

    /// Requests sent while a write transaction's jobs run join it: they run
    /// before its commit, each under its own savepoint, so one failing
    /// undoes only its own writes.
    #[test]
    fn requests_arriving_while_a_write_runs_join_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (inbox, handle) = thread(dir.path());
        let (first, go_tx) = hold(&inbox, true);
        // The first job is running: these two arrive late.
        let failing = send(&inbox, |s| {
            insert(s, 2)?;
            Err(Error::backend_other("this request fails"))
        });
        let (late_running_tx, late_running_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let late = send(&inbox, move |s| {
            late_running_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            insert(s, 3)
        });
        go_tx.send(()).unwrap();

        // The late job runs while the first job's transaction is still open:
        // the first has no answer yet (it comes after the shared commit).
        late_running_rx.recv().unwrap();
        let mut first = first;
        assert!(
            matches!(first.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
            "the first job is answered only after the commit it shares"
        );
        release_tx.send(()).unwrap();
        first.blocking_recv().unwrap().unwrap();
        assert!(failing.blocking_recv().unwrap().is_err());
        late.blocking_recv().unwrap().unwrap();
        assert_eq!(
            rows(dir.path()),
            vec![1, 3],
            "the failed request alone undone"
        );
        drop(inbox);
        handle.join().unwrap();
    }

    /// Three requests that make one batch (inserting 1, 2 and 3), the one at
    /// `failing` failing after its insert: its own error is its answer, the
    /// others' succeed. Returns the rows that stood.
    fn batch_with_a_failing_request(failing: usize) -> Vec<i64> {
        let dir = tempfile::tempdir().unwrap();
        let (inbox, handle) = thread(dir.path());
        // Held in a read-only batch, which takes no late requests: the
        // three sent meanwhile make the next batch, in the order sent.
        let (_, go) = hold(&inbox, false);
        let answers: Vec<_> = (0..3)
            .map(|i| {
                let x = i as i64 + 1;
                send(&inbox, move |s| {
                    insert(s, x)?;
                    if i == failing {
                        return Err(Error::backend_other(format!("request {x} fails")));
                    }
                    Ok(())
                })
            })
            .collect();
        go.send(()).unwrap();
        for (i, answer) in answers.into_iter().enumerate() {
            let answer = answer.blocking_recv().unwrap();
            if i == failing {
                let err = answer.unwrap_err();
                assert!(err.to_string().contains("fails"), "its own error: {err}");
            } else {
                answer.unwrap();
            }
        }
        drop(inbox);
        handle.join().unwrap();
        rows(dir.path())
    }

    /// In a batch of requests, the one that fails undoes its own writes
    /// only, whether it ran first or between others.
    #[test]
    fn a_failing_request_of_a_batch_is_undone_alone() {
        assert_eq!(batch_with_a_failing_request(0), vec![2, 3]);
        assert_eq!(batch_with_a_failing_request(1), vec![1, 3]);
    }

    /// A `Close` arriving while a batch runs ends the thread after that
    /// batch commits; nothing sent after it is run.
    #[test]
    fn close_arriving_mid_batch_lets_it_commit_and_takes_nothing_after() {
        let dir = tempfile::tempdir().unwrap();
        let (inbox, handle) = thread(dir.path());
        let (first, go_tx) = hold(&inbox, true);
        let (closed_tx, closed_rx) = oneshot::channel();
        inbox.send(Message::Close(closed_tx)).unwrap();
        let after = send(&inbox, |s| insert(s, 2));
        go_tx.send(()).unwrap();

        first.blocking_recv().unwrap().unwrap();
        closed_rx.blocking_recv().unwrap();
        assert!(
            after.blocking_recv().is_err(),
            "not run: its answer was dropped"
        );
        handle.join().unwrap();
        assert_eq!(rows(dir.path()), vec![1]);
    }
}
