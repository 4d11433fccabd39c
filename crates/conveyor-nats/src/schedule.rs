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
//!
//! Promotion also tells what still waits (the earliest due time per queue:
//! a future second's start, or the run-at of an entry read too early), so
//! a reserve can skip the listing until then (see `due.rs`).

use std::collections::{BTreeSet, HashMap};

use conveyor_core::{Error, TaskState, Timestamp, Transition};

use crate::backend::NatsBackend;
use crate::body::parse_body;
use crate::names::BUCKET_MS;

impl NatsBackend {
    /// Makes the due scheduled and retrying tasks of `queues` ready, from
    /// `subjects`, the schedule's subjects with their counts as read at
    /// `now` or later.
    pub(crate) async fn promote_due(
        &self,
        queues: &[String],
        subjects: Vec<(String, usize)>,
        now: Timestamp,
    ) -> Result<Promotion, Error> {
        let streams = &self.inner.streams;
        let names = &self.inner.names;
        let mut entries = Vec::new();
        let mut purges = Vec::new();
        let mut waiting = HashMap::new();
        for (subject, count) in subjects {
            let Some((queue, bucket)) = names.parse_sched(&subject) else {
                continue;
            };
            if count == 0 {
                continue;
            }
            let start = bucket * BUCKET_MS;
            if !queues.contains(&queue) || start > now.as_millis() {
                // Not read now: due from the second's start at the earliest.
                lower(&mut waiting, &queue, start);
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
            match p? {
                Promoted::Ready(queue) => {
                    woken.insert(queue);
                }
                Promoted::Waiting(queue, due) => lower(&mut waiting, &queue, due),
                Promoted::Stale => {}
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
        Ok(Promotion {
            read: !entries.is_empty(),
            waiting,
        })
    }

    /// Promotes task `id` if schedule entry `d` is its live one and due.
    async fn promote(&self, id: u64, d: u64, now: Timestamp) -> Result<Promoted, Error> {
        let ledger = &self.inner.ledger;
        let mut queue = String::new();
        for _ in 0..16 {
            let Some((rec, rev)) = ledger.get(id).await? else {
                return Ok(Promoted::Stale);
            };
            queue.clone_from(&rec.queue);
            if d != rec.dispatch + 1 || rec.state().is_finished() {
                return Ok(Promoted::Stale);
            }
            if !rec.is_due(now) {
                // Waiting for its time, or for the write of the transition
                // that published it (then look again at the next reserve).
                let due = match rec.state() {
                    TaskState::Scheduled | TaskState::Retrying => rec.run_at,
                    _ => now.as_millis(),
                };
                return Ok(Promoted::Waiting(rec.queue, due));
            }
            let out = self.dispatch_for(&rec, d, true);
            self.inner.streams.publish(&[out]).await?;
            let mut new = rec.clone();
            new.apply(Transition::Due)?;
            new.dispatch = d;
            if ledger.cas_rec(&new, rev).await?.is_some() {
                return Ok(Promoted::Ready(rec.queue));
            }
        }
        // Contended sixteen times: someone else is moving it; look again.
        Ok(Promoted::Waiting(queue, now.as_millis()))
    }
}

/// What one promotion pass did.
#[derive(Debug)]
pub(crate) struct Promotion {
    /// It read due entries (this or another promoter may have added ready
    /// messages for them).
    pub(crate) read: bool,
    /// Queue → the earliest due time of an entry that still waits (as far
    /// as this pass saw).
    pub(crate) waiting: HashMap<String, i64>,
}

/// What became of one schedule entry.
enum Promoted {
    /// Its task is ready in this queue.
    Ready(String),
    /// Its task waits in this queue until about this time (ms).
    Waiting(String, i64),
    /// The entry is not live (the task moved on or is gone).
    Stale,
}

fn lower(map: &mut HashMap<String, i64>, queue: &str, due: i64) {
    let d = map.entry(queue.to_string()).or_insert(due);
    *d = (*d).min(due);
}
