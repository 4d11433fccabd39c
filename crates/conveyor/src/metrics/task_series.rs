//! The per-task series: a counter by queue and handler for each step of a
//! task's life, and the run-time and queue-wait histograms. They are counted
//! from the lifecycle events by a counter
//! ([`EventBus::count_tasks`](crate::events::EventBus::count_tasks)), which
//! is called in place on every task event, so no count is ever missed (a
//! lagging subscriber would undercount), and is handed the event's figures
//! with its names borrowed, so counting builds no event.
//!
//! Counting an event takes no lock and writes nothing shared but the counts
//! themselves: the handles of the pairs seen so far are read from an
//! [`ArcSwap`] (a new pair copies the small table once), and the histograms
//! are [`DurationHistogram`]s.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use conveyor_core::OutcomeKind;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};

use super::duration_histogram::DurationHistogram;
use crate::events::{TaskEventKind, TaskFact};

/// `queue` and `handler`, the labels of every task series.
type Labels = [(&'static str, Arc<str>); 2];

type Histograms = Family<Labels, DurationHistogram>;

/// The series of one `queue` and `handler`, taken out of their families
/// once: a handle shares its family member's value.
struct Handles {
    started: Counter,
    succeeded: Counter,
    failed: Counter,
    retried: Counter,
    dead_lettered: Counter,
    discarded: Counter,
    cancelled: Counter,
    run: DurationHistogram,
    queue_wait: DurationHistogram,
}

/// Pairs of names kept in [`Known::first`], compared name by name; more go
/// into [`Known::more`], looked up by hash.
const FIRST: usize = 32;

/// The handles of every `queue` and `handler` seen.
#[derive(Clone, Default)]
struct Known {
    /// The first [`FIRST`] pairs: (queue, handler, handles). Comparing two
    /// names (most often the very strings these were made from) costs less
    /// than hashing them, for the few pairs most workers have.
    first: Vec<(Arc<str>, Arc<str>, Arc<Handles>)>,
    /// Any more, by queue, then by handler.
    more: HashMap<Arc<str>, HashMap<Arc<str>, Arc<Handles>>>,
}

impl Known {
    fn get(&self, queue: &Arc<str>, handler: &Arc<str>) -> Option<&Arc<Handles>> {
        let same = |a: &Arc<str>, b: &Arc<str>| Arc::ptr_eq(a, b) || a == b;
        if let Some((_, _, h)) = self
            .first
            .iter()
            .find(|(q, n, _)| same(q, queue) && same(n, handler))
        {
            return Some(h);
        }
        self.more.get(&**queue)?.get(&**handler)
    }

    fn insert(&mut self, queue: &Arc<str>, handler: &Arc<str>, handles: Arc<Handles>) {
        if self.first.len() < FIRST {
            self.first.push((queue.clone(), handler.clone(), handles));
        } else {
            self.more
                .entry(queue.clone())
                .or_default()
                .insert(handler.clone(), handles);
        }
    }
}

/// Every task series of one registry.
#[derive(Clone)]
pub(crate) struct TaskSeries {
    /// The handles of every `queue` and `handler` seen, so counting an
    /// event finds its two names once instead of hashing them into each
    /// family it counts in. Read without a lock; replaced whole when a new
    /// pair is seen.
    handles: Arc<ArcSwap<Known>>,
    /// Held while a new pair is added, so two first sights of pairs never
    /// replace each other's table.
    adding: Arc<Mutex<()>>,
    started: Family<Labels, Counter>,
    succeeded: Family<Labels, Counter>,
    failed: Family<Labels, Counter>,
    retried: Family<Labels, Counter>,
    dead_lettered: Family<Labels, Counter>,
    discarded: Family<Labels, Counter>,
    cancelled: Family<Labels, Counter>,
    run: Histograms,
    queue_wait: Histograms,
}

impl TaskSeries {
    /// The series, registered in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let series = TaskSeries {
            handles: Arc::default(),
            adding: Arc::default(),
            started: Family::default(),
            succeeded: Family::default(),
            failed: Family::default(),
            retried: Family::default(),
            dead_lettered: Family::default(),
            discarded: Family::default(),
            cancelled: Family::default(),
            run: Family::default(),
            queue_wait: Family::default(),
        };
        let counters = [
            ("tasks_started", "Attempts started", &series.started),
            ("tasks_succeeded", "Tasks that succeeded", &series.succeeded),
            (
                "tasks_failed",
                "Attempts that failed (an error, a timeout or a panic), retried or dead-lettered",
                &series.failed,
            ),
            (
                "tasks_retried",
                "Failed attempts settled for another attempt later",
                &series.retried,
            ),
            (
                "tasks_dead_lettered",
                "Tasks that failed for good and were dead-lettered",
                &series.dead_lettered,
            ),
            (
                "tasks_discarded",
                "Tasks their handler asked to drop",
                &series.discarded,
            ),
            (
                "tasks_cancelled",
                "Tasks cancelled, or handed back unstarted at a stop",
                &series.cancelled,
            ),
        ];
        for (name, help, family) in counters {
            registry.register(name, help, family.clone());
        }
        registry.register_with_unit(
            "task_run",
            "How long attempts ran",
            Unit::Seconds,
            series.run.clone(),
        );
        registry.register_with_unit(
            "task_queue_wait",
            "From when a task was ready to run (enqueued, or due after a delay or backoff) \
             to its attempt's start",
            Unit::Seconds,
            series.queue_wait.clone(),
        );
        series
    }

    /// The handles of `queue` and `handler`, made on first sight.
    fn handles(&self, queue: &Arc<str>, handler: &Arc<str>) -> Arc<Handles> {
        let _adding = self.adding.lock();
        let known = self.handles.load();
        if let Some(h) = known.get(queue, handler) {
            return h.clone();
        }
        let labels: Labels = [("queue", queue.clone()), ("handler", handler.clone())];
        let h = Arc::new(Handles {
            started: self.started.get_or_create(&labels).clone(),
            succeeded: self.succeeded.get_or_create(&labels).clone(),
            failed: self.failed.get_or_create(&labels).clone(),
            retried: self.retried.get_or_create(&labels).clone(),
            dead_lettered: self.dead_lettered.get_or_create(&labels).clone(),
            discarded: self.discarded.get_or_create(&labels).clone(),
            cancelled: self.cancelled.get_or_create(&labels).clone(),
            run: self.run.get_or_create(&labels).clone(),
            queue_wait: self.queue_wait.get_or_create(&labels).clone(),
        });
        let mut more = Known::clone(&known);
        more.insert(queue, handler, h.clone());
        self.handles.store(Arc::new(more));
        h
    }

    /// Counts one task event.
    pub(crate) fn count(&self, fact: &TaskFact<'_>) {
        if fact.kind == TaskEventKind::Enqueued {
            return;
        }
        let known = self.handles.load();
        match known.get(fact.queue, fact.handler) {
            Some(h) => count(h, fact),
            None => {
                drop(known);
                count(&self.handles(fact.queue, fact.handler), fact);
            }
        }
    }
}

/// Counts `task` in the series of its queue and handler.
fn count(h: &Handles, task: &TaskFact<'_>) {
    let counter = match task.kind {
        TaskEventKind::Enqueued => return,
        TaskEventKind::Started => {
            if let Some(wait) = task.since_ready {
                h.queue_wait.observe(wait);
            }
            &h.started
        }
        TaskEventKind::Succeeded => &h.succeeded,
        TaskEventKind::Retried => &h.retried,
        TaskEventKind::DeadLettered => &h.dead_lettered,
        TaskEventKind::Discarded => &h.discarded,
        TaskEventKind::Cancelled => &h.cancelled,
    };
    counter.inc();
    if let Some(run) = task.run_time {
        h.run.observe(run);
    }
    let failed = matches!(
        task.outcome,
        Some(OutcomeKind::Failed | OutcomeKind::TimedOut | OutcomeKind::Panicked)
    );
    if failed {
        h.failed.inc();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use conveyor_core::TaskId;
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::events::TaskEvent;

    fn event(kind: TaskEventKind, queue: &str, handler: &str) -> TaskEvent {
        let mut e = TaskEvent::enqueued(TaskId(1), Arc::from(handler), Arc::from(queue));
        e.kind = kind;
        e.run_time = (kind == TaskEventKind::Succeeded).then_some(Duration::from_millis(3));
        e.at = SystemTime::now();
        e
    }

    /// Threads that see new pairs at the same moment each add theirs to
    /// the table without replacing the others' additions: every count of
    /// every pair lands, and each pair has one set of series.
    #[test]
    fn pairs_first_seen_at_once_on_many_threads_all_count() {
        let mut registry = Registry::with_prefix("conveyor");
        let series = TaskSeries::register(&mut registry);
        let threads = 4;
        let pairs = FIRST * 2;
        let rounds = 25;
        std::thread::scope(|scope| {
            for t in 0..threads {
                let series = &series;
                scope.spawn(move || {
                    for r in 0..rounds {
                        for i in 0..pairs {
                            // Each thread walks the pairs from another start.
                            let i = (i + t * 7 + r) % pairs;
                            let (queue, handler) = (format!("q{}", i % 5), format!("h{i}"));
                            series.count(&event(TaskEventKind::Started, &queue, &handler).fact());
                        }
                    }
                });
            }
        });
        assert_eq!(series.handles.load().first.len(), FIRST);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for i in 0..pairs {
            let line = format!(
                "conveyor_tasks_started_total{{queue=\"q{}\",handler=\"h{i}\"}} {}",
                i % 5,
                threads * rounds
            );
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    /// Beyond the pairs compared name by name, the rest are found by hash:
    /// every pair counts in its own series either way, with fresh strings
    /// each time (not the ones its handles were made from).
    #[test]
    fn every_queue_and_handler_counts_in_its_own_series() {
        let mut registry = Registry::with_prefix("conveyor");
        let series = TaskSeries::register(&mut registry);
        let pairs = FIRST + 8;
        for round in 0..3 {
            for i in 0..pairs {
                let (queue, handler) = (format!("q{}", i % 3), format!("h{i}"));
                series.count(&event(TaskEventKind::Started, &queue, &handler).fact());
                if round < 2 {
                    series.count(&event(TaskEventKind::Succeeded, &queue, &handler).fact());
                }
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for i in 0..pairs {
            let labels = format!("{{queue=\"q{}\",handler=\"h{i}\"}}", i % 3);
            for (name, want) in [
                ("conveyor_tasks_started_total", 3),
                ("conveyor_tasks_succeeded_total", 2),
                ("conveyor_task_run_seconds_count", 2),
                ("conveyor_tasks_failed_total", 0),
            ] {
                let line = format!("{name}{labels} {want}");
                assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
            }
        }
    }
}
