//! Promotion: delayed and backed-off tasks whose run-at has come become
//! ready, on conveyor's clock, at the start of every `reserve` (so delays
//! need no background loop, and a test's manual clock moves them).
//!
//! Their entries wait in the schedule stream under a subject per queue and
//! second (`<P>.sched.<queue>.<second>`). One stream-info request lists
//! the seconds that hold entries; the due ones are read (a direct get per
//! entry), each entry whose record still waits for it is published as a
//! ready message and its record written `available` (publish first, with a
//! `Nats-Msg-Id`, so promoters racing or retrying add one message; a
//! reserver also accepts the message before the write lands). A second
//! wholly past is then purged up to the last entry read. Nothing here waits
//! on the broker's clock, and nothing holds a consumer's `MaxAckPending`.

use std::collections::BTreeSet;

use conveyor_core::{Error, Timestamp, Transition};

use crate::backend::NatsBackend;
use crate::names::BUCKET_MS;
use crate::streams::parse_body;

impl NatsBackend {
    /// Makes the due scheduled and retrying tasks of `queues` ready, from
    /// `subjects`, the schedule's subjects with their counts as read at
    /// `now` or later; true when it read due entries (this or another
    /// promoter may have added ready messages for them).
    pub(crate) async fn promote_due(
        &self,
        queues: &[String],
        subjects: Vec<(String, usize)>,
        now: Timestamp,
    ) -> Result<bool, Error> {
        let streams = &self.inner.streams;
        let names = &self.inner.names;
        let mut entries = Vec::new();
        let mut purges = Vec::new();
        for (subject, count) in subjects {
            let Some((queue, bucket)) = names.parse_sched(&subject) else {
                continue;
            };
            if count == 0 || !queues.contains(&queue) || bucket * BUCKET_MS > now.as_millis() {
                continue;
            }
            let mut next = 0u64;
            loop {
                match streams
                    .sched
                    .direct_get_next_for_subject(subject.clone(), Some(next))
                    .await
                {
                    Ok(m) => {
                        if let Some(entry) = parse_body(&m.payload) {
                            entries.push(entry);
                        }
                        next = m.sequence + 1;
                    }
                    Err(e)
                        if e.kind()
                            == async_nats::jetstream::stream::DirectGetErrorKind::NotFound =>
                    {
                        break
                    }
                    Err(e) => {
                        return Err(crate::error::nats_error(
                            "reading the schedule",
                            e,
                            self.state(),
                        ))
                    }
                }
            }
            if (bucket + 1) * BUCKET_MS <= now.as_millis() && next > 0 {
                purges.push((subject, next));
            }
        }
        let jobs: Vec<_> = entries
            .iter()
            .map(|(id, d)| self.promote(*id, *d, now))
            .collect();
        let promoted = crate::backend::all(jobs).await;
        let mut woken = BTreeSet::new();
        for p in promoted {
            if let Some(queue) = p? {
                woken.insert(queue);
            }
        }
        for (subject, upto) in purges {
            streams
                .sched
                .purge()
                .filter(subject)
                .sequence(upto)
                .await
                .map_err(|e| crate::error::nats_error("purging the schedule", e, self.state()))?;
        }
        self.wake(&woken.into_iter().collect::<Vec<_>>()).await;
        Ok(!entries.is_empty())
    }

    /// Promotes task `id` if schedule entry `d` is its live one and due; its
    /// queue when it did.
    async fn promote(&self, id: u64, d: u64, now: Timestamp) -> Result<Option<String>, Error> {
        let ledger = &self.inner.ledger;
        for _ in 0..16 {
            let Some((rec, rev)) = ledger.get(id).await? else {
                return Ok(None);
            };
            if d != rec.dispatch + 1 || !rec.is_due(now) {
                return Ok(None);
            }
            let out = self.dispatch_for(&rec, d, true);
            self.inner.streams.publish(&[out]).await?;
            let mut new = rec.clone();
            new.apply(Transition::Due)?;
            new.dispatch = d;
            if ledger.cas_rec(&new, rev).await?.is_some() {
                return Ok(Some(rec.queue));
            }
        }
        Ok(None)
    }
}
