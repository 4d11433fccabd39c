//! The queue and handler of the tasks this store reserved, so settling a
//! task can count it out of its queue and handler without asking SQLite.
//!
//! The kept counts (`crate::tally`) need each settled task's queue and
//! handler. Returning them from every settling `UPDATE` (`RETURNING`) made
//! the hot path measurably slower, and both are known at reservation: a
//! task's queue and handler never change once it is enqueued, so an entry
//! here is never wrong, only possibly stale (the task was settled by another
//! process, or the reserving request rolled back). A task not found here
//! (reserved by another process, or before a restart) is looked up by id,
//! under the same write lock. Names are shared, not copied per task; the
//! map is emptied if it ever holds [`MAX_HELD`] entries.

use foldhash::{HashMap, HashSet};
use std::sync::Arc;

/// Entries kept at most (stale ones pile up only from leases that other
/// processes recovered).
const MAX_HELD: usize = 1 << 20;

/// A task's queue and handler.
pub(crate) type Names = (Arc<str>, Arc<str>);

/// Queue and handler by task id.
#[derive(Debug, Default)]
pub(crate) struct HeldNames {
    by_id: HashMap<i64, Names>,
    names: HashSet<Arc<str>>,
}

impl HeldNames {
    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.names.get(name) {
            return known.clone();
        }
        let name: Arc<str> = name.into();
        self.names.insert(name.clone());
        name
    }

    /// Task `id` of `queue` and `handler` was reserved.
    pub(crate) fn insert(&mut self, id: i64, queue: &str, handler: &str) {
        if self.by_id.len() >= MAX_HELD {
            self.by_id.clear();
            self.names.clear();
        }
        let names = (self.intern(queue), self.intern(handler));
        self.by_id.insert(id, names);
    }

    /// The queue and handler of task `id`, if this store reserved it;
    /// forgets it.
    pub(crate) fn take(&mut self, id: i64) -> Option<Names> {
        self.by_id.remove(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_shared_and_taken_once() {
        let mut held = HeldNames::default();
        held.insert(1, "q", "h");
        held.insert(2, "q", "h");
        let (q1, _) = held.take(1).expect("held");
        let (q2, h2) = held.take(2).expect("held");
        assert!(Arc::ptr_eq(&q1, &q2));
        assert_eq!((&*q2, &*h2), ("q", "h"));
        assert!(held.take(1).is_none());
    }
}
