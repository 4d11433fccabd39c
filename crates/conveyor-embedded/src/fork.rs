//! Forking a process that has the embedded store open.
//!
//! SQLite's connections must not cross a `fork()`: the child inherits their
//! locks' bookkeeping (it would believe it holds locks the parent holds, or
//! wait forever for ones the parent's threads held at that moment) and the
//! mutexes of whatever a parent's thread was doing. So around a fork every
//! database thread of the process finishes the batch it is running, closes
//! its connection and waits; the child then opens its own handles (its
//! parent's are unusable there: their threads did not come along), and the
//! parent's threads reopen theirs and go on.
//!
//! Call [`before`] in the thread about to fork, just before it, and
//! [`after_in_parent`] or [`after_in_child`] in the same thread just after
//! (Python's `os.register_at_fork` is made for this; the `conveyor` Python
//! package registers them). A fork followed at once by `exec` needs none of
//! this.

use std::cell::RefCell;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::MutexGuard;

use crate::db_thread::{Message, Park};
use crate::process::{self, Registry};

/// What [`before`] holds until the fork is over: the registry (no handle
/// opens meanwhile) and the way to wake each paused thread.
struct Paused {
    _registry: MutexGuard<'static, Registry>,
    _resume: Vec<Sender<()>>,
}

thread_local! {
    static PAUSED: RefCell<Option<Paused>> = const { RefCell::new(None) };
}

/// Pauses every database thread of this process with its connection closed,
/// once the batch it is running has committed; returns when all are paused.
/// Handles opened meanwhile by other threads wait until the fork is over.
pub fn before() {
    let registry = process::registry();
    let mut acks: Vec<Receiver<()>> = Vec::new();
    let mut resume = Vec::new();
    for inbox in registry.inboxes.iter().filter_map(std::sync::Weak::upgrade) {
        let (ack_tx, ack_rx): (SyncSender<()>, Receiver<()>) = mpsc::sync_channel(1);
        let (resume_tx, resume_rx) = mpsc::channel();
        if inbox
            .send(Message::Park(Park {
                paused: ack_tx,
                resume: resume_rx,
            }))
            .is_ok()
        {
            acks.push(ack_rx);
            resume.push(resume_tx);
        }
    }
    // A thread that stopped instead answers by dropping its end.
    for ack in acks {
        let _ = ack.recv();
    }
    PAUSED.with(|p| {
        *p.borrow_mut() = Some(Paused {
            _registry: registry,
            _resume: resume,
        });
    });
}

/// In the parent after the fork: the paused threads reopen their
/// connections and go on.
pub fn after_in_parent() {
    PAUSED.with(|p| drop(p.borrow_mut().take()));
}

/// In the child after the fork: a new registry for the child's own handles.
/// What [`before`] held is left as it is (it belongs to the parent's
/// threads, which the child does not have).
pub fn after_in_child() {
    PAUSED.with(|p| std::mem::forget(p.borrow_mut().take()));
    process::start_over();
}
