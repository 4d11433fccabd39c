//! Offset tracking for one assigned partition: which offsets were taken from
//! Kafka and are not finished yet, and therefore how far it is safe to commit.
//!
//! Kafka commits a single number per partition: "every offset below this one is
//! done". Messages finish out of order here (parallel keys, retries, a slow
//! handler), so the committable offset is the **lowest unfinished offset**, or
//! one past the highest offset seen when nothing is unfinished. Finished offsets
//! above an unfinished one wait. After a crash the worst case is re-processing
//! what was finished above that mark, never skipping a message.

use std::collections::BTreeSet;

/// The offsets of one partition between "taken from Kafka" and "finished".
#[derive(Debug, Default, Clone)]
pub(crate) struct PartitionOffsets {
    /// Taken from Kafka, not finished (running, waiting on a key, retrying,
    /// being dead-lettered, or stuck after a failed dead-letter send).
    unfinished: BTreeSet<i64>,
    /// One past the highest offset taken, if any was.
    next: Option<i64>,
    /// The last offset committed (or being committed) by this assignment.
    committed: Option<i64>,
}

impl PartitionOffsets {
    /// Records that `offset` was taken from Kafka. Returns false for an offset
    /// already unfinished (a duplicate delivery, which must not run twice here).
    pub(crate) fn taken(&mut self, offset: i64) -> bool {
        if !self.unfinished.insert(offset) {
            return false;
        }
        self.next = Some(self.next.map_or(offset + 1, |n| n.max(offset + 1)));
        true
    }

    /// Records that `offset` is finished (succeeded, discarded or dead-lettered).
    pub(crate) fn finished(&mut self, offset: i64) {
        self.unfinished.remove(&offset);
    }

    /// How many offsets are unfinished.
    pub(crate) fn unfinished(&self) -> usize {
        self.unfinished.len()
    }

    /// The offset it is safe to commit: every offset below it is finished.
    pub(crate) fn safe(&self) -> Option<i64> {
        self.unfinished.first().copied().or(self.next)
    }

    /// One past the highest offset taken from Kafka.
    pub(crate) fn next(&self) -> Option<i64> {
        self.next
    }

    /// The last offset handed to a commit by this assignment.
    pub(crate) fn committed(&self) -> Option<i64> {
        self.committed
    }

    /// The safe offset if it moved past the last commit; records it as committed.
    /// The caller commits it (and calls [`PartitionOffsets::commit_failed`] if
    /// that fails, so it is tried again).
    pub(crate) fn take_commit(&mut self) -> Option<i64> {
        let safe = self.safe()?;
        if self.committed.is_some_and(|c| c >= safe) {
            return None;
        }
        self.committed = Some(safe);
        Some(safe)
    }

    /// A commit of `offset` failed: forget it, so the next round tries again.
    pub(crate) fn commit_failed(&mut self, offset: i64) {
        if self.committed == Some(offset) {
            self.committed = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_taken_nothing_to_commit() {
        let mut p = PartitionOffsets::default();
        assert_eq!(p.safe(), None);
        assert_eq!(p.take_commit(), None);
    }

    #[test]
    fn commits_only_below_the_lowest_unfinished() {
        let mut p = PartitionOffsets::default();
        for o in 10..15 {
            assert!(p.taken(o));
        }
        assert_eq!(p.safe(), Some(10));
        p.finished(11);
        p.finished(12);
        p.finished(14);
        assert_eq!(
            p.safe(),
            Some(10),
            "10 still runs: nothing above it commits"
        );
        p.finished(10);
        assert_eq!(p.safe(), Some(13));
        p.finished(13);
        assert_eq!(p.safe(), Some(15), "all done: one past the highest");
    }

    #[test]
    fn take_commit_moves_forward_only() {
        let mut p = PartitionOffsets::default();
        p.taken(0);
        p.taken(1);
        assert_eq!(p.take_commit(), Some(0));
        assert_eq!(p.take_commit(), None, "unchanged");
        p.finished(0);
        assert_eq!(p.take_commit(), Some(1));
        p.finished(1);
        assert_eq!(p.take_commit(), Some(2));
        p.commit_failed(2);
        assert_eq!(p.take_commit(), Some(2), "a failed commit is retried");
    }

    #[test]
    fn duplicates_are_refused() {
        let mut p = PartitionOffsets::default();
        assert!(p.taken(5));
        assert!(!p.taken(5));
        assert_eq!(p.unfinished(), 1);
        p.finished(5);
        assert_eq!(p.next(), Some(6));
    }

    #[test]
    fn gaps_are_fine() {
        // Compacted topics and transaction markers leave gaps in offsets.
        let mut p = PartitionOffsets::default();
        p.taken(3);
        p.taken(7);
        p.finished(7);
        assert_eq!(p.safe(), Some(3));
        p.finished(3);
        assert_eq!(p.safe(), Some(8));
    }
}
