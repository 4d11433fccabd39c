//! Paused queues ([`QueueControl`]): one ledger key, `paused`, holding the
//! JSON array of the paused queue names, sorted. Pausing and resuming read
//! it and write it back by compare-and-set on its revision (or create it,
//! the first time), so concurrent calls from any process never lose one
//! another's change, and each answers exactly whether it changed the set.
//!
//! The ordering promise — no reservation that begins after `pause`
//! returned takes the queue's tasks, in any process — rests on one read:
//! every `reserve` reads the key once, before it lists or fetches anything,
//! and leaves the paused queues out of the call (no fetch, so nothing to
//! hand back). `pause` returns only once the server acknowledged the write,
//! which it does after storing it; the bucket is a stream of one replica,
//! so a later read (a direct get, answered by that one server from its
//! store) sees the write or a newer one. (On a bucket an operator scaled
//! to more replicas, the read asks the stream's leader instead, for the
//! same reason: `Ledger::entry_latest`.) A reserve already past its read
//! when the pause lands may still take the queue's tasks: it began before
//! `pause` returned. A pause therefore never loses or duplicates a task:
//! it only stops later reserves from fetching.
//!
//! Resuming publishes the queue on its wake subject once the write landed,
//! so idle workers of every process look again at once. The set is a
//! bucket entry, so it is durable and shared like every record; one key
//! bounds it to the server's largest message (1 MB by default: tens of
//! thousands of queue names).

use std::collections::BTreeSet;

use bytes::Bytes;
use conveyor_core::{async_trait, validate_queue_name, BackendErrorKind, Error, QueueControl};

use crate::backend::NatsBackend;
use crate::error::bad_data;
use crate::ledger::Created;
use crate::names::keys;

/// Attempts at a compare-and-set of the paused set before giving up.
const ATTEMPTS: usize = 1_000;

/// The paused set and the revision to update it at (`None`: never written).
type Stored = (BTreeSet<String>, Option<u64>);

fn decode(bytes: &[u8]) -> Result<BTreeSet<String>, Error> {
    serde_json::from_slice(bytes).map_err(|e| bad_data(format!("the paused queues entry: {e}")))
}

fn encode(set: &BTreeSet<String>) -> Result<Bytes, Error> {
    serde_json::to_vec(set)
        .map(Bytes::from)
        .map_err(|e| bad_data(format!("writing the paused queues entry: {e}")))
}

impl NatsBackend {
    /// The paused set as stored now, with its revision: one read.
    pub(crate) async fn paused_set(&self) -> Result<Stored, Error> {
        match self.inner.ledger.entry_latest(keys::PAUSED).await? {
            Some((bytes, rev)) => Ok((decode(&bytes)?, Some(rev))),
            None => Ok((BTreeSet::new(), None)),
        }
    }

    /// Adds (`pause`) or removes `queue` from the paused set; true when the
    /// set changed.
    async fn change_paused(&self, queue: &str, pause: bool) -> Result<bool, Error> {
        validate_queue_name(queue)?;
        let ledger = &self.inner.ledger;
        for _ in 0..ATTEMPTS {
            let (mut set, rev) = self.paused_set().await?;
            let changed = if pause {
                set.insert(queue.to_string())
            } else {
                set.remove(queue)
            };
            if !changed {
                return Ok(false);
            }
            let value = encode(&set)?;
            let written = match rev {
                Some(rev) => ledger.cas(keys::PAUSED, value, rev).await?.is_some(),
                None => matches!(ledger.create(keys::PAUSED, value).await?, Created::New(_)),
            };
            if written {
                if !pause {
                    self.wake(&[queue.to_string()]).await;
                }
                return Ok(true);
            }
        }
        Err(Error::backend(
            BackendErrorKind::Busy,
            "nats: the paused queues entry stayed contended",
        ))
    }
}

#[async_trait]
impl QueueControl for NatsBackend {
    async fn pause(&self, queue: &str) -> Result<bool, Error> {
        self.change_paused(queue, true).await
    }

    async fn resume(&self, queue: &str) -> Result<bool, Error> {
        self.change_paused(queue, false).await
    }

    async fn paused(&self) -> Result<Vec<String>, Error> {
        Ok(self.paused_set().await?.0.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_round_trips_sorted() {
        let set: BTreeSet<String> = ["zeta", "a.b c*>", "alpha"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let bytes = encode(&set).expect("encode");
        assert_eq!(&bytes[..], br#"["a.b c*>","alpha","zeta"]"#);
        assert_eq!(decode(&bytes).expect("decode"), set);
        assert!(decode(b"not json").is_err());
    }
}
