//! The record keeper part on Redis: whole task records another backend
//! writes (RabbitMQ's, whose broker keeps messages and not records), kept in
//! this store's own record layout, so `get`, `wait()` and `conveyor show`
//! read them as they read its own tasks.
//!
//! `lua/keep.lua` writes each record's data and state records (and its
//! result and error, when it has them) and adds its id to the namespace's
//! `kept` sorted set, scored by when it expires; the finished ones are
//! published on the `finished` channel, which wakes result waiters. A kept
//! record is in none of this store's own queue sets, so no script reserves,
//! recovers, cancels or requeues it, and its own `list` and `stats` never
//! show it. It is indexed apart instead, in one sorted set per queue and
//! state under `kept:q:…` (see `lua/common/kept.lua`), moved between them
//! in the same script that rewrites it; `lua/kept_list.lua`,
//! `lua/kept_stats.lua` and `lua/kept_purge.lua` read and cut that index
//! only. Each `keep`, `kept_stats` and `kept_purge` call drops a batch of
//! the expired records first (out of the index too), so kept records need
//! no upkeep of their own, and a listing skips those not dropped yet. A
//! record whose id is one of this store's own tasks is refused, writing
//! nothing.

use conveyor_core::{
    async_trait, EntryWrite, Error, ListParams, QueueStats, RecordKeeper, Retention, TaskId,
    TaskRecord, TaskState, Timestamp,
};

use crate::backend::RedisBackend;
use crate::packed::pack_fields;
use crate::reply;
use crate::scripts::Op;

/// Records one `keep` call writes at most; a larger batch takes several.
const KEEP_BATCH: usize = 1_000;

/// Expired records one `kept_expire` call drops at most (its third argument).
const EXPIRE_BATCH: u64 = 200;

/// When a record kept at `now` (this store's clock) expires, and whether
/// that is its own expiry (which `get` reads back): a finished one with an
/// expiry of its own as long after now as that was after its finish; any
/// other finished one `retention` after it was kept (dead ones
/// `retention.dead`), not after the finish time it carries, which the
/// writer's clock stamped; an unfinished one `retention.dead` after it was
/// due (its writer may never write it again).
fn expires(record: &TaskRecord, retention: Retention, now: Timestamp) -> (Timestamp, bool) {
    if let (true, Some(done), Some(at)) = (
        record.state.is_finished(),
        record.finished_at,
        record.expires_at,
    ) {
        // Its own expiry (its keep, or its handler's retention), as long
        // after now as it was after its finish.
        return (now.plus(at.since(done)), true);
    }
    if record.state.is_finished() {
        let keep = if record.state == conveyor_core::TaskState::Dead {
            retention.dead
        } else {
            retention.finished
        };
        (now.plus(keep), false)
    } else {
        (
            Timestamp(record.run_at.0.max(now.0)).plus(retention.dead),
            false,
        )
    }
}

#[async_trait]
impl RecordKeeper for RedisBackend {
    async fn keep(&self, records: &[TaskRecord], retention: Retention) -> Result<(), Error> {
        let now = self.inner.clock.now();
        for batch in records.chunks(KEEP_BATCH) {
            let mut call = self.call(Op::Keep);
            call.arg(now.as_millis()).arg(batch.len());
            for r in batch {
                let d = pack_fields(
                    r.max_attempts,
                    r.created_at,
                    None,
                    r.keep,
                    r.trace.as_ref(),
                    &r.payload,
                );
                call.arg(r.id.0)
                    .arg(&r.queue)
                    .arg(&r.handler)
                    .arg(d)
                    .arg(r.run_at.as_millis())
                    .arg(r.state.code())
                    .arg(r.attempts)
                    .arg(
                        r.finished_at
                            .map(|t| t.as_millis().to_string())
                            .unwrap_or_default(),
                    );
                match &r.result {
                    Some(v) => call.arg("1").arg(v.as_slice()),
                    None => call.arg("0").arg(""),
                };
                match &r.error {
                    Some(e) => call.arg("1").arg(e.as_str()),
                    None => call.arg("0").arg(""),
                };
                let (at, own) = expires(r, retention, now);
                call.arg(at.as_millis()).arg(u8::from(own));
            }
            self.run("keep", &call).await?;
        }
        Ok(())
    }

    async fn forget(&self, ids: &[TaskId]) -> Result<(), Error> {
        for batch in ids.chunks(KEEP_BATCH) {
            let mut call = self.call(Op::Forget);
            for id in batch {
                call.arg(id.0);
            }
            self.run("forget", &call).await?;
        }
        Ok(())
    }

    /// See `lua/kept_list.lua`; a call that stops at its budget (a handler
    /// filter) is followed by another from where it stopped.
    async fn list_kept(&self, params: &ListParams) -> Result<Vec<TaskRecord>, Error> {
        self.list_by(Op::KeptList, Some(self.inner.clock.now()), params)
            .await
    }

    async fn kept_stats(&self) -> Result<Vec<QueueStats>, Error> {
        let mut call = self.call(Op::KeptStats);
        call.arg(self.inner.clock.now().as_millis());
        reply::stats_rows(self.run("kept_stats", &call).await?)
    }

    async fn expire_kept(&self) -> Result<u64, Error> {
        let mut total = 0u64;
        loop {
            let mut call = self.call(Op::KeptExpire);
            call.arg(self.inner.clock.now().as_millis())
                .arg(EXPIRE_BATCH);
            let n: u64 = reply::number(self.run("kept_expire", &call).await?, "kept_expire")?;
            total += n;
            if n < EXPIRE_BATCH {
                return Ok(total);
            }
        }
    }

    async fn purge_kept(&self, state: TaskState, queue: Option<&str>) -> Result<u64, Error> {
        let mut total = 0u64;
        loop {
            let mut call = self.call(Op::KeptPurge);
            call.arg(self.inner.clock.now().as_millis())
                .arg(state.code())
                .arg(KEEP_BATCH);
            if let Some(q) = queue {
                call.arg(q);
            }
            let n: u64 = reply::number(self.run("kept_purge", &call).await?, "kept_purge")?;
            total += n;
            if n < KEEP_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// See `kept_entries.rs`.
    async fn kept_entry(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>, Error> {
        self.kept_entry_of(key).await
    }

    async fn write_entry(
        &self,
        key: &str,
        value: &[u8],
        when: EntryWrite,
    ) -> Result<Option<u64>, Error> {
        self.write_kept_entry(key, value, when).await
    }

    async fn remove_entry(&self, key: &str) -> Result<(), Error> {
        self.remove_kept_entry(key).await
    }

    async fn kept_entries(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>, u64)>, Error> {
        self.kept_entries_under(prefix).await
    }

    async fn count_up(&self, name: &str, n: u64) -> Result<u64, Error> {
        self.count_kept(name, n).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use conveyor_core::TaskState;

    use super::*;

    fn record(state: TaskState, run_at: i64, finished_at: Option<i64>) -> TaskRecord {
        TaskRecord {
            id: TaskId(1),
            queue: "q".into(),
            handler: "h".into(),
            state,
            payload: Vec::new(),
            priority: 0,
            attempts: 0,
            max_attempts: 3,
            run_at: Timestamp(run_at),
            unique_key: None,
            ordering_key: None,
            result: None,
            error: None,
            created_at: Timestamp(0),
            finished_at: finished_at.map(Timestamp),
            trace: None,
            keep: None,
            expires_at: None,
            history: Vec::new(),
        }
    }

    #[test]
    fn each_state_expires_after_its_retention() {
        let r = Retention {
            finished: Duration::from_secs(10),
            dead: Duration::from_secs(100),
        };
        let now = Timestamp(1_000_000);
        let at = |s, ra, fa| {
            let (at, own) = expires(&record(s, ra, fa), r, now);
            assert!(!own, "no expiry of its own");
            at.as_millis()
        };
        // Finished: from when it is kept, whatever its writer's clock said.
        assert_eq!(at(TaskState::Completed, 0, Some(500_000)), 1_010_000);
        assert_eq!(at(TaskState::Cancelled, 0, Some(5_000_000)), 1_010_000);
        assert_eq!(at(TaskState::Dead, 0, Some(500_000)), 1_100_000);
        // Unfinished: from when it is due, or now when that is past.
        assert_eq!(at(TaskState::Scheduled, 2_000_000, None), 2_100_000);
        assert_eq!(at(TaskState::Running, 0, None), 1_100_000);
        // A finished one with an expiry of its own: as long after now.
        let mut own = record(TaskState::Completed, 0, Some(500_000));
        own.expires_at = Some(Timestamp(560_000));
        assert_eq!(expires(&own, r, now), (Timestamp(1_060_000), true));
    }
}
