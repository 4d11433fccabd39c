//! The ledger: one JetStream key-value bucket holding a record per task
//! (key `t.<id>`), the id counter, unique-key claims, leadership terms and
//! worker heartbeats. It is what makes fencing possible on JetStream: a
//! message ack is keyed by stream sequence only, so a worker whose lease
//! ran out could still ack a redelivery someone else now runs; every state
//! change here is a compare-and-set on the entry's revision (the stream's
//! `Nats-Expected-Last-Subject-Sequence`), so of two writers that read the
//! same record only one can change it.
//!
//! Deleting an entry purges its subject from the bucket's stream instead of
//! writing a delete marker, so pruned tasks leave nothing behind for scans.
//! A scan (listing, stats, pruning) reads the last entry of every key under
//! a filter with a pull consumer ([`Ledger::scan`]): its cost grows with the
//! number of keys it covers, which `docs/nats.md` spells out.

use std::sync::Mutex;

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, stream::Stream};
use async_nats::HeaderMap;
use bytes::Bytes;
use conveyor_core::{BackendErrorKind, Error};

use crate::error::{bad_data, nats_error};
use crate::limits::Limits;
use crate::names::{keys, Names};
use crate::record::Rec;

mod scan;

/// How many task ids a process takes from the counter at once.
pub(crate) const ID_BLOCK: u64 = 1_000;

/// A value read with the revision to update it at.
pub(crate) type Versioned<T> = (T, u64);

/// What a create did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Created {
    /// Written, at this revision.
    New(u64),
    /// The key had a value already.
    Exists,
}

/// The bucket and what reaches it.
pub(crate) struct Ledger {
    client: async_nats::Client,
    /// The JetStream context scans send their pull requests through.
    js: jetstream::Context,
    kv: kv::Store,
    /// The bucket's stream, for purges and scans.
    stream: Stream,
    names: Names,
    /// The counter's last value and revision as this process wrote it.
    seq: Mutex<Option<(u64, u64)>>,
    /// The ids this process took and has not handed out: `[next, end)`.
    ids: tokio::sync::Mutex<(u64, u64)>,
    /// The bucket's stream had more than one replica when opened (an
    /// operator scaled it): a direct get may then be answered by a replica
    /// behind the leader, so [`Ledger::entry_latest`] asks the leader.
    replicated: bool,
    /// How big a record may be (read from the server at connect).
    pub(crate) limits: Limits,
}

impl Ledger {
    /// Opens the namespace's bucket, creating it when missing.
    pub(crate) async fn open(
        js: &jetstream::Context,
        client: async_nats::Client,
        names: &Names,
        replicas: usize,
    ) -> Result<Ledger, Error> {
        let state = || client.connection_state();
        // The bucket's stream is made by hand, as a key-value store of one
        // value per key: async-nats's `create_key_value` first reads the
        // account's info, which it cannot parse from a 2.9 server.
        let config = jetstream::stream::Config {
            name: names.bucket_stream(),
            description: Some("conveyor task records".into()),
            subjects: vec![names.key_subject(">")],
            max_messages_per_subject: 1,
            discard: jetstream::stream::DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            duplicate_window: std::time::Duration::from_secs(120),
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        crate::streams::ensure_stream(js, &client, config, "creating the ledger bucket").await?;
        let kv = js
            .get_key_value(names.bucket())
            .await
            .map_err(|e| nats_error("opening the ledger bucket", e, state()))?;
        let stream = js
            .get_stream(names.bucket_stream())
            .await
            .map_err(|e| nats_error("opening the ledger stream", e, state()))?;
        let replicated = stream.cached_info().config.num_replicas > 1;
        let limits = Limits {
            max_payload: client.server_info().max_payload,
        };
        Ok(Ledger {
            client: client.clone(),
            js: js.clone(),
            kv,
            stream,
            names: names.clone(),
            seq: Mutex::new(None),
            ids: tokio::sync::Mutex::new((0, 0)),
            replicated,
            limits,
        })
    }

    /// Whether the bucket is kept by several servers.
    pub(crate) fn replicated(&self) -> bool {
        self.replicated
    }

    fn state(&self) -> async_nats::connection::State {
        self.client.connection_state()
    }

    /// The value of `key` and its revision; `None` when absent or deleted.
    /// On a bucket kept by several servers, a direct get may be served by
    /// a replica that has not yet applied the latest writes, and a stale
    /// read there would feed a decision (a workflow's fan-in count, a
    /// task's state) that the compare-and-set after it cannot always catch;
    /// so every read goes to the stream's leader, as
    /// [`Ledger::entry_latest`] does.
    pub(crate) async fn entry(&self, key: &str) -> Result<Option<Versioned<Bytes>>, Error> {
        if self.replicated {
            return self.leader_entry(key).await;
        }
        let e = self
            .kv
            .entry(key)
            .await
            .map_err(|e| nats_error("reading the ledger", e, self.state()))?;
        Ok(e.filter(|e| e.operation == Operation::Put)
            .map(|e| (e.value, e.revision)))
    }

    /// The value of `key` and its revision, as of a read that sees every
    /// write acknowledged before it began (for what must not be read stale,
    /// such as the paused queues). The bucket this backend creates has one
    /// replica, whose direct get is such a read; on a bucket scaled to more
    /// replicas the read goes to the stream's leader instead.
    pub(crate) async fn entry_latest(&self, key: &str) -> Result<Option<Versioned<Bytes>>, Error> {
        if !self.replicated {
            return self.entry(key).await;
        }
        self.leader_entry(key).await
    }

    /// The value of `key` and its revision as the stream's leader has them.
    async fn leader_entry(&self, key: &str) -> Result<Option<Versioned<Bytes>>, Error> {
        let subject = self.names.key_subject(key);
        match self.stream.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => Ok(is_live(Some(&m.headers)).then_some((m.payload, m.sequence))),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(nats_error("reading the ledger", e, self.state())),
        }
    }

    /// Writes `value` under `key` only if it has none.
    pub(crate) async fn create(&self, key: &str, value: Bytes) -> Result<Created, Error> {
        match self.kv.create(key, value).await {
            Ok(rev) => Ok(Created::New(rev)),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(Created::Exists),
            Err(e) => Err(nats_error("creating a ledger entry", e, self.state())),
        }
    }

    /// Writes `value` under `key` if its revision is still `rev`; `None`
    /// when someone changed it first.
    pub(crate) async fn cas(
        &self,
        key: &str,
        value: Bytes,
        rev: u64,
    ) -> Result<Option<u64>, Error> {
        match self.kv.update(key, value, rev).await {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(nats_error("updating a ledger entry", e, self.state())),
        }
    }

    /// Writes `value` under `key` whatever was there.
    pub(crate) async fn put(&self, key: &str, value: Bytes) -> Result<u64, Error> {
        self.kv
            .put(key, value)
            .await
            .map_err(|e| nats_error("writing a ledger entry", e, self.state()))
    }

    /// Removes `key` and its history, leaving no marker.
    pub(crate) async fn remove(&self, key: &str) -> Result<(), Error> {
        self.stream
            .purge()
            .filter(self.names.key_subject(key))
            .await
            .map(|_| ())
            .map_err(|e| nats_error("removing a ledger entry", e, self.state()))
    }

    /// Removes task `id`'s record.
    pub(crate) async fn remove_rec(&self, id: u64) -> Result<(), Error> {
        self.remove(&keys::task(id)).await
    }

    /// Task `id`'s record and revision.
    pub(crate) async fn get(&self, id: u64) -> Result<Option<Versioned<Rec>>, Error> {
        match self.entry(&keys::task(id)).await? {
            Some((bytes, rev)) => Ok(Some((Rec::decode(&bytes)?, rev))),
            None => Ok(None),
        }
    }

    /// Replaces a record read at `rev`; `None` when it changed since. A
    /// record too big for the server is refused before it is sent
    /// (`limits.rs`).
    pub(crate) async fn cas_rec(&self, rec: &Rec, rev: u64) -> Result<Option<u64>, Error> {
        let bytes = rec.encode();
        self.limits.check(rec, bytes.len())?;
        self.cas(&keys::task(rec.id), bytes, rev).await
    }

    /// `n` fresh task ids, consecutive: the first of them. Ids come from
    /// a block this process took from the counter ([`ID_BLOCK`] at a time,
    /// or `n` when more), so most calls cost no round trip and concurrent
    /// callers of one process never race on the counter: the refill is
    /// taken under a lock, one compare-and-set for all of them. Ids grow in
    /// allocation order within a process; across processes they interleave
    /// by block, and a process that stops leaves the rest of its block unused.
    pub(crate) async fn alloc_ids(&self, n: u64) -> Result<u64, Error> {
        let mut block = self.ids.lock().await;
        let (next, end) = *block;
        if end - next >= n {
            block.0 += n;
            return Ok(next);
        }
        let size = n.max(ID_BLOCK);
        let first = self.take_ids(size).await?;
        // The rest of the old block is dropped: ids stay increasing.
        *block = (first + n, first + size);
        Ok(first)
    }

    /// `n` ids from the counter: the first of them. One round trip when
    /// this process was the counter's last writer, more under contention.
    async fn take_ids(&self, n: u64) -> Result<u64, Error> {
        let cached = self.seq.lock().ok().and_then(|s| *s);
        let mut current = cached;
        for _ in 0..1_000 {
            let (value, rev) = match current {
                Some(c) => c,
                None => match self.entry(keys::SEQ).await? {
                    Some((bytes, rev)) => (parse_u64(&bytes)?, rev),
                    None => match self.create(keys::SEQ, Bytes::from_static(b"0")).await? {
                        Created::New(rev) => (0, rev),
                        Created::Exists => continue,
                    },
                },
            };
            let next = value + n;
            match self.cas(keys::SEQ, next.to_string().into(), rev).await? {
                Some(new_rev) => {
                    if let Ok(mut s) = self.seq.lock() {
                        *s = Some((next, new_rev));
                    }
                    return Ok(value + 1);
                }
                None => current = None,
            }
        }
        Err(Error::backend(
            BackendErrorKind::Busy,
            "nats: the task id counter stayed contended",
        ))
    }

    /// A fresh workflow id (a counter of its own: workflows are listed
    /// newest first by id).
    pub(crate) async fn next_flow_id(&self) -> Result<u64, Error> {
        for _ in 0..1_000 {
            let (value, rev) = match self.entry(keys::FLOW_SEQ).await? {
                Some((bytes, rev)) => (parse_u64(&bytes)?, rev),
                None => match self
                    .create(keys::FLOW_SEQ, Bytes::from_static(b"0"))
                    .await?
                {
                    Created::New(rev) => (0, rev),
                    Created::Exists => continue,
                },
            };
            let next = value + 1;
            if self
                .cas(keys::FLOW_SEQ, next.to_string().into(), rev)
                .await?
                .is_some()
            {
                return Ok(next);
            }
        }
        Err(Error::backend(
            BackendErrorKind::Busy,
            "nats: the workflow id counter stayed contended",
        ))
    }

    /// Every task record (a full scan).
    pub(crate) async fn scan_tasks(&self) -> Result<Vec<Versioned<Rec>>, Error> {
        let entries = self.scan(keys::TASKS).await?;
        let mut out = Vec::with_capacity(entries.len());
        for (_, bytes, rev) in entries {
            out.push((Rec::decode(&bytes)?, rev));
        }
        Ok(out)
    }
}

/// Whether an entry with these headers holds a value (a put), not a
/// key-value removal marker.
fn is_live(headers: Option<&HeaderMap>) -> bool {
    headers
        .and_then(|h| h.get("KV-Operation"))
        .is_none_or(|op| op.as_str() == "PUT")
}

/// A decimal number stored as text.
pub(crate) fn parse_u64(bytes: &[u8]) -> Result<u64, Error> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| bad_data("a ledger number does not parse"))
}
