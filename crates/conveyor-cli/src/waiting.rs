//! Waiting for a task from the command line: push-based where the store can
//! notify (the client's wait), with one warning on stderr when the task has
//! been due for a while and no worker has taken it — the usual reason a wait
//! never ends is that no worker runs on its queue.

use std::sync::Arc;
use std::time::Duration;

use conveyor::durable::{Backend, TaskRecord};
use conveyor::{Client, TaskId, TaskType, Timestamp};
use serde_json::Value;
use tokio::time::Instant;

/// Waits for one task.
pub struct Waiter {
    backend: Arc<dyn Backend>,
    client: Client,
    /// Give up at this instant (`None`: never).
    pub deadline: Option<Instant>,
    /// Warn once a due task has waited this long untaken.
    pub warn_after: Duration,
}

impl Waiter {
    /// A waiter on `backend` with an optional overall `timeout`.
    pub fn new(backend: Arc<dyn Backend>, timeout: Option<Duration>, warn_after: Duration) -> Self {
        Waiter {
            client: Client::new(backend.clone()),
            backend,
            deadline: timeout.map(|t| Instant::now() + t),
            warn_after,
        }
    }

    /// Waits until task `id` has finished or the deadline passes; returns
    /// its record then (unfinished if the deadline passed), or `None` when
    /// no task has this id.
    pub async fn wait(&self, id: TaskId) -> anyhow::Result<Option<TaskRecord>> {
        let ty: TaskType<Value, Value> = TaskType::named("");
        let handle = self.client.handle(&ty, id);
        let mut warned = false;
        loop {
            let Some(record) = self.backend.get(id).await? else {
                return Ok(None);
            };
            if record.state.is_finished() {
                return Ok(Some(record));
            }
            let now = Instant::now();
            let left = match self.deadline {
                Some(d) if d <= now => return Ok(Some(record)),
                Some(d) => d - now,
                None => Duration::MAX,
            };
            let due_for = Timestamp::now().since(record.run_at);
            if !warned && record.state.is_waiting() && due_for >= self.warn_after {
                warned = true;
                self.warn(&record, due_for).await;
            }
            // Until the warning is due, or the deadline, whichever is first;
            // a finish wakes the wait at once.
            let step = if warned {
                left
            } else {
                self.warn_after
                    .saturating_sub(due_for)
                    .max(Duration::from_millis(100))
                    .min(left)
            };
            // Finished (any outcome) or not: the loop reads the record again.
            let _ = handle.wait_timeout(step).await;
        }
    }

    async fn warn(&self, record: &TaskRecord, due_for: Duration) {
        let waited = humantime::format_duration(Duration::from_secs(due_for.as_secs()));
        let workers = match self.backend.registry() {
            Ok(r) => r
                .workers(Timestamp::now().minus(conveyor::durable::WORKER_SILENCE))
                .await
                .ok(),
            Err(_) => None,
        };
        let now = Timestamp::now();
        let hint = match workers {
            Some(ws) => {
                let on_queue = ws
                    .iter()
                    .filter(|w| w.is_alive(now) && w.queues.contains(&record.queue))
                    .count();
                if on_queue == 0 {
                    format!(
                        "no live worker takes queue {:?} of this {} backend: start one with \
                         `conveyor worker`",
                        record.queue,
                        self.backend.kind()
                    )
                } else {
                    format!(
                        "{on_queue} live worker(s) take queue {:?}: they may be busy, or lack \
                         a handler named {:?}",
                        record.queue, record.handler
                    )
                }
            }
            None => format!(
                "is a worker running on queue {:?} of this {} backend?",
                record.queue,
                self.backend.kind()
            ),
        };
        eprintln!(
            "conveyor: task {} ({}) has been due for {waited} and no worker has taken it; {hint}",
            record.id, record.handler
        );
    }
}
