//! The inspection part: listing and counting tasks.
//!
//! JetStream's key-value store has no secondary index and no ordered range
//! read, so both read every record once (one scan of the ledger reading the
//! last value of each `t.*` key) and filter, order and page in memory. The
//! cost of a call grows with the number of records kept (unfinished ones
//! plus finished ones within their retention), not with the page: fine for
//! `conveyor status` and a dashboard over thousands or tens of thousands
//! of tasks, slow over millions (`docs/nats.md`). Pages are still by key
//! ([`ListParams::after`]), never by offset, so they stay exact while tasks
//! come and go.

use std::collections::BTreeMap;

use conveyor_core::async_trait;
use conveyor_core::{Error, Inspection, ListOrder, ListParams, QueueStats, TaskRecord, Timestamp};

use crate::backend::NatsBackend;

#[async_trait]
impl Inspection for NatsBackend {
    async fn list(&self, params: &ListParams) -> Result<Vec<TaskRecord>, Error> {
        if params.limit == 0 {
            return Ok(Vec::new());
        }
        let mut recs: Vec<TaskRecord> = self
            .inner
            .ledger
            .scan_tasks()
            .await?
            .into_iter()
            .map(|(r, _)| r)
            .filter(|r| r.state() == params.state)
            .filter(|r| params.queue.as_ref().is_none_or(|q| *q == r.queue))
            .filter(|r| params.handler.as_ref().is_none_or(|h| *h == r.handler))
            .filter(|r| match (params.after, params.order) {
                (None, _) => true,
                (Some(a), ListOrder::NewestFirst) => r.id < a.0,
                (Some(a), _) => r.id > a.0,
            })
            .map(|r| r.to_task())
            .collect();
        recs.sort_by_key(|r| r.id);
        if params.order == ListOrder::NewestFirst {
            recs.reverse();
        }
        recs.truncate(params.limit);
        Ok(recs)
    }

    async fn stats(&self) -> Result<Vec<QueueStats>, Error> {
        let now = self.now();
        let mut by_queue: BTreeMap<String, QueueStats> = BTreeMap::new();
        for (rec, _) in self.inner.ledger.scan_tasks().await? {
            let qs = by_queue
                .entry(rec.queue.clone())
                .or_insert_with(|| QueueStats {
                    queue: rec.queue.clone(),
                    ..QueueStats::default()
                });
            *qs.counts.entry(rec.state()).or_insert(0) += 1;
            let ready = rec.state() == conveyor_core::TaskState::Available || rec.is_due(now);
            if ready {
                // Ready since it was due (its enqueue, or the end of its
                // delay or backoff), not since its enqueue.
                let at = Timestamp(rec.created_at.max(rec.run_at));
                qs.oldest_ready = Some(qs.oldest_ready.map_or(at, |o| o.min(at)));
            }
        }
        Ok(by_queue.into_values().collect())
    }
}
