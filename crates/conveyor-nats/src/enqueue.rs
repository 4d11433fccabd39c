//! Creating tasks: `enqueue_many`, and the follow-ups a finish stored.
//!
//! A batch costs a fixed number of round trips whatever its size: one to
//! take its ids from the counter, one (concurrent) create per record, one
//! per unique-key claim, one (pipelined) publish per task with every
//! publish ack awaited together. The order is what makes it safe:
//!
//! 1. **records first** (key-value `create`), so a message never points to
//!    a record that does not exist yet;
//! 2. **unique keys** are claims `u.<queue>.<key>` holding the id of the
//!    task that has them: created if absent, taken over (compare-and-set)
//!    when the holder is finished or gone, a duplicate otherwise (the
//!    record just made is removed again);
//! 3. **messages last**: a ready message (numbered dispatch 1) or a
//!    schedule entry, with a `Nats-Msg-Id` derived from the task id, so
//!    doing it all again for the same ids (a follow-up after a crash) adds
//!    nothing twice.
//!
//! There are no multi-key transactions in JetStream, so a batch is not
//! atomic against a crash halfway: a failed publish removes the records it
//! made (best effort) and reports the error; a process killed between
//! steps 1 and 3 can leave records that never run (see `docs/nats.md`).

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use conveyor_core::{unsupported, BackendErrorKind, Enqueued, Error, NewTask, TaskId, Timestamp};

use crate::backend::{all, NatsBackend};
use crate::body::COPY_LIMIT;
use crate::ledger::{parse_u64, Created};
use crate::limits::RUN_ROOM;
use crate::names::keys;
use crate::record::{Rec, Spec};

impl NatsBackend {
    /// Refuses what this backend cannot store: ordering keys, and params
    /// too big for a record (`limits.rs`).
    pub(crate) fn check_task(&self, task: &NewTask) -> Result<(), Error> {
        task.validate()?;
        if task.ordering_key.is_some() {
            return Err(unsupported("nats", "ordering keys"));
        }
        let limits = self.inner.ledger.limits;
        // Most params are far below the limit: no record is built for them.
        let names = task.queue.len()
            + task.handler.len()
            + task.unique_key.as_ref().map_or(0, String::len)
            + task.trace.as_ref().map_or(0, |_| 1024);
        if task.payload.len() + names + 256 <= limits.record().saturating_sub(RUN_ROOM) {
            return Ok(());
        }
        let largest = self.largest_params(task);
        if task.payload.len() > largest {
            return Err(Error::backend(
                BackendErrorKind::TooLarge,
                format!(
                    "nats: the task's params are {} bytes, over the {largest} bytes a task of handler {:?} may carry here; {}",
                    task.payload.len(),
                    task.handler,
                    limits.over()
                ),
            ));
        }
        Ok(())
    }

    /// The largest params `task` may carry (its own payload aside).
    pub(crate) fn largest_params(&self, task: &NewTask) -> usize {
        let now = self.now();
        let shell = NewTask {
            queue: task.queue.clone(),
            handler: task.handler.clone(),
            payload: Vec::new(),
            priority: task.priority,
            delay: task.delay,
            run_at: task.run_at,
            max_attempts: task.max_attempts,
            timeout: task.timeout,
            unique_key: task.unique_key.clone(),
            ordering_key: None,
            trace: task.trace.clone(),
            keep: task.keep,
        };
        // The id takes its longest form: the limit holds whatever id comes.
        let rec = Rec::new(u64::MAX, &Spec::of(&shell, now), now);
        self.inner.ledger.limits.largest_params(&rec)
    }

    pub(crate) async fn enqueue_tasks(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, Error> {
        for t in &tasks {
            self.check_task(t)?;
        }
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let first = self.inner.ledger.alloc_ids(tasks.len() as u64).await?;
        let specs: Vec<(u64, Spec)> = tasks
            .iter()
            .zip(first..)
            .map(|(t, id)| (id, Spec::of(t, now)))
            .collect();
        self.materialize(&specs, now).await
    }

    /// Creates tasks with the given ids (see the module documentation);
    /// doing it again for the same ids creates nothing twice.
    pub(crate) async fn materialize(
        &self,
        specs: &[(u64, Spec)],
        now: Timestamp,
    ) -> Result<Vec<Enqueued>, Error> {
        let recs: Vec<Rec> = specs.iter().map(|(id, s)| Rec::new(*id, s, now)).collect();
        self.create_recs(recs, now).await
    }

    /// Creates the records `recs` (new, with their ids) and their first
    /// messages, as [`materialize`](Self::materialize) does.
    pub(crate) async fn create_recs(
        &self,
        recs: Vec<Rec>,
        now: Timestamp,
    ) -> Result<Vec<Enqueued>, Error> {
        let ledger = &self.inner.ledger;
        // Encoded once: the ledger entry, and the copy a ready message carries.
        let encoded: Vec<Bytes> = recs.iter().map(Rec::encode).collect();
        for (r, e) in recs.iter().zip(&encoded) {
            ledger.limits.check(r, e.len())?;
        }
        let jobs: Vec<_> = recs
            .iter()
            .zip(&encoded)
            .map(|(r, e)| async move { ledger.create(&keys::task(r.id), e.clone()).await })
            .collect();
        let created: Vec<Result<Created, Error>> = all(jobs).await;
        let mut revs = Vec::with_capacity(created.len());
        for c in created {
            revs.push(match c? {
                Created::New(rev) => Some(rev),
                Created::Exists => None,
            });
        }
        let dups = self.claim_all(&recs).await?;
        let removed = recs
            .iter()
            .zip(&dups)
            .filter(|(_, d)| d.is_some())
            .map(|(r, _)| ledger.remove_rec(r.id))
            .collect::<Vec<_>>();
        for r in all(removed).await {
            r?;
        }
        // With the revision each record was created at, if this call did.
        let fresh: Vec<(&Rec, Option<(u64, &Bytes)>)> = recs
            .iter()
            .zip(&dups)
            .zip(revs.iter().zip(&encoded))
            .filter(|((_, d), _)| d.is_none())
            .map(|((r, _), (rev, e))| (r, rev.map(|rev| (rev, e))))
            .collect();
        let out: Vec<_> = fresh
            .iter()
            .map(|(r, created)| {
                let mut out = self.dispatch_for(r, 1, true);
                // A ready message of a record this call created carries
                // it, so its reserver need not read it (`body.rs`).
                if let (None, Some((rev, e))) = (out.due, created) {
                    if e.len() <= COPY_LIMIT {
                        out.copy = Some((*rev, (*e).clone()));
                    }
                }
                out
            })
            .collect();
        if let Err(e) = self.inner.streams.publish(&out).await {
            let undo: Vec<_> = fresh.iter().map(|(r, _)| ledger.remove_rec(r.id)).collect();
            let _ = all(undo).await;
            return Err(e);
        }
        let ready: Vec<String> = fresh
            .iter()
            .filter(|(r, _)| r.run_at <= now.as_millis())
            .map(|(r, _)| r.queue.clone())
            .collect();
        self.wake(&ready).await;
        Ok(recs
            .iter()
            .zip(dups)
            .map(|(r, dup)| Enqueued {
                id: TaskId(dup.unwrap_or(r.id)),
                duplicate: dup.is_some(),
            })
            .collect())
    }

    /// Claims every record's unique key: the holder's id for each duplicate.
    /// Claims of one key are taken in batch order, different keys at once.
    async fn claim_all(&self, recs: &[Rec]) -> Result<Vec<Option<u64>>, Error> {
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, r) in recs.iter().enumerate() {
            if let Some(k) = &r.unique_key {
                groups.entry(keys::claim(&r.queue, k)).or_default().push(i);
            }
        }
        let mut out = vec![None; recs.len()];
        let runs: Vec<_> = groups
            .into_iter()
            .map(|(key, idx)| async move {
                let mut got = Vec::with_capacity(idx.len());
                for i in idx {
                    got.push((i, self.claim(&key, recs[i].id).await?));
                }
                Ok::<_, Error>(got)
            })
            .collect();
        for group in all(runs).await {
            for (i, dup) in group? {
                out[i] = dup;
            }
        }
        Ok(out)
    }

    /// Claims `key` for task `id`: `None` when it has it now, the holder's
    /// id when an unfinished task holds it.
    pub(crate) async fn claim(&self, key: &str, id: u64) -> Result<Option<u64>, Error> {
        let ledger = &self.inner.ledger;
        let mine = || Bytes::from(id.to_string());
        for _ in 0..100 {
            match ledger.entry(key).await? {
                None => match ledger.create(key, mine()).await? {
                    Created::New(_) => return Ok(None),
                    Created::Exists => continue,
                },
                Some((value, rev)) => {
                    let holder = parse_u64(&value)?;
                    if holder == id {
                        return Ok(None);
                    }
                    let holds = match ledger.get(holder).await? {
                        Some((rec, _)) => !rec.state().is_finished(),
                        None => false,
                    };
                    if holds {
                        return Ok(Some(holder));
                    }
                    if ledger.cas(key, mine(), rev).await?.is_some() {
                        return Ok(None);
                    }
                }
            }
        }
        Err(Error::backend(
            conveyor_core::BackendErrorKind::Busy,
            "nats: a unique key stayed contended",
        ))
    }

    /// Enqueues the follow-ups `rec` (read at `rev`) stored, then clears
    /// them from it. Safe to run again, from any process.
    pub(crate) async fn complete_follow_ups(&self, rec: &Rec, rev: u64) -> Result<(), Error> {
        let specs: Vec<(u64, Spec)> = rec
            .follow_ups
            .iter()
            .map(|f| (f.id, f.spec.clone()))
            .collect();
        let ids: HashSet<u64> = specs.iter().map(|(id, _)| *id).collect();
        self.materialize(&specs, self.now()).await?;
        let (mut rec, mut rev) = (rec.clone(), rev);
        for _ in 0..100 {
            if !rec.follow_ups.iter().any(|f| ids.contains(&f.id)) {
                return Ok(());
            }
            rec.follow_ups.retain(|f| !ids.contains(&f.id));
            if self.inner.ledger.cas_rec(&rec, rev).await?.is_some() {
                return Ok(());
            }
            match self.inner.ledger.get(rec.id).await? {
                Some((r, v)) => (rec, rev) = (r, v),
                None => return Ok(()),
            }
        }
        Ok(())
    }
}
