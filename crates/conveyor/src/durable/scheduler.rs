//! The scheduler: the worker that leads the `schedules` role fires the
//! backend's due schedules ([`Schedules::fire_due`]), sleeping until the
//! earliest next fire (at most a second, so a schedule added meanwhile is
//! seen). Firing is safe from any number of workers at once — a store
//! enqueues each fire time once, whoever fires it — so the lead only keeps
//! the others from doing the same work; a killed leader's term
//! runs out and another worker goes on from the stored next fires.
//!
//! Declared schedules ([`WorkerBuilder::schedule`](super::WorkerBuilder::schedule))
//! are stored when the worker starts, keeping where each stood unless its
//! timing changed. A leader that stops cleanly steps down (a term of zero),
//! so another worker leads at its next ask. A backend without the
//! schedules part, or without
//! leaders (the maintenance part), runs no scheduler, and a declared
//! schedule there is refused at start.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::schedule::Fired;
use conveyor_core::{Backend, Error, Schedules, Timestamp};
use tokio::time::Instant;

/// The schedules leader's term: the first fire after a leader is killed
/// is late by at most this and [`SCHEDULES_ASK_EVERY`]. Short, because a
/// second leader for a moment costs nothing (each fire time is enqueued
/// once whoever fires it): only a lost lead's pause costs.
pub const SCHEDULES_TERM: Duration = Duration::from_secs(5);

/// How often the leader renews its term, and every other worker asks for
/// it.
pub const SCHEDULES_ASK_EVERY: Duration = Duration::from_secs(1);

/// How much of its term a leader leaves unused: the store's clock may run
/// a little ahead of this process's.
const TERM_MARGIN: Duration = Duration::from_secs(1);

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
        if renewed.is_none_or(|t| t.elapsed() >= SCHEDULES_ASK_EVERY) {
            // The term is counted from before the ask: the store may have
            // granted it the moment the ask arrived, however late the
            // answer came back.
            let asked = Instant::now();
            leading = match leads.lead(ROLE, &holder, SCHEDULES_TERM).await {
                Ok(l) => l,
                Err(e) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e.chain(), "cannot take the lead of the schedules");
                    false
                }
            };
            renewed = Some(asked);
        }
        // A leader acts only while its term is surely its own: by its own
        // monotonic clock, with a margin for the store's (a term whose
        // answer came back late is not acted on).
        if renewed.is_some_and(|t| t.elapsed() + TERM_MARGIN >= SCHEDULES_TERM) {
            leading = false;
        }
        let wait = if leading {
            fire(schedules, &errors).await
        } else {
            SCHEDULES_ASK_EVERY
        };
        let until_renew = SCHEDULES_ASK_EVERY
            .saturating_sub(renewed.map_or(SCHEDULES_ASK_EVERY, |t| t.elapsed()));
        tokio::select! {
            _ = tokio::time::sleep(wait.min(until_renew.max(Duration::from_millis(1)))) => {}
            _ = done.cancelled() => {
                if leading {
                    // A term of zero hands the role over at once: a worker
                    // stopping cleanly (a rolling deploy) makes no fire late.
                    if let Err(e) = leads.lead(ROLE, &holder, Duration::ZERO).await {
                        tracing::debug!(error = %e.chain(), "could not step down as the schedules leader");
                    }
                }
                return;
            }
        }
    }
}

/// One pass: fires what is due; how long to sleep before the next.
async fn fire(schedules: &dyn Schedules, errors: &AtomicU64) -> Duration {
    let (fired, wait) = schedules_pass(schedules, errors).await;
    for f in fired.unwrap_or_default() {
        tracing::info!(schedule = %f.name, at = f.at.0, task = f.task.0, "schedule fired");
    }
    wait
}

/// One pass of the schedules leader, as the worker makes it: fires what is
/// due now ([`Schedules::fire_due`]); what it fired, and how long to sleep
/// before the next pass (until the earliest next fire, at most a second,
/// so a schedule added meanwhile is seen). A failed call is logged and
/// counted in `errors`.
pub async fn schedules_pass(
    schedules: &dyn Schedules,
    errors: &AtomicU64,
) -> (Result<Vec<Fired>, Error>, Duration) {
    let fired = schedules.fire_due(Timestamp::now()).await;
    if let Err(e) = &fired {
        errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %e.chain(), "firing the due schedules failed");
    }
    let wait = match schedules.next_fire().await {
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
    };
    (fired, wait)
}
