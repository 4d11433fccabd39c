//! The polling thread: the one thread that calls `poll` on the client. It takes
//! messages (holding while the read-ahead is full), serves rebalances
//! (librdkafka runs them inside `poll`), commits periodically, and runs the
//! shutdown sequence.
//!
//! It is an OS thread, not a tokio task, because a revoke waits (bounded) for
//! the partition's in-flight messages inside librdkafka's callback: blocking
//! there must never stall the runtime the handlers run on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;

use crate::consumer_state::ConsumerState;
use crate::context::Ctx;
use crate::flow::Hold;

/// How long one `poll` blocks. Messages, rebalances and resumes do not wait for
/// it (a resume is issued by whichever thread makes room); it only bounds how
/// late a stop request or a periodic commit is noticed.
const POLL: Duration = Duration::from_millis(100);

/// The most records taken under one lock of the shared state.
const TAKE_BATCH: usize = 64;

/// Runs the consumer until `stop` is set, then shuts down gracefully.
pub(crate) fn run(
    shared: Arc<ConsumerState>,
    consumer: Arc<BaseConsumer<Ctx>>,
    stop: Arc<AtomicBool>,
) {
    let config = &shared.config;
    let mut last_commit = Instant::now();
    // Since when the read-ahead has been full while not paused: the thread
    // holds (takes nothing) instead of polling, see `flow.rs`.
    let mut full_since: Option<Instant> = None;
    // How many records the last take left room for (at least one is taken).
    let mut room = 1;
    while !stop.load(Ordering::Acquire) {
        let held = full_since.map(|since| shared.hold(&consumer, since, Instant::now() + POLL));
        match held {
            Some(Hold::Full) => {}
            Some(Hold::Room | Hold::Over) | None => {
                full_since = None;
                let batch = next_batch(&consumer, room.clamp(1, TAKE_BATCH));
                if !batch.is_empty() {
                    room = shared.take(&batch);
                    if room == 0 {
                        full_since = Some(Instant::now());
                    }
                }
            }
        }
        if last_commit.elapsed() >= config.commit_interval {
            shared.commit(&consumer, CommitMode::Async, None);
            last_commit = Instant::now();
        }
    }
    shut_down(&shared, &consumer);
}

/// The next messages: waits (at most [`POLL`]) for the first, then takes
/// what the client already holds, up to `max`, so the records of a busy
/// stream are taken, and the runner woken, once per batch.
fn next_batch(consumer: &BaseConsumer<Ctx>, max: usize) -> Vec<BorrowedMessage<'_>> {
    let mut batch = Vec::new();
    let mut wait = POLL;
    while batch.len() < max {
        match consumer.poll(wait) {
            Some(Ok(m)) => batch.push(m),
            Some(Err(KafkaError::PartitionEOF(_))) | None => break,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                break;
            }
        }
        wait = Duration::ZERO;
    }
    batch
}

/// Stop dispatching, let in-flight work finish within the grace period (still
/// serving the group), commit what is safe, cancel the rest, leave the group.
fn shut_down(shared: &ConsumerState, consumer: &Arc<BaseConsumer<Ctx>>) {
    let config = &shared.config;
    shared.begin_stop(consumer);
    let deadline = Instant::now() + config.shutdown_grace;
    while shared.in_flight() > 0 && Instant::now() < deadline {
        // Wakes as soon as the last message finishes; polls in between so
        // rebalances and heartbeats are served while draining.
        let left = deadline.saturating_duration_since(Instant::now());
        if shared.wait_idle(left.min(POLL)) {
            break;
        }
        if let Some(Err(e)) = consumer.poll(Duration::ZERO) {
            tracing::debug!(error = %e, "consumer error while draining");
        }
    }
    shared.commit(consumer, CommitMode::Sync, None);
    let left = shared.in_flight();
    if left > 0 {
        tracing::warn!(
            in_flight = left,
            "shutdown grace ended with messages in flight; cancelled, they are not committed"
        );
    }
    shared.end(Duration::from_secs(5));
    // Dropping the last handle closes the consumer: librdkafka revokes the
    // partitions (the revoke callback commits once more) and leaves the group.
}
