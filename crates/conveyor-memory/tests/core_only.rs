//! A backend with only the required core and a result store — as a message
//! broker with a result store beside it would be — runs the conformance cases
//! its parts allow; the others are listed as ignored with the reason, and
//! every missing part answers `Unsupported`.

use std::sync::Arc;

use conveyor_core::{Backend, Error, ListParams, ManualClock, NewTask, Retention, TaskState};
use conveyor_memory::MemoryBackend;
use conveyor_testkit::Scoped;

async fn make(clock: Arc<ManualClock>) -> Arc<dyn Backend> {
    Arc::new(Scoped::core_only(MemoryBackend::with_clock(clock)))
}

conveyor_testkit::backend_conformance!(make;
    result_store: yes, inspection: no, administration: no, maintenance: no, global_limits: no,
    registry: no, queue_control: no);

#[tokio::test]
async fn missing_parts_are_unsupported_never_a_silent_no_op() {
    let b = make(Arc::new(ManualClock::default())).await;
    let id = b
        .enqueue(NewTask::new("h", b"1".to_vec()))
        .await
        .unwrap()
        .id;
    assert!(
        b.get(id).await.unwrap().is_some(),
        "the result store is there"
    );
    let unsupported = |r: Result<(), Error>, what: &str| match r {
        Err(Error::Unsupported(m)) => assert!(m.contains("memory"), "{what}: {m}"),
        other => panic!("{what}: expected Unsupported, got {other:?}"),
    };
    unsupported(b.stats().await.map(|_| ()), "stats");
    unsupported(
        b.list(&ListParams::new(TaskState::Dead)).await.map(|_| ()),
        "list",
    );
    unsupported(b.cancel(id).await.map(|_| ()), "cancel");
    unsupported(b.requeue_dead(&[id]).await.map(|_| ()), "requeue");
    unsupported(b.purge_dead(None).await.map(|_| ()), "purge");
    unsupported(b.recover_expired().await.map(|_| ()), "recover");
    unsupported(b.prune(Retention::default()).await.map(|_| ()), "prune");
    unsupported(b.limits().await.map(|_| ()), "limits");
    unsupported(b.pause_queue("q").await.map(|_| ()), "pause");
    unsupported(b.resume_queue("q").await.map(|_| ()), "resume");
    unsupported(b.paused_queues().await.map(|_| ()), "paused");
    assert_eq!(b.parts(), vec![conveyor_core::Part::ResultStore]);
}
