//! The scheduler: the worker that leads the `schedules` role fires the
//! backend's due schedules ([`Schedules::fire_due`]), sleeping until the
//! earliest next fire (at most a second, so a schedule added meanwhile is
//! seen). Firing is safe from any number of workers at once — a store
//! fires each fire time in one atomic step with its enqueue — so the lead
//! only keeps the others from doing the same work; a killed leader's term
//! runs out and another worker goes on from the stored next fires.
//!
//! Declared schedules ([`WorkerBuilder::schedule`](super::WorkerBuilder::schedule))
//! are stored when the worker starts, keeping where each stood unless its
//! timing changed. A backend without the schedules part, or without
//! leaders (the maintenance part), runs no scheduler, and a declared
//! schedule there is refused at start.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Backend, Schedules, Timestamp};
use tokio::time::Instant;

/// The leader's term: a killed leader's fires are late by at most this.
pub(crate) const TERM: Duration = Duration::from_secs(10);

/// How often a leader renews its term, and a follower asks for it.
const RENEW: Duration = Duration::from_secs(3);

/// The longest a leader sleeps between passes.
const MOST_SLEEP: Duration = Duration::from_secs(1);

/// The role's name.
const ROLE: &str = "schedules";

/// Leads and fires until `done` fires; counts failed calls in `errors`.
pub(crate) async fn run(
    backend: Arc<dyn Backend>,
    holder: String,
    errors: Arc<AtomicU64>,
    done: tokio_util::sync::CancellationToken,
) {
    let (Ok(schedules), Ok(leads)) = (backend.schedules(), backend.maintenance()) else {
        return;
    };
    let mut leading = false;
    let mut renewed: Option<Instant> = None;
    loop {
        if renewed.is_none_or(|t| t.elapsed() >= RENEW) {
            leading = match leads.lead(ROLE, &holder, TERM).await {
                Ok(l) => l,
                Err(e) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e.chain(), "cannot take the lead of the schedules");
                    false
                }
            };
            renewed = Some(Instant::now());
        }
        let wait = if leading {
            fire(schedules, &errors).await
        } else {
            RENEW
        };
        let until_renew = RENEW.saturating_sub(renewed.map_or(RENEW, |t| t.elapsed()));
        tokio::select! {
            _ = tokio::time::sleep(wait.min(until_renew.max(Duration::from_millis(1)))) => {}
            _ = done.cancelled() => return,
        }
    }
}

/// One pass: fires what is due; how long to sleep before the next.
async fn fire(schedules: &dyn Schedules, errors: &AtomicU64) -> Duration {
    match schedules.fire_due(Timestamp::now()).await {
        Ok(fired) => {
            for f in fired {
                tracing::info!(schedule = %f.name, at = f.at.0, task = f.task.0, "schedule fired");
            }
        }
        Err(e) => {
            errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e.chain(), "firing the due schedules failed");
        }
    }
    match schedules.next_fire().await {
        Ok(Some(next)) => {
            let ms = next.0.saturating_sub(Timestamp::now().0).max(0);
            Duration::from_millis(ms as u64).min(MOST_SLEEP)
        }
        Ok(None) => MOST_SLEEP,
        Err(e) => {
            errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e.chain(), "reading the next fire failed");
            MOST_SLEEP
        }
    }
}
