//! Leadership: one holder at a time leads a maintenance role, for a term it
//! renews; a holder that stops renewing is replaced once its term runs out.

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::ManualClock;

use super::*;

/// A holder leads until its term runs out unless it renews; others are
/// refused meanwhile; roles are independent; of many callers racing for a
/// free role exactly one leads.
pub async fn one_leader_at_a_time(b: Subject, clock: Arc<ManualClock>) {
    let term = Duration::from_secs(10);
    let lead = |holder: &'static str| {
        let b = b.clone();
        async move { b.lead("prune", holder, term).await.expect("lead") }
    };
    assert!(lead("a").await, "a free role is taken");
    assert!(!lead("b").await, "another's term lasts");
    clock.advance(Duration::from_secs(6));
    assert!(lead("a").await, "the leader renews its term");
    clock.advance(Duration::from_secs(6));
    assert!(
        !lead("b").await,
        "the renewed term lasts 10 s from the renewal"
    );
    assert!(
        b.lead("cron", "b", term).await.expect("lead"),
        "roles are independent"
    );
    clock.advance(Duration::from_secs(5));
    assert!(lead("b").await, "a term that ran out is taken over");
    assert!(!lead("a").await, "the old leader is refused once replaced");

    let racers: Vec<_> = (0..8)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move {
                b.lead("race", &format!("racer-{i}"), term)
                    .await
                    .expect("lead")
            })
        })
        .collect();
    let mut winners = 0;
    for r in racers {
        winners += usize::from(r.await.expect("a racer"));
    }
    assert_eq!(winners, 1, "exactly one of the racers leads");
}

/// A leader steps down by asking for a term of zero: another holder leads
/// at once, without waiting for the old term to run out (a worker that
/// stops cleanly hands its roles over).
pub async fn a_leader_steps_down_with_a_zero_term(b: Subject, _clock: Arc<ManualClock>) {
    let term = Duration::from_secs(10);
    assert!(b.lead("prune", "a", term).await.expect("lead"));
    assert!(
        !b.lead("prune", "b", term).await.expect("lead"),
        "a's term lasts"
    );
    b.lead("prune", "a", Duration::ZERO)
        .await
        .expect("step down");
    assert!(
        b.lead("prune", "b", term).await.expect("lead"),
        "the role is free once its leader stepped down"
    );
    assert!(
        !b.lead("prune", "a", term).await.expect("lead"),
        "b leads now"
    );
}
