//! Every attempt runs inside a `task` span. In a test binary of its own: tracing
//! caches per-callsite interest process-wide, so other tests racing to hit the
//! callsite without a subscriber would make this one flaky.

#![allow(clippy::unwrap_used)] // tests unwrap freely: a panic is a failure report

use conveyor::{Handler, Pool, TaskError};

/// A subscriber that counts `task` spans.
struct SpanCounter(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl tracing::Subscriber for SpanCounter {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        if attrs.metadata().name() == "task" {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn every_attempt_gets_a_task_span() {
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let subscriber = SpanCounter(count.clone());
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let pool = Pool::new().unwrap();
            let h = Handler::io(
                "traced",
                |n: u32, _ctx| async move { Ok::<_, TaskError>(n) },
            );
            let job = pool.job().start().unwrap();
            for i in 0..5 {
                job.submit(&h, i).await.unwrap();
            }
            assert_eq!(job.await.succeeded, 5);
        });
    });
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 5);
}
