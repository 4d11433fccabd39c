//! Per-key holding: a record whose ordering key already has a message in the
//! engine waits here, without taking an in-flight slot, until that message's
//! final outcome. Only records whose key is free reach the engine, so a busy
//! key (or, in partition order, a busy partition) never fills the in-flight
//! window with work that cannot start.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::message::Message;
use crate::partition::Coord;

/// A record and where it came from.
pub(crate) type Item = (Coord, Message);

/// Busy keys and the records waiting for them.
#[derive(Default)]
pub(crate) struct KeyGate {
    /// Present while the key is reserved: a message of it is in the engine
    /// (or about to be); the queue holds the next ones, in offset order.
    keys: HashMap<Arc<str>, VecDeque<Item>>,
    /// Records waiting in the queues.
    held: usize,
}

impl KeyGate {
    /// True while a message of `key` is in the engine or reserved for it.
    pub(crate) fn is_busy(&self, key: &str) -> bool {
        self.keys.contains_key(key)
    }

    /// Queues a record behind its busy key.
    pub(crate) fn hold(&mut self, key: &Arc<str>, item: Item) {
        self.keys.entry(key.clone()).or_default().push_back(item);
        self.held += 1;
    }

    /// Reserves `key` for a message handed to the engine.
    pub(crate) fn reserve(&mut self, key: &Arc<str>) {
        self.keys.entry(key.clone()).or_default();
    }

    /// The key's message finished: the next record of the key (which keeps the
    /// key reserved), or `None` and the key is free.
    pub(crate) fn release(&mut self, key: &str) -> Option<Item> {
        let queue = self.keys.get_mut(key)?;
        match queue.pop_front() {
            Some(item) => {
                self.held -= 1;
                Some(item)
            }
            None => {
                self.keys.remove(key);
                None
            }
        }
    }

    /// Drops the key and its queue (its partition is gone, nothing of it runs).
    pub(crate) fn forget(&mut self, key: &str) {
        if let Some(q) = self.keys.remove(key) {
            self.held -= q.len();
        }
    }

    /// Drops every queued record that `gone` matches (revoked partitions);
    /// keys stay reserved for their running messages.
    pub(crate) fn drop_where(&mut self, gone: impl Fn(&Coord) -> bool) {
        for q in self.keys.values_mut() {
            let before = q.len();
            q.retain(|(c, _)| !gone(c));
            self.held -= before - q.len();
        }
    }

    /// Records held.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Drops everything (shutdown).
    pub(crate) fn clear(&mut self) {
        self.keys.clear();
        self.held = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(offset: i64) -> Item {
        let coord = Coord {
            topic: Arc::from("t"),
            partition: 0,
            epoch: 1,
            offset,
        };
        (coord, Message::new("t", 0, offset, Some(b"k"), None))
    }

    #[test]
    fn one_at_a_time_in_order() {
        let mut g = KeyGate::default();
        let k: Arc<str> = Arc::from("k");
        assert!(!g.is_busy(&k));
        g.reserve(&k);
        g.hold(&k, item(1));
        g.hold(&k, item(2));
        assert_eq!(g.held(), 2);
        assert_eq!(g.release(&k).map(|(c, _)| c.offset), Some(1));
        assert!(g.is_busy(&k), "reserved for offset 1");
        assert_eq!(g.release(&k).map(|(c, _)| c.offset), Some(2));
        assert_eq!(g.release(&k).map(|(c, _)| c.offset), None);
        assert!(!g.is_busy(&k));
        assert_eq!(g.held(), 0);
    }

    #[test]
    fn revoked_records_leave() {
        let mut g = KeyGate::default();
        let k: Arc<str> = Arc::from("k");
        g.reserve(&k);
        g.hold(&k, item(1));
        g.drop_where(|c| c.partition == 0);
        assert_eq!(g.held(), 0);
        assert!(g.is_busy(&k), "still reserved for the running message");
        g.forget(&k);
        assert!(!g.is_busy(&k));
    }
}
