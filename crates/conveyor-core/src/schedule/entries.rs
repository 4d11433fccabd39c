//! Schedules kept in a store of versioned entries: one implementation of
//! the [`Schedules`](crate::Schedules) part for every backend whose store
//! changes one key at a time by compare-and-set ([`ScheduleEntries`]), such
//! as NATS's key-value ledger.
//!
//! A schedule is one entry: its declaration, where its firing stands, and
//! the fires it decided but may not have created yet (`pending`, each with
//! the task id decided for it). Such a store cannot enqueue and write the
//! entry in one step, so firing is two, made safe by their order:
//!
//! 1. the fires are decided ([`plan`](super::plan)), given fresh task ids,
//!    and written pending with the moved next fire, by a compare-and-set
//!    at the revision read: of two leaders that read one revision, one
//!    writes, the other finds it moved and fires nothing;
//! 2. their tasks are created under those ids (creating one again creates
//!    nothing twice), then taken off the pending list.
//!
//! A crash between the two leaves them pending, and the next pass of any
//! leader creates them, under the same ids. So a fire time is enqueued
//! once, or, when the store's unique key finds its task already there,
//! not again.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Fired, Schedule, ScheduleRecord};
use crate::{BackendErrorKind, Error, NewTask, TaskId, Timestamp};

/// A store of versioned entries that keeps schedules, and the backend whose
/// tasks their fires are.
///
/// Every entry has a revision that grows with each write; `cas` writes only
/// at the revision read.
#[async_trait]
pub trait ScheduleEntries: Send + Sync {
    /// The backend's clock.
    fn now(&self) -> Timestamp;

    /// The key of schedule `name`'s entry.
    fn schedule_key(&self, name: &str) -> String;

    /// The entry under `key` and its revision; `None` when there is none.
    async fn entry(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>, Error>;

    /// Creates `key` with `value`; its revision, or `None` when it exists.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Option<u64>, Error>;

    /// Writes `value` under `key` if it is still at `rev`; the new
    /// revision, or `None` when another write came first.
    async fn cas(&self, key: &str, value: Vec<u8>, rev: u64) -> Result<Option<u64>, Error>;

    /// Removes `key` (nothing when it is not there).
    async fn remove(&self, key: &str) -> Result<(), Error>;

    /// Every schedule entry: its key, value and revision.
    async fn scan_schedules(&self) -> Result<Vec<(String, Vec<u8>, u64)>, Error>;

    /// The first of `n` fresh task ids in a row, never given before.
    async fn alloc_ids(&self, n: u64) -> Result<u64, Error>;

    /// Creates each task under its id, as an enqueue would (its unique key
    /// held by an unfinished task: not created, that task answered
    /// instead): the task of each, in order. Creating one that exists
    /// creates nothing twice.
    async fn create_fires(&self, fires: Vec<(u64, NewTask)>) -> Result<Vec<TaskId>, Error>;

    /// Whether task `id` has not ended.
    async fn running(&self, id: TaskId) -> Result<bool, Error>;
}

/// A schedule's entry as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    /// The name.
    name: String,
    /// The declaration.
    declared: Value,
    #[serde(default)]
    paused: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    task: Option<u64>,
    #[serde(default)]
    missed: u64,
    /// Fires decided and maybe not created yet: (task id, fire time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pending: Vec<(u64, i64)>,
}

/// A schedule read back: its record, its pending fires and its revision.
struct Entry {
    record: ScheduleRecord,
    pending: Vec<(u64, Timestamp)>,
    rev: u64,
}

fn bad(what: impl std::fmt::Display) -> Error {
    Error::backend(BackendErrorKind::Data, what.to_string())
}

impl Entry {
    fn decode(bytes: &[u8], rev: u64) -> Result<Entry, Error> {
        let s: Stored = serde_json::from_slice(bytes)
            .map_err(|e| bad(format!("a schedule's entry does not read: {e}")))?;
        // Read through `from_json`, which keeps what it read: a pass reads
        // every schedule.
        let declared = serde_json::to_vec(&s.declared).unwrap_or_default();
        let schedule = Schedule::from_json(&s.name, &declared)?;
        Ok(Entry {
            record: ScheduleRecord {
                schedule,
                paused: s.paused,
                next_fire: s.next.map(Timestamp),
                last_fire: s.last.map(Timestamp),
                last_task: s.task.map(TaskId),
                missed: s.missed,
            },
            pending: s
                .pending
                .into_iter()
                .map(|(id, at)| (id, Timestamp(at)))
                .collect(),
            rev,
        })
    }

    fn encode(record: &ScheduleRecord, pending: &[(u64, Timestamp)]) -> Vec<u8> {
        let s = Stored {
            name: record.schedule.name.clone(),
            declared: record.schedule.to_value(),
            paused: record.paused,
            next: record.next_fire.map(|t| t.0),
            last: record.last_fire.map(|t| t.0),
            task: record.last_task.map(|t| t.0),
            missed: record.missed,
            pending: pending.iter().map(|&(id, at)| (id, at.0)).collect(),
        };
        serde_json::to_vec(&s).unwrap_or_default()
    }
}

/// Schedule `name`, with its pending fires and revision.
async fn read<S: ScheduleEntries + ?Sized>(store: &S, name: &str) -> Result<Option<Entry>, Error> {
    match store.entry(&store.schedule_key(name)).await? {
        Some((bytes, rev)) => Entry::decode(&bytes, rev).map(Some),
        None => Ok(None),
    }
}

/// Writes `record` (with `pending`) over `kept` (`None`: creates it); the
/// new revision, or `None` when another write came first.
async fn write<S: ScheduleEntries + ?Sized>(
    store: &S,
    record: &ScheduleRecord,
    pending: &[(u64, Timestamp)],
    kept: Option<u64>,
) -> Result<Option<u64>, Error> {
    let key = store.schedule_key(&record.schedule.name);
    let value = Entry::encode(record, pending);
    match kept {
        Some(rev) => store.cas(&key, value, rev).await,
        None => store.create(&key, value).await,
    }
}

/// Changes schedule `name` as `change` says (`None`: leave it), at the
/// revision read, reading again when another write came first.
async fn change<S, F>(store: &S, name: &str, change: F) -> Result<Option<ScheduleRecord>, Error>
where
    S: ScheduleEntries + ?Sized,
    F: Fn(Option<&ScheduleRecord>) -> Option<ScheduleRecord>,
{
    loop {
        let kept = read(store, name).await?;
        let Some(record) = change(kept.as_ref().map(|e| &e.record)) else {
            return Ok(None);
        };
        let pending = kept.as_ref().map_or(&[][..], |e| &e.pending[..]);
        if write(store, &record, pending, kept.as_ref().map(|e| e.rev))
            .await?
            .is_some()
        {
            return Ok(Some(record));
        }
    }
}

/// `Schedules::put_schedule`.
pub async fn put<S: ScheduleEntries + ?Sized>(
    store: &S,
    schedule: &Schedule,
) -> Result<ScheduleRecord, Error> {
    let now = store.now();
    change(store, &schedule.name, |kept| {
        Some(ScheduleRecord::declare(schedule, kept, now))
    })
    .await?
    .ok_or_else(|| bad("storing a schedule: nothing stored"))
}

/// `Schedules::remove_schedule`.
pub async fn remove<S: ScheduleEntries + ?Sized>(store: &S, name: &str) -> Result<bool, Error> {
    let key = store.schedule_key(name);
    if store.entry(&key).await?.is_none() {
        return Ok(false);
    }
    store.remove(&key).await?;
    Ok(true)
}

/// `Schedules::pause_schedule`.
pub async fn pause<S: ScheduleEntries + ?Sized>(
    store: &S,
    name: &str,
    paused: bool,
) -> Result<Option<ScheduleRecord>, Error> {
    let now = store.now();
    change(store, name, |kept| {
        kept.map(|r| {
            let mut r = r.clone();
            r.set_paused(paused, now);
            r
        })
    })
    .await
}

/// `Schedules::schedule`.
pub async fn get<S: ScheduleEntries + ?Sized>(
    store: &S,
    name: &str,
) -> Result<Option<ScheduleRecord>, Error> {
    Ok(read(store, name).await?.map(|e| e.record))
}

/// Every schedule entry that reads, by name; one that does not is logged
/// and passed by, so it stops no other.
async fn scan<S: ScheduleEntries + ?Sized>(store: &S) -> Result<Vec<Entry>, Error> {
    let mut out = Vec::new();
    for (key, bytes, rev) in store.scan_schedules().await? {
        match Entry::decode(&bytes, rev) {
            Ok(e) => out.push(e),
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "skipping a schedule that does not read")
            }
        }
    }
    out.sort_by(|a, b| a.record.schedule.name.cmp(&b.record.schedule.name));
    Ok(out)
}

/// `Schedules::schedules`.
pub async fn list<S: ScheduleEntries + ?Sized>(store: &S) -> Result<Vec<ScheduleRecord>, Error> {
    Ok(scan(store).await?.into_iter().map(|e| e.record).collect())
}

/// `Schedules::next_fire`: a schedule with fires pending is due now.
pub async fn next_fire<S: ScheduleEntries + ?Sized>(store: &S) -> Result<Option<Timestamp>, Error> {
    let now = store.now();
    Ok(scan(store)
        .await?
        .iter()
        .filter_map(|e| {
            if !e.pending.is_empty() {
                Some(now)
            } else if e.record.paused {
                None
            } else {
                e.record.next_fire
            }
        })
        .min())
}

/// Creates the pending fires of `entry`, whose entry is at `rev`, and takes
/// them off its list: the task of each (the holder of its fire key, when
/// that was not this fire's).
async fn create_pending<S: ScheduleEntries + ?Sized>(
    store: &S,
    record: &mut ScheduleRecord,
    pending: &[(u64, Timestamp)],
    rev: u64,
) -> Result<Vec<TaskId>, Error> {
    let fires = pending
        .iter()
        .map(|&(id, at)| (id, record.schedule.fire(at)))
        .collect();
    let tasks = store.create_fires(fires).await?;
    if tasks.len() != pending.len() {
        return Err(bad(format!(
            "creating fires: {} tasks for {} fires",
            tasks.len(),
            pending.len()
        )));
    }
    // The last fire's task as created (another, when its key was held).
    if let (Some(&(id, _)), Some(&task)) = (pending.last(), tasks.last()) {
        if record.last_task == Some(TaskId(id)) {
            record.last_task = Some(task);
        }
    }
    // Taken off the list; when another write came first, the fires stay
    // listed there and the next pass creates them again, which creates
    // nothing twice.
    write(store, record, &[], Some(rev)).await?;
    Ok(tasks)
}

/// How many schedules one pass fires at once (their calls overlap).
const AT_ONCE: usize = 64;

/// `Schedules::fire_due`: the due schedules fired 64 at a time.
pub async fn fire_due<S: ScheduleEntries + ?Sized>(
    store: &S,
    now: Timestamp,
) -> Result<Vec<Fired>, Error> {
    use futures_util::StreamExt;
    let passes: Vec<Result<Vec<Fired>, Error>> = futures_util::stream::iter(scan(store).await?)
        .map(|entry| fire_one(store, entry, now))
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let mut fired = Vec::new();
    for pass in passes {
        fired.extend(pass?);
    }
    Ok(fired)
}

/// Fires `entry` at `now` if it is due (or creates what it left pending).
async fn fire_one<S: ScheduleEntries + ?Sized>(
    store: &S,
    mut entry: Entry,
    now: Timestamp,
) -> Result<Vec<Fired>, Error> {
    if !entry.pending.is_empty() {
        // Left by a pass that stopped between its two steps, or made by
        // one under way now: created again (nothing twice), and not
        // reported, as the pass that decided them reports them.
        let pending = std::mem::take(&mut entry.pending);
        create_pending(store, &mut entry.record, &pending, entry.rev).await?;
        tracing::info!(
            schedule = %entry.record.schedule.name,
            fires = pending.len(),
            "created the fires a pass left pending"
        );
        return Ok(Vec::new());
    }
    let record = &mut entry.record;
    if record.paused || record.next_fire.is_none_or(|next| next.0 > now.0) {
        return Ok(Vec::new());
    }
    let running = match record.watched_task() {
        Some(task) => store.running(task).await?,
        None => false,
    };
    let Some(plan) = record.plan(now, running) else {
        return Ok(Vec::new());
    };
    let n = plan.fires.len() as u64;
    let first = if n > 0 { store.alloc_ids(n).await? } else { 0 };
    let pending: Vec<(u64, Timestamp)> = plan
        .fires
        .iter()
        .enumerate()
        .map(|(i, &at)| (first + i as u64, at))
        .collect();
    record.fired(&plan, pending.last().map(|&(id, at)| (at, TaskId(id))));
    let Some(rev) = write(store, record, &pending, Some(entry.rev)).await? else {
        // Another leader fired it from the same revision.
        return Ok(Vec::new());
    };
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let tasks = create_pending(store, record, &pending, rev).await?;
    Ok(pending
        .iter()
        .zip(tasks)
        .map(|(&(_, at), task)| Fired {
            name: record.schedule.name.clone(),
            at,
            task,
        })
        .collect())
}

/// `Schedules::trigger_schedule`.
pub async fn trigger<S: ScheduleEntries + ?Sized>(
    store: &S,
    name: &str,
) -> Result<Option<TaskId>, Error> {
    loop {
        let Some(mut entry) = read(store, name).await? else {
            return Ok(None);
        };
        let now = store.now();
        let id = store.alloc_ids(1).await?;
        entry.pending.push((id, now));
        entry.record.last_task = Some(TaskId(id));
        let Some(rev) = write(store, &entry.record, &entry.pending, Some(entry.rev)).await? else {
            continue;
        };
        let pending = std::mem::take(&mut entry.pending);
        let tasks = create_pending(store, &mut entry.record, &pending, rev).await?;
        return Ok(tasks.last().copied());
    }
}
