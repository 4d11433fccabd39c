//! How long each queue's oldest ready task has waited, counted from when it
//! became ready — its due time, for a task that was delayed or is waiting
//! for a retry — not from when it was enqueued. A task delayed an hour is
//! not an hour late the moment it is due.
//!
//! The stores' stats report the *enqueue* time of the oldest ready task
//! (`QueueStats::oldest_ready`). Until they report the due time themselves,
//! the server corrects it here, for the stats API, the overview and the
//! `conveyor_queue_oldest_ready_age_seconds` gauge alike, from a bounded
//! read: the first [`SCAN`] ready tasks of the queue by id (oldest enqueued
//! first), each of which became ready at `max(created_at, run_at)`. A task
//! past the scan was enqueued no earlier than the last one read, so it
//! became ready no earlier either: the answer is exact when the scan holds
//! every ready task, and otherwise never later than the truth (an age that
//! errs, errs long, as the old one did). A backend that cannot list
//! (RabbitMQ) keeps its enqueue time.

use conveyor::durable::{Backend, ListOrder, ListParams, QueueStats};
use conveyor::{Error, TaskState, Timestamp};

/// Tasks read per queue and state.
const SCAN: usize = 100;

/// Every queue's stats, `oldest_ready` being when the oldest ready task
/// became ready.
pub(crate) async fn stats(backend: &dyn Backend) -> Result<Vec<QueueStats>, Error> {
    let mut queues = backend.stats().await?;
    let now = Timestamp::now();
    for q in &mut queues {
        let Some(enqueued) = q.oldest_ready else {
            continue;
        };
        match ready_since(backend, q, enqueued, now).await {
            Ok(Some(t)) => q.oldest_ready = Some(t),
            Ok(None) => {}
            Err(e) => tracing::debug!(
                queue = %q.queue, error = %e,
                "cannot read the ready tasks; the oldest ready age counts from enqueue"
            ),
        }
    }
    Ok(queues)
}

/// When the oldest ready task of `q` became ready, when the listing tells;
/// `enqueued` is the store's enqueue time of the oldest ready task, a lower
/// bound on every answer.
async fn ready_since(
    backend: &dyn Backend,
    q: &QueueStats,
    enqueued: Timestamp,
    now: Timestamp,
) -> Result<Option<Timestamp>, Error> {
    let mut oldest: Option<Timestamp> = None;
    let mut earlier = |t: Timestamp| oldest = Some(oldest.map_or(t, |o| o.min(t)));
    for state in [
        TaskState::Available,
        TaskState::Scheduled,
        TaskState::Retrying,
    ] {
        if q.count(state) == 0 {
            continue;
        }
        let params = ListParams::new(state)
            .queue_opt(Some(&q.queue))
            .order(ListOrder::OldestFirst)
            .limit(SCAN);
        let tasks = backend.list(&params).await?;
        for t in &tasks {
            // A scheduled or retrying task is ready once due.
            if state == TaskState::Available || t.run_at <= now {
                earlier(t.run_at.max(t.created_at));
            }
        }
        if tasks.len() >= SCAN {
            // Those past the scan became ready no earlier than the last
            // one read was enqueued.
            if let Some(last) = tasks.last() {
                earlier(last.created_at.max(enqueued));
            }
        }
    }
    Ok(oldest.map(|t| t.max(enqueued)))
}
