//! Commits and rebalances: committing each partition's safe offset, tracking
//! newly assigned partitions, and letting revoked ones go without ever
//! committing for a partition that is gone.

use std::sync::Arc;
use std::time::Instant;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::consumer_state::ConsumerState;
use crate::context::Ctx;
use crate::partition::Partition;

impl ConsumerState {
    /// Commits the safe offset of every partition (or of `only`) that moved.
    pub(crate) fn commit(
        &self,
        consumer: &BaseConsumer<Ctx>,
        mode: CommitMode,
        only: Option<&[(Arc<str>, i32)]>,
    ) {
        let mut tpl = TopicPartitionList::new();
        let mut list = Vec::new();
        {
            let mut st = self.lock();
            for p in st.partitions.iter_mut() {
                if only.is_some_and(|o| !o.iter().any(|(t, n)| p.is(t, *n))) {
                    continue;
                }
                if let Some(offset) = p.offsets.take_commit() {
                    if tpl
                        .add_partition_offset(&p.topic, p.partition, Offset::Offset(offset))
                        .is_ok()
                    {
                        list.push((p.topic.clone(), p.partition, p.epoch, offset));
                    }
                }
            }
        }
        if list.is_empty() {
            return;
        }
        let result = consumer.commit(&tpl, mode);
        if result.is_ok() {
            self.lock().counters.commits += 1;
        }
        if let Err(e) = result {
            tracing::warn!(error = %e, "offset commit failed; retried next round");
            let mut st = self.lock();
            for (topic, partition, epoch, offset) in list {
                if let Some(p) = st.partition(&topic, partition).filter(|p| p.epoch == epoch) {
                    p.offsets.commit_failed(offset);
                }
            }
        }
    }

    /// The broker answered a commit.
    pub(crate) fn committed(&self, ok: bool, tpl: &TopicPartitionList) {
        if ok {
            return;
        }
        let mut st = self.lock();
        for e in tpl.elements() {
            if let (Some(p), Offset::Offset(o)) =
                (st.partition(e.topic(), e.partition()), e.offset())
            {
                p.offsets.commit_failed(o);
            }
        }
    }

    // ---- rebalances (the polling thread, inside poll) ----

    /// New partitions: track them; pause them too while at the limit.
    pub(crate) fn assigned(&self, consumer: &BaseConsumer<Ctx>, tpl: &TopicPartitionList) {
        let mut st = self.lock();
        let mut fresh = TopicPartitionList::new();
        for e in tpl.elements() {
            if st.partition(e.topic(), e.partition()).is_some() {
                continue;
            }
            let epoch = st.next_epoch;
            st.next_epoch += 1;
            st.partitions
                .push(Partition::new(Arc::from(e.topic()), e.partition(), epoch));
            fresh.add_partition(e.topic(), e.partition());
        }
        tracing::info!(partitions = ?fresh.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect::<Vec<_>>(), "assigned");
        let r = if st.paused || st.stopping {
            consumer.pause(&fresh)
        } else {
            consumer.resume(&fresh)
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "pause/resume of new partitions failed");
        }
    }

    /// Partitions being taken away: stop dispatching them, wait (bounded) for
    /// their in-flight messages, commit what is safe, then forget them; work of
    /// theirs still running can no longer commit anything.
    pub(crate) fn revoked(&self, consumer: &BaseConsumer<Ctx>, tpl: &TopicPartitionList) {
        let list: Vec<(Arc<str>, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (Arc::from(e.topic()), e.partition()))
            .collect();
        let deadline = Instant::now() + self.config.revoke_timeout;
        {
            let mut st = self.lock();
            for (t, n) in &list {
                if let Some(p) = st.partition(t, *n) {
                    p.revoking = true;
                }
            }
            let gone = |c: &crate::partition::Coord| {
                list.iter().any(|(t, n)| *t == c.topic && *n == c.partition)
            };
            st.waiting.retain(|(c, _)| !gone(c));
            let (dropped, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut st.ready)
                .into_iter()
                .partition(|(_, (c, _))| gone(c));
            st.ready = kept.into();
            for (k, _) in dropped {
                st.gate.forget(&k);
            }
            st.gate.drop_where(gone);
            loop {
                let busy: usize = st
                    .partitions
                    .iter()
                    .filter(|p| p.revoking)
                    .map(|p| p.in_flight)
                    .sum();
                if busy == 0 || self.changed.wait_until(&mut st, deadline).timed_out() {
                    break;
                }
            }
        }
        self.commit(consumer, CommitMode::Sync, Some(&list));
        let cancelled: Vec<conveyor::TaskId> = {
            let mut st = self.lock();
            let (gone, kept): (Vec<Partition>, Vec<Partition>) = std::mem::take(&mut st.partitions)
                .into_iter()
                .partition(|p| list.iter().any(|(t, n)| p.is(t, *n)));
            st.partitions = kept;
            gone.into_iter()
                .flat_map(|p| p.tasks.into_values())
                .collect()
        };
        if !cancelled.is_empty() {
            tracing::warn!(count = cancelled.len(), "revoked partitions still had work in flight past the revoke timeout; cancelled (it runs again on the new owner)");
        }
        self.cancel_tasks(cancelled);
        tracing::info!(partitions = ?list, "revoked");
    }

    /// High watermarks from the client's statistics.
    pub(crate) fn watermarks(&self, stats: &rdkafka::Statistics) {
        let mut st = self.lock();
        for p in st.partitions.iter_mut() {
            if let Some(s) = stats
                .topics
                .get(&*p.topic)
                .and_then(|t| t.partitions.get(&p.partition))
            {
                if s.hi_offset >= 0 {
                    p.high_watermark = Some(s.hi_offset);
                }
            }
        }
    }
}
