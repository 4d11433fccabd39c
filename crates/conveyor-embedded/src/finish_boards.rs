//! The finish board of a database file in this process: where the database
//! thread posts the tasks each commit finished, for result waiters.
//!
//! Every handle this process opens on one file shares one
//! [`FinishBoard`] (looked up by the file's canonical path), so a waiter on
//! one handle hears of finishes committed through another. Other processes
//! sharing the file cannot post here: their finishes are found by reading
//! again (see `EmbeddedBackend::results_poll`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use conveyor_core::FinishBoard;

/// The board of the file at `path` in this process (made on first use,
/// dropped with the last handle on the file).
pub(crate) fn board_for(path: &Path) -> Arc<FinishBoard> {
    static BOARDS: OnceLock<Mutex<HashMap<PathBuf, Weak<FinishBoard>>>> = OnceLock::new();
    // The file exists once opened; should canonicalizing still fail, the
    // path as given keys the board (handles naming the file alike share it).
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut boards = BOARDS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(board) = boards.get(&key).and_then(Weak::upgrade) {
        return board;
    }
    boards.retain(|_, b| b.strong_count() > 0);
    let board = Arc::new(FinishBoard::new());
    boards.insert(key, Arc::downgrade(&board));
    board
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn one_board_per_file_while_it_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.db");
        std::fs::write(&a, b"").unwrap();
        let first = board_for(&a);
        let again = board_for(&dir.path().join(".").join("a.db"));
        assert!(Arc::ptr_eq(&first, &again), "same file, same board");
        let other = board_for(&dir.path().join("b.db"));
        assert!(!Arc::ptr_eq(&first, &other));
        let weak = Arc::downgrade(&first);
        drop((first, again));
        assert!(weak.upgrade().is_none(), "dropped with the last handle");
    }
}
