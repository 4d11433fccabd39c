//! What finished lately, for result waiters: the in-process half of a
//! push-based [`ResultStore::wait_finished`](super::ResultStore::wait_finished),
//! shared by every backend that can notify.
//!
//! A backend posts the ids of tasks that reached a final state (or "something
//! finished, ids unknown") as it learns of them: right after its own commit
//! (memory, embedded), or from a notification listener (PostgreSQL
//! `LISTEN`, Redis `SUBSCRIBE`). Each post is numbered; a [`FinishMark`] is
//! the number of the last post. A waiter takes a mark *before* it reads the
//! task, and [`FinishBoard::wait`] then returns at once if a post after that
//! mark could concern the task, so a finish that lands between the read and
//! the wait is never missed. The last posts are kept for that ([`RECENT`] of
//! them): a waiter whose mark is older than the oldest one kept is woken
//! (spuriously, which the contract allows) rather than guessed about.
//!
//! Waiters register by task id, so a post wakes only the waiters of its ids
//! (and every waiter for "ids unknown"): a busy store does not wake every
//! client on every finish. A listener that (re)connects posts "ids unknown",
//! because anything that finished while it was away was not heard.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::task::TaskId;

/// Posts kept for waiters that took their mark before them.
pub const RECENT: usize = 1024;

/// Ids one post keeps; a larger batch is kept as "ids unknown".
pub const MAX_IDS_PER_POST: usize = 4096;

/// A point in a store's sequence of finish posts: take one with
/// [`ResultStore::finish_mark`](super::ResultStore::finish_mark) before reading
/// a task, pass it to [`ResultStore::wait_finished`](super::ResultStore::wait_finished).
/// Meaningful only to the store (and the process) that gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FinishMark(u64);

impl FinishMark {
    /// The mark numbered `n` (for a store that keeps its own sequence).
    pub const fn new(n: u64) -> Self {
        Self(n)
    }

    /// Its number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// What one post says finished.
#[derive(Debug)]
enum Posted {
    /// These ids, sorted.
    Ids(Vec<u64>),
    /// Something; which is unknown.
    Any,
}

/// The posts and waiters, behind the board's lock.
#[derive(Debug, Default)]
struct Board {
    /// The number of the last post (0: none yet).
    last: u64,
    /// The last posts, oldest first, with their numbers.
    recent: VecDeque<(u64, Posted)>,
    /// Who waits for which task: its wake-up and how many wait on it.
    waiters: HashMap<u64, (Arc<Notify>, usize)>,
}

/// Whether a waiter with a mark should look again.
enum Verdict {
    /// A post after the mark may concern the task (or the mark cannot be
    /// checked): look again.
    Look,
    /// Nothing after the mark concerns it; the mark moves to this post.
    Wait(u64),
}

impl Board {
    fn verdict(&self, id: u64, since: u64) -> Verdict {
        if since == self.last {
            return Verdict::Wait(since);
        }
        // A mark from the future is not ours; one older than what is kept
        // cannot be checked. Either way: look again.
        let oldest = self.recent.front().map_or(self.last + 1, |(n, _)| *n);
        if since > self.last || since + 1 < oldest {
            return Verdict::Look;
        }
        let concerns = self
            .recent
            .iter()
            .rev()
            .take_while(|(n, _)| *n > since)
            .any(|(_, p)| match p {
                Posted::Any => true,
                Posted::Ids(ids) => ids.binary_search(&id).is_ok(),
            });
        if concerns {
            Verdict::Look
        } else {
            Verdict::Wait(self.last)
        }
    }

    fn push(&mut self, posted: Posted) {
        self.last += 1;
        self.recent.push_back((self.last, posted));
        while self.recent.len() > RECENT {
            self.recent.pop_front();
        }
    }
}

/// Recent finish posts and the waiters for them. See the module documentation.
#[derive(Debug, Default)]
pub struct FinishBoard {
    board: Mutex<Board>,
}

impl FinishBoard {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Board> {
        // The board holds no invariant a panicking holder could break halfway.
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where the posts stand now.
    pub fn mark(&self) -> FinishMark {
        FinishMark(self.lock().last)
    }

    /// Tasks `ids` reached a final state (nothing is posted for none).
    pub fn post(&self, ids: impl IntoIterator<Item = TaskId>) {
        let mut ids: Vec<u64> = ids.into_iter().map(|id| id.0).collect();
        if ids.is_empty() {
            return;
        }
        if ids.len() > MAX_IDS_PER_POST {
            return self.post_any();
        }
        ids.sort_unstable();
        ids.dedup();
        let mut board = self.lock();
        for id in &ids {
            if let Some((notify, _)) = board.waiters.get(id) {
                notify.notify_waiters();
            }
        }
        board.push(Posted::Ids(ids));
    }

    /// Something may have finished, ids unknown (a listener reconnected, a
    /// notification too large to carry its ids): every waiter looks again.
    pub fn post_any(&self) {
        let mut board = self.lock();
        for (notify, _) in board.waiters.values() {
            notify.notify_waiters();
        }
        board.push(Posted::Any);
    }

    /// Posts what a notification payload names: task ids in decimal,
    /// separated by commas. An empty payload, or one that does not parse,
    /// means "ids unknown".
    pub fn post_payload(&self, payload: &str) {
        let ids: Result<Vec<TaskId>, _> = payload
            .split(',')
            .map(|s| s.trim().parse::<u64>().map(TaskId))
            .collect();
        match ids {
            Ok(ids) if !payload.trim().is_empty() => self.post(ids),
            _ => self.post_any(),
        }
    }

    /// Returns once a post after `since` may concern task `id` (at once if
    /// one already did). Never times out by itself: wrap it in a timeout.
    pub async fn wait(&self, id: TaskId, since: FinishMark) {
        let waiter = Registration::new(self, id.0);
        let mut since = since.0;
        loop {
            let mut notified = std::pin::pin!(waiter.notify.notified());
            // Registered before the check: a post made after it wakes us.
            notified.as_mut().enable();
            // The lock is released at the end of this statement, before the
            // registration may need it again.
            let verdict = self.lock().verdict(id.0, since);
            match verdict {
                Verdict::Look => return,
                Verdict::Wait(last) => since = last,
            }
            notified.await;
        }
    }
}

/// A waiter's place on the board, given up when the wait ends (or its future
/// is dropped by a timeout).
struct Registration<'a> {
    board: &'a FinishBoard,
    id: u64,
    notify: Arc<Notify>,
}

impl<'a> Registration<'a> {
    fn new(board: &'a FinishBoard, id: u64) -> Self {
        let mut b = board.lock();
        let entry = b
            .waiters
            .entry(id)
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        entry.1 += 1;
        let notify = entry.0.clone();
        drop(b);
        Self { board, id, notify }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut b = self.board.lock();
        if let Some(entry) = b.waiters.get_mut(&self.id) {
            entry.1 -= 1;
            if entry.1 == 0 {
                b.waiters.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Polls `fut` once: true when it is already done.
    fn ready_now<F: std::future::Future>(fut: F) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let fut = std::pin::pin!(fut);
        fut.poll(&mut cx).is_ready()
    }

    #[test]
    fn a_post_after_the_mark_for_the_task_returns_at_once() {
        let b = FinishBoard::new();
        let mark = b.mark();
        b.post([TaskId(7), TaskId(3)]);
        assert!(ready_now(b.wait(TaskId(3), mark)));
        assert!(!ready_now(b.wait(TaskId(4), mark)), "other ids wait");
        assert!(
            !ready_now(b.wait(TaskId(3), b.mark())),
            "a later mark waits"
        );
    }

    #[test]
    fn unknown_ids_and_unreadable_payloads_wake_everyone() {
        let b = FinishBoard::new();
        let mark = b.mark();
        b.post_any();
        assert!(ready_now(b.wait(TaskId(1), mark)));
        let mark = b.mark();
        b.post_payload("");
        assert!(ready_now(b.wait(TaskId(1), mark)));
        let mark = b.mark();
        b.post_payload("12,x");
        assert!(ready_now(b.wait(TaskId(1), mark)));
        let mark = b.mark();
        b.post_payload("12,13");
        assert!(ready_now(b.wait(TaskId(13), mark)));
        assert!(!ready_now(b.wait(TaskId(1), mark)));
    }

    #[test]
    fn marks_that_cannot_be_checked_look_again() {
        let b = FinishBoard::new();
        let old = b.mark();
        for i in 0..(RECENT as u64 + 1) {
            b.post([TaskId(1_000_000 + i)]);
        }
        assert!(ready_now(b.wait(TaskId(1), old)), "older than kept");
        let future = FinishMark::new(b.mark().get() + 5);
        assert!(ready_now(b.wait(TaskId(1), future)), "not ours");
    }

    #[test]
    fn registrations_go_when_waits_end() {
        let b = FinishBoard::new();
        assert!(!ready_now(b.wait(TaskId(1), b.mark())));
        assert!(b.lock().waiters.is_empty());
    }

    #[tokio::test]
    async fn a_waiter_is_woken_by_its_id_only() {
        let b = Arc::new(FinishBoard::new());
        let mark = b.mark();
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.wait(TaskId(5), mark).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        b.post([TaskId(4)]);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "woken by another id");
        b.post([TaskId(5)]);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("joined");
    }
}
