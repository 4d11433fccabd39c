//! What this process's handles on database files share: the finish board of
//! each file, and the database threads, which a fork must pause (see
//! [`crate::fork`]).
//!
//! Every handle this process opens on one file shares one [`FinishBoard`]
//! (looked up by the file's path, its folder resolved), so a waiter on one
//! handle hears of finishes committed through another. Other processes
//! sharing the file cannot post here: their finishes are found by reading
//! again (see `EmbeddedBackend::results_poll`).
//!
//! The registry is per process: a forked child starts a new one (its
//! parent's threads are not in it, and their boards' locks may have been
//! held at the fork), leaving the inherited one untouched.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use conveyor_core::FinishBoard;

use crate::db_thread::Message;

/// The boards and threads of this process's open handles.
#[derive(Default)]
pub(crate) struct Registry {
    boards: HashMap<PathBuf, Weak<FinishBoard>>,
    /// The inbox of each database thread (dropped with its handle).
    pub(crate) inboxes: Vec<Weak<Sender<Message>>>,
}

/// This process's registry (null until first used).
static CURRENT: AtomicPtr<Mutex<Registry>> = AtomicPtr::new(std::ptr::null_mut());

/// This process's registry, locked.
pub(crate) fn registry() -> MutexGuard<'static, Registry> {
    let mut current = CURRENT.load(Ordering::Acquire);
    if current.is_null() {
        let made = Box::into_raw(Box::default());
        current = match CURRENT.compare_exchange(
            std::ptr::null_mut(),
            made,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => made,
            Err(first) => {
                // Another thread made it first: this one was never shared.
                // SAFETY: `made` came from `Box::into_raw` just above and was
                // published nowhere.
                drop(unsafe { Box::from_raw(made) });
                first
            }
        };
    }
    // SAFETY: a registry, once published, is never freed (a forked child
    // leaves its parent's in place), so the pointer stays valid.
    let registry: &'static Mutex<Registry> = unsafe { &*current };
    // The registry holds no invariant a panicking holder could break halfway.
    registry.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts a new registry in a forked child, without touching the inherited
/// one (a thread of the parent may have held its lock at the fork). Call
/// only while the child has one thread.
pub(crate) fn start_over() {
    let made: *mut Mutex<Registry> = Box::into_raw(Box::default());
    CURRENT.store(made, Ordering::Release);
}

impl Registry {
    /// Registers a new database thread's inbox and returns the board of the
    /// file at `path`.
    pub(crate) fn open(&mut self, path: &Path, inbox: &Arc<Sender<Message>>) -> Arc<FinishBoard> {
        self.inboxes.retain(|i| i.strong_count() > 0);
        self.inboxes.push(Arc::downgrade(inbox));
        self.board_for(path)
    }

    /// The board of the file at `path` (made on first use, dropped with the
    /// last handle on the file).
    fn board_for(&mut self, path: &Path) -> Arc<FinishBoard> {
        let key = file_key(path);
        if let Some(board) = self.boards.get(&key).and_then(Weak::upgrade) {
            return board;
        }
        self.boards.retain(|_, b| b.strong_count() > 0);
        let board = Arc::new(FinishBoard::new());
        self.boards.insert(key, Arc::downgrade(&board));
        board
    }
}

/// The key of the file at `path`: the path with its folder resolved (the
/// file itself may not exist yet). Should that fail, the path as given
/// keys it (handles naming the file alike share it).
fn file_key(path: &Path) -> PathBuf {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match (std::fs::canonicalize(folder), path.file_name()) {
        (Ok(folder), Some(name)) => folder.join(name),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn one_board_per_file_while_it_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.db");
        let first = registry().board_for(&a);
        let again = registry().board_for(&dir.path().join(".").join("a.db"));
        assert!(Arc::ptr_eq(&first, &again), "same file, same board");
        let other = registry().board_for(&dir.path().join("b.db"));
        assert!(!Arc::ptr_eq(&first, &other));
        let weak = Arc::downgrade(&first);
        drop((first, again));
        assert!(weak.upgrade().is_none(), "dropped with the last handle");
    }
}
