//! Maintenance: the backend's upkeep duties, run by the workers on their
//! own timing — expired leases back to work ([`recover`]), finished tasks
//! past their retention deleted ([`prune`]).
//!
//! Recovering is idempotent and cheap, and a lease must come back quickly
//! whichever worker is alive, so every worker runs it. Pruning scans and
//! deletes in bulk, so only the **leader** runs it: the worker that holds the
//! backend's `prune` role ([`Maintenance::lead`]), for a term it renews each
//! time the duty is due; a killed leader is replaced once its term runs out.
//! The same seam serves any duty one worker must do alone (cron). A backend
//! without the [`Maintenance`] part needs no upkeep (a broker redelivers and
//! expires by itself): the loop does not run at all, rather than failing
//! every tick. Due scheduled and retrying tasks need no duty: every
//! reservation promotes them first.

mod prune;
mod recover;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Backend, Maintenance, Retention};
use futures_util::future::BoxFuture;
use tokio::time::Instant;

/// How often the duties run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Upkeep {
    pub(crate) recover_every: Duration,
    pub(crate) prune_every: Duration,
    pub(crate) retention: Retention,
}

/// One upkeep duty.
trait Duty: Send + Sync {
    /// Its name, for logs.
    fn name(&self) -> &'static str;
    /// How often it runs.
    fn every(&self) -> Duration;
    /// The role whose leader alone runs it; `None`: every worker runs it.
    fn role(&self) -> Option<&'static str> {
        None
    }
    /// Runs it once; how many tasks it touched.
    fn run<'a>(
        &'a self,
        store: &'a dyn Maintenance,
    ) -> BoxFuture<'a, Result<u64, conveyor_core::Error>>;
}

/// Runs the duties until `done` fires; counts failed calls in `errors`.
pub(crate) async fn run(
    backend: Arc<dyn Backend>,
    upkeep: Upkeep,
    errors: Arc<AtomicU64>,
    done: tokio_util::sync::CancellationToken,
) {
    let Ok(store) = backend.maintenance() else {
        tracing::debug!(
            backend = backend.kind(),
            "no maintenance part: no upkeep loop"
        );
        return;
    };
    run_duties(store, upkeep, &holder(), &errors, done).await
}

/// This worker's name as a leader: host, process and a random part (two
/// workers in one process are two holders).
pub(crate) fn holder() -> String {
    format!(
        "{}:{}:{:08x}",
        host(),
        std::process::id(),
        fastrand::u32(..)
    )
}

/// This machine's host name.
pub(crate) fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

/// How long a leader's term lasts: three rounds of its duty (at least 10 s),
/// so a leader that is merely slow keeps it and a dead one is replaced soon.
fn term(every: Duration) -> Duration {
    (every * 3).max(Duration::from_secs(10))
}

async fn run_duties(
    store: &dyn Maintenance,
    upkeep: Upkeep,
    holder: &str,
    errors: &AtomicU64,
    done: tokio_util::sync::CancellationToken,
) {
    let duties: Vec<Box<dyn Duty>> = vec![
        Box::new(recover::Recover {
            every: upkeep.recover_every,
        }),
        Box::new(prune::Prune {
            every: upkeep.prune_every,
            retention: upkeep.retention,
        }),
    ];
    let tick_every = duties
        .iter()
        .map(|d| d.every())
        .min()
        .unwrap_or(Duration::from_secs(1));
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Vec<Option<Instant>> = vec![None; duties.len()];
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = done.cancelled() => return,
        }
        for (duty, last) in duties.iter().zip(last.iter_mut()) {
            // Half a tick of slack: a duty due every tick runs every tick.
            let due_after = duty.every().saturating_sub(tick_every / 2);
            if last.is_some_and(|t| t.elapsed() < due_after) {
                continue;
            }
            *last = Some(Instant::now());
            if let Some(role) = duty.role() {
                match store.lead(role, holder, term(duty.every())).await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(role, error = %e.chain(), "cannot take the lead");
                        continue;
                    }
                }
            }
            match duty.run(store).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(duty = duty.name(), tasks = n, "maintenance"),
                Err(e) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(duty = duty.name(), error = %e.chain(), "maintenance failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    use conveyor_core::{async_trait, Error};

    use super::*;

    /// A store that counts the duties it is asked to run, and leads only
    /// for `leader`.
    #[derive(Default)]
    struct Counting {
        recovered: AtomicU64,
        pruned: AtomicU64,
    }

    #[async_trait]
    impl Maintenance for Counting {
        async fn recover_expired(&self) -> Result<u64, Error> {
            self.recovered.fetch_add(1, Ordering::Relaxed);
            Ok(0)
        }
        async fn prune(&self, _: Retention) -> Result<u64, Error> {
            self.pruned.fetch_add(1, Ordering::Relaxed);
            Ok(0)
        }
        async fn lead(&self, _: &str, holder: &str, _: Duration) -> Result<bool, Error> {
            Ok(holder == "leader")
        }
    }

    /// Every worker recovers leases; only the leader prunes.
    #[tokio::test(start_paused = true)]
    async fn only_the_leader_prunes() {
        let upkeep = Upkeep {
            recover_every: Duration::from_secs(1),
            prune_every: Duration::from_secs(2),
            retention: Retention::default(),
        };
        for (holder, prunes) in [("leader", true), ("follower", false)] {
            let store = Arc::new(Counting::default());
            let done = tokio_util::sync::CancellationToken::new();
            let errors = AtomicU64::new(0);
            let stop = done.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10_500)).await;
                stop.cancel();
            });
            run_duties(&*store, upkeep, holder, &errors, done).await;
            assert_eq!(store.recovered.load(Ordering::Relaxed), 11, "{holder}");
            let pruned = store.pruned.load(Ordering::Relaxed);
            assert_eq!(pruned > 0, prunes, "{holder} pruned {pruned} times");
        }
    }
}
