//! The records of the leases this process holds, as it last wrote them,
//! so a report or a renewal can go straight to its compare-and-set instead
//! of reading the record first (one ledger round trip less per task).
//!
//! This is only a guess at the record, never a decision: the
//! compare-and-set names the revision the copy was written at, so it lands
//! only when nobody changed the record since, in which case the copy *is*
//! the record. When someone did (lease recovery, a cancel, another
//! process), the write is refused and the caller reads the record as
//! before. Bounded: past [`CAPACITY`] leases, new ones are not kept (their
//! reports read first); an entry goes when its lease is reported or found
//! stale.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::ledger::Versioned;
use crate::record::Rec;

/// Most leases remembered at once.
pub(crate) const CAPACITY: usize = 16_384;

/// Task id → (record, revision) as this process last wrote it.
#[derive(Debug, Default)]
pub(crate) struct RecordCache {
    map: Mutex<HashMap<u64, Versioned<Rec>>>,
}

impl RecordCache {
    /// Remembers `rec`, just written at `rev` (replacing what was kept).
    pub(crate) fn keep(&self, rec: Rec, rev: u64) {
        if let Ok(mut m) = self.map.lock() {
            if m.len() < CAPACITY || m.contains_key(&rec.id) {
                m.insert(rec.id, (rec, rev));
            }
        }
    }

    /// The copy of task `id` under lease `token`, taken out.
    pub(crate) fn take(&self, id: u64, token: u64) -> Option<Versioned<Rec>> {
        let mut m = self.map.lock().ok()?;
        let kept = m.remove(&id)?;
        (kept.0.token == token).then_some(kept)
    }

    /// The copy of task `id` under lease `token`, left in place.
    pub(crate) fn peek(&self, id: u64, token: u64) -> Option<Versioned<Rec>> {
        let m = self.map.lock().ok()?;
        m.get(&id).filter(|k| k.0.token == token).cloned()
    }

    /// Forgets task `id`.
    pub(crate) fn forget(&self, id: u64) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(&id);
        }
    }
}
