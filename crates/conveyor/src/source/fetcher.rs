//! The fetcher: takes only as many tasks from the source as the runner has
//! free slots, and hands them to the engine.
//!
//! Backpressure reaches the source: nothing is fetched that cannot start.
//! When the source has nothing, the fetcher waits for its wake-up or the poll
//! interval, whichever comes first. While the runner runs, a fetch is never
//! abandoned half-way: what the source handed out comes back, to be started
//! or handed back unstarted when the runner is stopping. On a stop, fetches
//! still out at the end of the grace period (a store that does not answer:
//! an outage, a black-holed network) are abandoned, so a stop never waits on
//! a store: whatever they claimed comes back to the queue when its lease
//! runs out, never having run.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Error, FinishAction};
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::time::Instant;

use super::contract::{Delivery, Source};
use super::held::Inserted;
use super::routes::Routes;
use super::runner_state::RunnerState;
use super::stats::Counters;

/// The longest pause between two fetches that failed for good (bad
/// configuration, a refusal): slow, so a fix on the store side is picked up.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// The longest pause between two fetches that failed in a way that passes
/// (an outage): short, so work resumes soon after the store is back.
const MAX_OUTAGE_PAUSE: Duration = Duration::from_secs(1);

/// How the fetcher asks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FetchConfig {
    /// Most tasks per fetch.
    pub(crate) batch: usize,
    /// Longest wait between two fetches while the source is empty.
    pub(crate) poll: Duration,
    /// How long a stop waits for fetches out before abandoning them.
    pub(crate) grace: Duration,
}

/// What a fetch in flight answers: how many tasks it asked for, and what
/// the source gave.
type Answer<S> = (
    usize,
    Result<Vec<Delivery<<S as Source>::Payload, <S as Source>::Receipt>>, Error>,
);

/// Runs until the runner stops.
///
/// Up to [`Source::fetches_in_flight`] fetches are out at once, each asking
/// for the slots free when it was sent (they are set aside until it
/// answers), and their answers are started in the order the fetches were
/// sent. A source that serves its fetches one after another at a cost per
/// task ([`Source::fetches_split`]) is asked for an even share of the slots
/// at most, so it serves one fetch while the tasks of the one before start;
/// beside a fetch out it is asked again only once a full share is free,
/// not for every slot as it frees. After an empty answer nothing more is
/// asked until every fetch out has answered; then the fetcher waits for
/// work.
pub(crate) async fn run<S: Source>(
    shared: Arc<RunnerState<S>>,
    routes: Arc<Routes<S::Payload>>,
    cfg: FetchConfig,
) {
    let depth = shared.source.fetches_in_flight().max(1);
    let split = depth > 1 && shared.source.fetches_split();
    let slots = shared.slots.total();
    // The most one fetch asks for, and the fewest free slots worth a fetch
    // beside one out.
    let (share, beside) = if split {
        (
            slots.div_ceil(depth).min(cfg.batch),
            (slots / depth).min(cfg.batch),
        )
    } else {
        (cfg.batch, 1)
    };
    let (share, beside) = (share.max(1), beside.max(1));
    let mut out: FuturesOrdered<BoxFuture<'static, Answer<S>>> = FuturesOrdered::new();
    let mut error_pause = Duration::from_millis(50);
    // Slots asked for by the fetches out.
    let mut pending = 0usize;
    // An answer came back empty (or failed): ask nothing more for now.
    let mut dry = false;
    loop {
        if shared.stop.is_cancelled() {
            // What was asked for still comes back, to be handed back
            // unstarted, until the grace period ends.
            let deadline = Instant::now() + cfg.grace;
            loop {
                match tokio::time::timeout_at(deadline, out.next()).await {
                    Ok(Some((asked, answer))) => {
                        pending -= asked;
                        let tasks = answer.unwrap_or_default();
                        shared.slots.answered(asked, tasks.len());
                        hand_back(&shared, tasks);
                    }
                    Ok(None) => break,
                    Err(_) => {
                        tracing::warn!(fetches = out.len(), "stopping: fetches still unanswered at the end of the grace period are abandoned (what they claimed returns to the queue when its lease runs out)");
                        shared.slots.answered(pending, 0);
                        break;
                    }
                }
            }
            return;
        }
        let free = shared.slots.free();
        let least = if out.is_empty() { 1 } else { beside };
        if !dry && free >= least && out.len() < depth {
            let asked = free.min(share);
            shared.slots.ask(asked);
            pending += asked;
            let sh = shared.clone();
            out.push_back(Box::pin(
                async move { (asked, sh.source.fetch(asked).await) },
            ));
            continue;
        }
        if dry && out.is_empty() {
            dry = false;
            idle(&shared, cfg.poll).await;
            continue;
        }
        let (asked, answer) = tokio::select! {
            answered = out.next(), if !out.is_empty() => match answered {
                Some(answered) => {
                    pending -= answered.0;
                    answered
                }
                None => continue,
            },
            // Slots freed while a fetch is out may be asked for beside it.
            _ = shared.slots.wait_free(least), if !dry && out.len() < depth => continue,
            _ = shared.stop.cancelled() => continue,
        };
        match answer {
            Ok(tasks) if tasks.is_empty() => {
                shared.slots.answered(asked, 0);
                dry = true;
            }
            Ok(tasks) => {
                error_pause = Duration::from_millis(50);
                Counters::add(&shared.counters.reserved, tasks.len() as u64);
                shared.slots.answered(asked, tasks.len());
                if shared.stop.is_cancelled() {
                    hand_back(&shared, tasks);
                } else {
                    start_all(&shared, &routes, tasks);
                }
            }
            Err(e) => {
                shared.slots.answered(asked, 0);
                Counters::add(&shared.counters.backend_errors, 1);
                let cap = if e.is_transient() {
                    tracing::warn!(error = %e.chain(), "fetching tasks failed; retrying");
                    MAX_OUTAGE_PAUSE
                } else {
                    // Not an outage: trying again soon will not help. Keep
                    // trying, slowly, so a fix on the store side is picked up.
                    tracing::error!(error = %e.chain(), "fetching tasks failed (not transient); retrying every few seconds");
                    error_pause = MAX_PAUSE;
                    MAX_PAUSE
                };
                let pause = error_pause.min(cap);
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shared.stop.cancelled() => {}
                }
                error_pause = (pause * 2).min(cap);
            }
        }
    }
}

/// Hands back tasks fetched just as the runner began to stop (they hold
/// their slots), without counting an attempt.
fn hand_back<S: Source>(shared: &RunnerState<S>, tasks: Vec<Delivery<S::Payload, S::Receipt>>) {
    for task in tasks {
        shared.settle_unheld(task, FinishAction::Release);
    }
}

/// Waits for a sign of new work, at most `poll`.
async fn idle<S: Source>(shared: &RunnerState<S>, poll: Duration) {
    let began = Instant::now();
    tokio::select! {
        woke = shared.source.wait_for_work(poll) => {
            // A source without wake-ups answers at once: poll instead.
            if !woke {
                let left = poll.saturating_sub(began.elapsed());
                tokio::select! {
                    _ = tokio::time::sleep(left) => {}
                    _ = shared.stop.cancelled() => {}
                }
            }
        }
        _ = shared.stop.cancelled() => {}
    }
}

/// Holds and starts each fetched task, or settles the ones that cannot run.
fn start_all<S: Source>(
    shared: &RunnerState<S>,
    routes: &Routes<S::Payload>,
    tasks: Vec<Delivery<S::Payload, S::Receipt>>,
) {
    let producer = shared.producer();
    for task in tasks {
        let Some(route) = routes.get(&task.handler) else {
            let error = format!(
                "no handler named {:?} is registered on this worker (it has: {})",
                task.handler,
                routes.names().join(", ")
            );
            tracing::warn!(task = %task.id, %error, "dead-lettering");
            shared.settle_unheld(task, FinishAction::DeadLetter { error });
            continue;
        };
        match shared
            .held
            .insert(task, route.clone(), |id| shared.cancel_task(id))
        {
            Inserted::Start(task, route) => shared.start(&producer, task, &route),
            Inserted::Parked { replaced } => {
                tracing::warn!("a task was delivered again while its earlier attempt still ran here: that attempt is cancelled, the new one waits for it");
                if replaced {
                    // The delivery it replaced holds a slot and settles nothing.
                    shared.slots.settled(1, false);
                }
            }
        }
    }
}
