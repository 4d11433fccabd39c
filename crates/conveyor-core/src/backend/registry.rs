//! Workers a backend knows of: each running worker writes a heartbeat — who
//! it is, what it takes from, how busy it is — so any process can tell which
//! workers are alive and how many of the reserved tasks are really running.
//!
//! An entry is one worker's latest heartbeat, replaced by the next one and
//! kept after the worker stops (marked `stopped`, or silent once it was
//! killed) until maintenance forgets entries older than a day. Entries are
//! stored as the JSON of [`WorkerInfo`], so every backend keeps the same bytes.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::Error;

/// How long a worker may stay silent and still count as alive: three missed
/// heartbeats at the default interval.
pub const WORKER_SILENCE: std::time::Duration = std::time::Duration::from_secs(15);

/// Entries of workers silent for this long are forgotten (by each worker as
/// it starts), and no longer shown.
pub const FORGET_WORKERS_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// One worker's latest heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// Unique for the worker's life: `host:pid:random`.
    pub id: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// The conveyor version it runs.
    pub version: String,
    /// The queues it takes tasks from.
    pub queues: Vec<String>,
    /// The handlers it runs, sorted (empty: not known, a worker of a
    /// version before it said).
    #[serde(default)]
    pub handlers: Vec<String>,
    /// Tasks it runs at once at most.
    pub slots: u32,
    /// Attempts running now.
    pub running: u64,
    /// Tasks it holds now: running, or reserved and waiting for a limit.
    pub reserved: u64,
    /// Tasks it completed so far.
    pub completed: u64,
    /// Attempts it settled as failed so far (retried or dead-lettered).
    pub failed: u64,
    /// When it started.
    pub started_at: Timestamp,
    /// When it wrote this heartbeat.
    pub heartbeat_at: Timestamp,
    /// True once it stopped cleanly (its last heartbeat).
    pub stopped: bool,
}

impl WorkerInfo {
    /// A worker that starts now, with no work yet.
    pub fn new(id: impl Into<String>, host: impl Into<String>, pid: u32, now: Timestamp) -> Self {
        WorkerInfo {
            id: id.into(),
            host: host.into(),
            pid,
            version: String::new(),
            queues: Vec::new(),
            handlers: Vec::new(),
            slots: 0,
            running: 0,
            reserved: 0,
            completed: 0,
            failed: 0,
            started_at: now,
            heartbeat_at: now,
            stopped: false,
        }
    }

    /// The entry as stored.
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and lists always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// An entry as stored; an entry that does not decode is an error naming it.
    pub fn from_json(text: &str) -> Result<WorkerInfo, Error> {
        serde_json::from_str(text).map_err(|e| {
            Error::backend(
                crate::BackendErrorKind::Data,
                format!("a worker entry does not decode: {e}"),
            )
        })
    }

    /// True when it has not stopped and was heard from within
    /// [`WORKER_SILENCE`] of `now`.
    pub fn is_alive(&self, now: Timestamp) -> bool {
        !self.stopped && now.since(self.heartbeat_at) <= WORKER_SILENCE
    }
}

/// Heartbeats of workers, kept by the backend.
#[async_trait]
pub trait Registry: Send + Sync {
    /// Records a worker's heartbeat: inserts or replaces its entry.
    async fn heartbeat(&self, worker: &WorkerInfo) -> Result<(), Error>;

    /// Every worker whose last heartbeat is at or after `since`, most recent
    /// heartbeat first.
    async fn workers(&self, since: Timestamp) -> Result<Vec<WorkerInfo>, Error>;

    /// Forgets workers whose last heartbeat is before `before`; returns how many.
    async fn forget_workers(&self, before: Timestamp) -> Result<u64, Error>;
}

/// What [`Registry::workers`] answers, for a backend that reads its entries
/// whole rather than filtering and ordering them in its store: those heard
/// from at or after `since`, most recent heartbeat first, then by id.
pub fn workers_heard_since(
    entries: impl IntoIterator<Item = WorkerInfo>,
    since: Timestamp,
) -> Vec<WorkerInfo> {
    let mut out: Vec<WorkerInfo> = entries
        .into_iter()
        .filter(|w| w.heartbeat_at >= since)
        .collect();
    out.sort_by(|a, b| b.heartbeat_at.cmp(&a.heartbeat_at).then(a.id.cmp(&b.id)));
    out
}

/// The ids of the entries [`Registry::forget_workers`] forgets, for a
/// backend that reads its entries whole: those last heard from before
/// `before`.
pub fn workers_silent_before(
    entries: impl IntoIterator<Item = WorkerInfo>,
    before: Timestamp,
) -> Vec<String> {
    entries
        .into_iter()
        .filter(|w| w.heartbeat_at < before)
        .map(|w| w.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_and_ages() {
        let mut w = WorkerInfo::new("h:1:ab", "h", 1, Timestamp(1_000));
        w.queues = vec!["default".into()];
        w.running = 3;
        let back = WorkerInfo::from_json(&w.to_json()).unwrap();
        assert_eq!(back, w);
        assert!(w.is_alive(Timestamp(1_000 + 15_000)));
        assert!(!w.is_alive(Timestamp(1_000 + 15_001)));
        w.stopped = true;
        assert!(!w.is_alive(Timestamp(1_000)));
        assert!(WorkerInfo::from_json("{").is_err());
    }

    #[test]
    fn entries_read_whole_are_chosen_and_ordered() {
        let at = |id: &str, t| WorkerInfo::new(id, "h", 1, Timestamp(t));
        let all = || vec![at("b", 20), at("old", 5), at("c", 30), at("a", 20)];
        let ids = |ws: Vec<WorkerInfo>| ws.into_iter().map(|w| w.id).collect::<Vec<_>>();
        assert_eq!(
            ids(workers_heard_since(all(), Timestamp(20))),
            ["c", "a", "b"]
        );
        assert_eq!(workers_silent_before(all(), Timestamp(20)), ["old"]);
    }
}
