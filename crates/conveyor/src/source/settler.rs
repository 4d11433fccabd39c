//! The settler: gives the source the runner's settlements in batches.
//!
//! The sink queues each settlement; the settler takes everything waiting (up
//! to [`BATCH`]) and makes one `settle` call, so a durable store pays one
//! commit for many tasks. What the source answers decides each item:
//!
//! - taken: counted by its action, and only then, so a worker's counts
//!   agree with the store;
//! - refused as stale (the claim ran out and the task is someone else's
//!   now, or already finished): counted, and not tried again;
//! - failed in a way that may pass (an outage, a timeout, contention): tried
//!   again, alone or with the others that failed so, with a growing pause,
//!   until the source takes it or the stop gives up. A timeout is not a
//!   refusal: dropping it would leave the task running until its lease ran
//!   out, then run it again;
//! - refused for good (a result over the store's size limit, data the store
//!   rejects): a completion is turned into a failed attempt that carries the
//!   refusal as its error, once, so the store records why and the task
//!   follows its attempts (retried, then dead-lettered) instead of rerunning
//!   after every lease with "lease expired" as the only trace. A failure
//!   whose error text is refused is tried once more with the text cut short.
//!
//! The user's callback hears of a settled task only after the source has
//! answered, with what the source did ([`Stored`]): a fenced-off worker does
//! not report a success the store refused.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{Error, FinishAction, NextStep};
use tokio_util::sync::CancellationToken;

use super::callbacks::{Settled, Stored};
use super::contract::{Retries, Settlement, Source};
use super::runner_state::RunnerState;
use super::stats::Counters;

/// Most settlements in one `settle` call.
const BATCH: usize = 1024;

/// How long a completion the source refused for good waits before its
/// next attempt (the failed attempt's delay: the handler's own backoff is
/// not known here, and the refusal is rarely one that passes sooner).
pub(crate) const REFUSED_RETRY_DELAY: Duration = Duration::from_secs(5);

/// The longest error text tried again after a refusal.
const ERROR_CUT: usize = 4096;

/// The first pause before a failed call is tried again, and the longest.
/// Short: settlements wait behind the one being retried, and their claims
/// are no longer renewed, so after an outage the store must hear from the
/// settler again well within a lease ([`pause_cap`] keeps it under a
/// quarter of the source's lease).
const PAUSE: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

/// The longest pause between two tries of a failed settle call for `source`.
fn pause_cap<S: Source>(source: &S) -> Duration {
    source
        .lease()
        .map_or(PAUSE.1, |lease| (lease / 4).clamp(PAUSE.0, PAUSE.1))
}

/// A settlement on its way to the source, with the settled task that the
/// user's callback hears of once the source has answered.
pub(crate) struct Queued<R> {
    pub(crate) settlement: Settlement<R>,
    pub(crate) settled: Option<Settled>,
    /// Already rewritten once after a refusal (never twice: no loop).
    rewritten: bool,
}

impl<R> Queued<R> {
    pub(crate) fn new(settlement: Settlement<R>, settled: Option<Settled>) -> Self {
        Self {
            settlement,
            settled,
            rewritten: false,
        }
    }
}

/// Runs until `closing` fires and nothing is left queued (or `give_up` fires
/// while the source is failing).
pub(crate) async fn run<S: Source>(
    shared: Arc<RunnerState<S>>,
    rx: flume::Receiver<Queued<S::Receipt>>,
    closing: CancellationToken,
    give_up: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            biased;
            r = rx.recv_async() => match r {
                Ok(s) => s,
                Err(_) => return,
            },
            _ = closing.cancelled() => match rx.try_recv() {
                Ok(s) => s,
                Err(_) => return,
            },
        };
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        let n = batch.len();
        let absorbed = store(&shared, std::mem::take(&mut batch), &give_up, Some(&rx)).await;
        shared.slots.stored(n + absorbed);
    }
}

/// Settles a batch until every item is taken, refused, or given up on;
/// returns how many settlements it took from `queue` on the way.
///
/// A whole call that fails in a way that may pass is tried again with a
/// growing pause; one that will not pass is narrowed down by settling the
/// batch's items one by one, so one bad settlement does not hold back the
/// others. While it retries, the claims of what waits to be stored are
/// renewed with the running tasks' ([`RunnerState::unstored`]), and what
/// queued behind the batch joins it, so no outcome loses its claim to a
/// store that answers late.
async fn store<S: Source>(
    shared: &RunnerState<S>,
    batch: Vec<Queued<S::Receipt>>,
    give_up: &CancellationToken,
    queue: Option<&flume::Receiver<Queued<S::Receipt>>>,
) -> usize {
    let stored = store_until_done(shared, batch, give_up, queue).await;
    shared.unstored.lock().clear();
    stored
}

/// [`store`]'s loop.
async fn store_until_done<S: Source>(
    shared: &RunnerState<S>,
    batch: Vec<Queued<S::Receipt>>,
    give_up: &CancellationToken,
    queue: Option<&flume::Receiver<Queued<S::Receipt>>>,
) -> usize {
    let mut absorbed = 0;
    let mut pending = batch;
    let mut pause = PAUSE.0;
    let cap = pause_cap(&*shared.source);
    while !pending.is_empty() {
        let call = pending.iter().map(|q| q.settlement.clone()).collect();
        // A call the store leaves unanswered is abandoned when the stop
        // gives up: the claims run out and the tasks run again.
        let answer = tokio::select! {
            answer = shared.source.settle(call) => answer,
            _ = give_up.cancelled() => {
                tracing::error!(settlements = pending.len(), "gave up settling: the store did not answer before the stop's end; the claims will run out and the tasks run again");
                for q in pending {
                    let e = "the worker stopped before the store answered".to_string();
                    tell(shared, q, Stored::Lost(e));
                }
                return absorbed;
            }
        };
        let wait = match answer {
            Ok(results) => {
                let (again, wait) = sort_answers(shared, pending, results);
                pending = again;
                wait
            }
            Err(e) if !e.is_transient() => {
                Counters::add(&shared.counters.backend_errors, 1);
                if pending.len() == 1 {
                    let q = pending.remove(0);
                    match rewrite(shared, q, &e) {
                        Some(q) => {
                            pending.push(q);
                            continue;
                        }
                        None => return absorbed,
                    }
                }
                tracing::warn!(error = %e.chain(), settlements = pending.len(), "settling a batch failed (not transient); settling its items one by one");
                for one in pending {
                    Box::pin(store_until_done(shared, vec![one], give_up, None)).await;
                }
                return absorbed;
            }
            Err(e) => {
                Counters::add(&shared.counters.backend_errors, 1);
                tracing::warn!(error = %e.chain(), settlements = pending.len(), "settling failed; retrying");
                true
            }
        };
        if pending.is_empty() {
            return absorbed;
        }
        if wait {
            // What queued behind joins the retry, and every claim waiting
            // here is renewed with the running tasks' until it is stored.
            if let Some(queue) = queue {
                while pending.len() < BATCH {
                    match queue.try_recv() {
                        Ok(q) => {
                            pending.push(q);
                            absorbed += 1;
                        }
                        Err(_) => break,
                    }
                }
            }
            *shared.unstored.lock() = pending
                .iter()
                .map(|q| q.settlement.receipt.clone())
                .collect();
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = give_up.cancelled() => {
                    tracing::error!(settlements = pending.len(), "gave up settling: the claims will run out and the tasks run again");
                    for q in pending {
                        let e = "the worker stopped before the store took this outcome".to_string();
                        tell(shared, q, Stored::Lost(e));
                    }
                    return absorbed;
                }
            }
            pause = (pause * 2).min(cap);
        }
    }
    absorbed
}

/// Sorts the source's per-item answers: the items to try again, and
/// whether to pause first (some failed in a way that may pass).
fn sort_answers<S: Source>(
    shared: &RunnerState<S>,
    pending: Vec<Queued<S::Receipt>>,
    results: Vec<Result<(), Error>>,
) -> (Vec<Queued<S::Receipt>>, bool) {
    let mut again = Vec::new();
    let mut wait = false;
    let mut stale = 0;
    let mut answers = results.into_iter();
    for q in pending {
        match answers.next() {
            // Counted once the source has it, so a worker's counts agree
            // with the store.
            Some(Ok(())) => {
                shared.counters.settled(&q.settlement.action);
                tell(shared, q, Stored::Taken);
            }
            Some(Err(Error::StaleLease(_))) => {
                stale += 1;
                tell(shared, q, Stored::Stale);
            }
            Some(Err(e)) if e.is_transient() => {
                Counters::add(&shared.counters.backend_errors, 1);
                tracing::warn!(task = %q.settlement.id, error = %e.chain(), "settling a task failed; retrying");
                wait = true;
                again.push(q);
            }
            Some(Err(e)) => {
                Counters::add(&shared.counters.backend_errors, 1);
                if let Some(q) = rewrite(shared, q, &e) {
                    again.push(q);
                }
            }
            // A source that answers fewer items than it was given: the
            // rest were not applied; try them again.
            None => {
                wait = true;
                again.push(q);
            }
        }
    }
    Counters::add(&shared.counters.stale, stale);
    (again, wait)
}

/// What to try after the source refused `q` for good with `e`: a completion
/// becomes a failed attempt carrying the refusal; a failure whose error text
/// is long is cut short; anything else (or anything already rewritten) is
/// dropped, and its claim runs out.
fn rewrite<S: Source>(
    shared: &RunnerState<S>,
    mut q: Queued<S::Receipt>,
    e: &Error,
) -> Option<Queued<S::Receipt>> {
    let id = q.settlement.id;
    let refusal = format!("the store refused this attempt's outcome: {}", e.chain());
    let action = match &q.settlement.action {
        _ if q.rewritten => None,
        FinishAction::Complete { .. } => Some(match shared.retries {
            Retries::BySource => FinishAction::Retry {
                delay: REFUSED_RETRY_DELAY,
                error: refusal.clone(),
            },
            _ => FinishAction::DeadLetter {
                error: refusal.clone(),
            },
        }),
        FinishAction::Retry { delay, error } if error.len() > ERROR_CUT => {
            Some(FinishAction::Retry {
                delay: *delay,
                error: cut(error),
            })
        }
        FinishAction::DeadLetter { error } if error.len() > ERROR_CUT => {
            Some(FinishAction::DeadLetter { error: cut(error) })
        }
        FinishAction::Discard { reason } if reason.len() > ERROR_CUT => {
            Some(FinishAction::Discard {
                reason: cut(reason),
            })
        }
        _ => None,
    };
    let Some(action) = action else {
        tracing::error!(task = %id, error = %e.chain(), "the store refused this task's settlement (not transient); dropped: the claim will run out and the task run again");
        tell(shared, q, Stored::Lost(e.chain().to_string()));
        return None;
    };
    tracing::warn!(task = %id, error = %e.chain(), "the store refused this task's settlement; settling it as a failed attempt with that error");
    if let Some(s) = &mut q.settled {
        match &action {
            FinishAction::Retry { delay, error } => {
                s.step = NextStep::Retry { delay: *delay };
                s.error = Some(error.clone());
            }
            FinishAction::DeadLetter { error } => {
                s.step = NextStep::DeadLetter;
                s.error = Some(error.clone());
            }
            _ => {}
        }
    }
    q.settlement.action = action;
    q.settlement.follow_ups.clear();
    q.rewritten = true;
    Some(q)
}

/// `text` cut to [`ERROR_CUT`] bytes (at a character boundary), saying so.
fn cut(text: &str) -> String {
    let mut end = ERROR_CUT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… (cut: {} bytes in all)", &text[..end], text.len())
}

/// Hands `q`'s settled task to the user's callback, with what the source did.
fn tell<S: Source>(shared: &RunnerState<S>, q: Queued<S::Receipt>, stored: Stored) {
    if matches!(stored, Stored::Lost(_)) {
        Counters::add(&shared.counters.unstored, 1);
    }
    if let (Some(callbacks), Some(mut settled)) = (&shared.callbacks, q.settled) {
        settled.stored = stored;
        callbacks.offer(settled, &shared.counters);
    }
}
