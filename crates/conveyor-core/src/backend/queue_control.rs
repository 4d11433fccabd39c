//! Pausing and resuming queues: an operator stops a queue's tasks from being
//! handed out, in every process sharing the backend, without stopping any
//! worker or refusing new tasks.

use async_trait::async_trait;

use crate::Error;

/// Holds queues back from `reserve`, for every process sharing the backend.
///
/// What every backend with this part keeps:
/// - no [`reserve`](super::Backend::reserve) that begins after
///   [`pause`](QueueControl::pause) returns hands out a task of the paused
///   queue, whichever process (or handle on the backend) reserves; other
///   queues in the same call are reserved as usual;
/// - enqueueing into a paused queue is accepted, as ever;
/// - tasks already reserved when the queue is paused run and settle
///   normally (complete, fail, retry, dead-letter); a retry of a paused
///   queue's task waits like its other tasks;
/// - delayed, scheduled and retrying tasks still become due while paused,
///   but are not reserved;
/// - once [`resume`](QueueControl::resume) returns, the queue's ready tasks
///   are reservable at once, and a backend with wake-ups
///   ([`Capabilities::wakeups`](super::Capabilities::wakeups)) wakes the
///   workers waiting on it;
/// - the set of paused queues lives in the backend: durable where the
///   backend is durable (a restart keeps a queue paused), and shared by every
///   process;
/// - a queue may be paused before it has any task (it is then listed by
///   [`paused`](QueueControl::paused), and its first tasks wait);
/// - both calls are idempotent; a queue name is checked like everywhere else
///   (an empty name is refused with [`Error::InvalidConfig`]).
#[async_trait]
pub trait QueueControl: Send + Sync {
    /// Pauses `queue`. True when it was not paused before, false when it
    /// already was (nothing changes).
    async fn pause(&self, queue: &str) -> Result<bool, Error>;

    /// Resumes `queue`. True when it was paused, false when it was not
    /// (nothing changes).
    async fn resume(&self, queue: &str) -> Result<bool, Error>;

    /// The paused queues, sorted by name.
    async fn paused(&self) -> Result<Vec<String>, Error>;
}

/// Checks a queue name given to [`QueueControl::pause`] or
/// [`QueueControl::resume`] the way a task's queue is checked
/// ([`NewTask::validate`](crate::NewTask::validate)): an empty name is
/// refused.
pub fn validate_queue_name(queue: &str) -> Result<(), Error> {
    if queue.is_empty() {
        return Err(Error::InvalidConfig("a queue name is empty".to_string()));
    }
    Ok(())
}
