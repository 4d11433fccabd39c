//! The fencing check of the failover tests: a reservation the failover
//! lost (the primary took it and died before a replica had it) must never
//! settle the task's next attempt.

use std::time::{Duration, Instant};

use conveyor_core::{Backend, Error, Finish, ReserveParams, Reserved, TaskId, TaskState};

/// Reserves one task of the default queue, retrying while the store is
/// away (a transient error), for at most 30 s.
pub async fn reserve_one(b: &dyn Backend) -> Reserved {
    let queues = vec![conveyor_core::DEFAULT_QUEUE.to_string()];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match b
            .reserve(ReserveParams::new(&queues, 1, Duration::from_secs(60)))
            .await
        {
            Ok(mut got) if !got.is_empty() => return got.remove(0),
            Ok(_) => {}
            Err(Error::Backend(e)) => assert!(e.is_transient(), "{e}"),
            Err(e) => panic!("reserve: {e}"),
        }
        assert!(Instant::now() < deadline, "nothing to reserve after 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// After a failover that lost `lost` (a reservation of `task`): `task` is
/// reserved again with another token, `lost`'s finish is refused as stale,
/// the new one's is accepted and the task completes.
pub async fn lost_claim_is_fenced(b: &dyn Backend, task: TaskId, lost: &Reserved) {
    let again = reserve_one(b).await;
    assert_eq!(again.lease.id, task);
    assert_ne!(
        again.lease.token, lost.lease.token,
        "the token of a reservation lost in the failover was issued again"
    );
    let stale = b
        .finish(vec![Finish::complete(lost.lease.clone())])
        .await
        .expect("finish");
    assert!(
        matches!(stale[0], Err(Error::StaleLease(_))),
        "the lost reservation's worker settled the new attempt: {stale:?}"
    );
    let fresh = b
        .finish(vec![Finish::complete(again.lease.clone())])
        .await
        .expect("finish");
    assert!(fresh[0].is_ok(), "{fresh:?}");
    let record = b.get(task).await.expect("get").expect("the task");
    assert_eq!(record.state, TaskState::Completed);
}
