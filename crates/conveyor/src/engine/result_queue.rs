//! A job's bounded result queue, carrying results in batches.
//!
//! Room is counted in results, not batches: a result takes one unit of room
//! ([`ResultSender::try_reserve`] or [`ResultSender::reserve`]) as soon as it
//! exists, even while it still waits in a worker's [`Outbox`](crate::engine::outbox::Outbox),
//! and gives it back when the result thread takes its batch off the queue. So at
//! most `capacity` results wait for `on_task_complete`, wherever they wait, while
//! workers pay for the queue once per batch instead of once per result.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::engine::task_result::TaskResult;

/// The sending side, held by the job (and so by every task not yet reported).
/// When the last one is dropped the queue disconnects: the job is complete.
pub(crate) struct ResultSender {
    tx: flume::Sender<Vec<TaskResult>>,
    room: Arc<Semaphore>,
}

/// The result thread's side.
pub(crate) struct ResultReceiver {
    rx: flume::Receiver<Vec<TaskResult>>,
    room: Arc<Semaphore>,
    capacity: usize,
}

/// A queue holding at most `capacity` results.
pub(crate) fn result_queue(capacity: usize) -> (ResultSender, ResultReceiver) {
    let (tx, rx) = flume::unbounded();
    let capacity = capacity.max(1);
    let room = Arc::new(Semaphore::new(capacity));
    (
        ResultSender {
            tx,
            room: room.clone(),
        },
        ResultReceiver { rx, room, capacity },
    )
}

impl ResultSender {
    /// Takes room for one result if there is some now.
    pub(crate) fn try_reserve(&self) -> bool {
        self.room.try_acquire().map(|p| p.forget()).is_ok()
    }

    /// Takes room for up to `n` results, as much as there is now; how many.
    pub(crate) fn try_reserve_up_to(&self, n: usize) -> usize {
        let n = self.room.available_permits().clamp(1, n.max(1));
        let taken = u32::try_from(n)
            .ok()
            .and_then(|n| self.room.try_acquire_many(n).ok())
            .map(|p| p.forget())
            .map(|()| n);
        match taken {
            Some(n) => n,
            // Another worker took some in between.
            None => usize::from(self.try_reserve()),
        }
    }

    /// Gives back room taken and not used.
    pub(crate) fn give_back(&self, n: usize) {
        self.room.add_permits(n);
    }

    /// Waits for room for one result; false once the result thread is gone.
    pub(crate) async fn reserve(&self) -> bool {
        self.room.acquire().await.map(|p| p.forget()).is_ok()
    }

    /// Sends results whose room is already reserved.
    pub(crate) fn send_reserved(&self, batch: Vec<TaskResult>) {
        let _ = self.tx.send(batch);
    }

    /// Waits for room for one result, then sends it.
    pub(crate) async fn send(&self, result: TaskResult) {
        if self.try_reserve() || self.reserve().await {
            self.send_reserved(vec![result]);
        }
    }
}

impl ResultReceiver {
    /// The next batch, blocking the thread; `None` once every sender is gone.
    /// Its room is given back at once, as a bounded channel frees a slot when an
    /// item is received.
    pub(crate) fn recv(&self) -> Option<Vec<TaskResult>> {
        self.rx.recv().ok().map(|b| self.taken(b))
    }

    /// A batch if one is queued; `Err(true)` once every sender is gone.
    pub(crate) fn try_recv(&self) -> Result<Vec<TaskResult>, bool> {
        match self.rx.try_recv() {
            Ok(b) => Ok(self.taken(b)),
            Err(flume::TryRecvError::Empty) => Err(false),
            Err(flume::TryRecvError::Disconnected) => Err(true),
        }
    }

    /// How many results the queue holds at most.
    pub(crate) fn room(&self) -> usize {
        self.capacity
    }

    fn taken(&self, batch: Vec<TaskResult>) -> Vec<TaskResult> {
        self.room.add_permits(batch.len());
        batch
    }
}

impl Drop for ResultReceiver {
    /// With the result thread gone, nobody may wait for room any more.
    fn drop(&mut self) {
        self.room.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_taken_as_much_as_there_is_and_given_back() {
        let (tx, rx) = result_queue(10);
        assert_eq!(tx.try_reserve_up_to(16), 10, "all there is, not more");
        assert_eq!(tx.try_reserve_up_to(16), 0, "the queue is full");
        assert!(!tx.try_reserve());
        tx.give_back(3);
        assert_eq!(tx.try_reserve_up_to(2), 2, "at most what was asked");
        assert_eq!(tx.try_reserve_up_to(16), 1);
        drop(rx);
        tx.give_back(5);
        assert_eq!(
            tx.try_reserve_up_to(16),
            0,
            "no room once the result thread is gone"
        );
    }
}
