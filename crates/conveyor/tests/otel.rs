//! OpenTelemetry traces (feature `otel`) over real backends: the enqueue
//! span's context travels with the task, each attempt's span links to it and
//! is the parent of the handler's own spans, a retry gives one span per
//! attempt, a batch enqueue is one span. Spans are read back from the SDK's
//! in-memory exporter, installed once as the global provider; each test
//! finds its own spans by its queue's name.

#![cfg(feature = "otel")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use conveyor::durable::{Backend, EmbeddedBackend};
use conveyor::{
    Client, EnqueueOptions, Error, Handler, MemoryBackend, RetryPolicy, TaskError, TaskType, Worker,
};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{global, Context, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

const ECHO: TaskType<u32, u32> = TaskType::new("otel-echo");

/// The exporter every span of this binary goes to.
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        global::set_tracer_provider(provider);
        exporter
    })
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

/// The finished spans about `queue` (and the handler's spans, named `inner
/// {queue}`).
fn spans_of(queue: &str) -> Vec<SpanData> {
    let inner = format!("inner {queue}");
    exporter()
        .get_finished_spans()
        .expect("finished spans")
        .into_iter()
        .filter(|s| {
            attr(s, "messaging.destination.name") == Some(&Value::from(queue.to_string()))
                || s.name == inner
        })
        .collect()
}

/// A handler that fails its first `failures` attempts and opens a span of
/// its own (under whatever context is current) on every attempt.
fn echo(queue: &str, failures: u32) -> Handler<u32, u32> {
    let tries = Arc::new(AtomicU32::new(0));
    let inner = format!("inner {queue}");
    Handler::io("otel-echo", move |n: u32, _ctx| {
        let tries = tries.clone();
        let inner = inner.clone();
        async move {
            let tracer = global::tracer("handler");
            let span = tracer.start(inner);
            drop(span);
            if tries.fetch_add(1, Ordering::SeqCst) < failures {
                return Err(TaskError::new("not yet"));
            }
            Ok::<_, TaskError>(n)
        }
    })
    .retry(RetryPolicy::attempts(5).backoff(Duration::from_millis(1), Duration::from_millis(2)))
}

/// Runs a worker of `handler` on `queue` until `run` returns.
async fn with_worker<T>(
    backend: Arc<dyn Backend>,
    queue: &str,
    handler: Handler<u32, u32>,
    run: impl std::future::Future<Output = T>,
) -> T {
    let worker = Worker::builder(backend)
        .queues([queue])
        .handler(handler)
        .poll_interval(Duration::from_millis(20))
        .build()
        .expect("a valid worker");
    let stopper = worker.stopper();
    let running = tokio::spawn(worker.run_until(std::future::pending()));
    let out = run.await;
    stopper.stop();
    let report: Result<_, Error> = running.await.expect("the worker task");
    report.expect("the worker's run");
    out
}

/// The attempt spans of `queue`, in attempt order.
fn attempts(spans: &[SpanData]) -> Vec<&SpanData> {
    let mut a: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_kind == SpanKind::Consumer)
        .collect();
    a.sort_by_key(|s| match attr(s, "conveyor.task.attempt") {
        Some(Value::I64(n)) => *n,
        _ => 0,
    });
    a
}

/// Checks one enqueue, retried `failures` times, on `backend`.
async fn one_task_retried(backend: Arc<dyn Backend>, queue: &str, failures: u32) {
    exporter();
    let client = Client::new(backend.clone());
    // The caller's own span: the enqueue span is its child.
    let caller = global::tracer("caller").start(format!("caller {queue}"));
    let caller_cx = Context::current_with_span(caller);
    let caller_ids = (
        caller_cx.span().span_context().trace_id(),
        caller_cx.span().span_context().span_id(),
    );
    let opts = EnqueueOptions::new().queue(queue);
    let handle = {
        let _in = caller_cx.clone().attach();
        client
            .enqueue_with(&ECHO, &7, &opts)
            .await
            .expect("enqueue")
    };
    let got = with_worker(backend.clone(), queue, echo(queue, failures), async {
        handle.wait_timeout(Duration::from_secs(20)).await
    })
    .await;
    assert_eq!(got.expect("the result"), 7);
    let stored = backend
        .get(handle.id())
        .await
        .expect("get")
        .expect("a record");
    let trace = stored.trace.expect("the task carries a trace context");

    let spans = spans_of(queue);
    let sends: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_kind == SpanKind::Producer)
        .collect();
    assert_eq!(sends.len(), 1, "one enqueue span");
    let send = sends[0];
    assert_eq!(send.name, format!("send {queue}"));
    assert_eq!(
        send.span_context.trace_id(),
        caller_ids.0,
        "in the caller's trace"
    );
    assert_eq!(
        send.parent_span_id, caller_ids.1,
        "a child of the caller's span"
    );
    assert_eq!(
        attr(send, "messaging.system"),
        Some(&Value::from("conveyor"))
    );
    assert_eq!(
        attr(send, "messaging.operation.type"),
        Some(&Value::from("send"))
    );
    assert_eq!(
        attr(send, "messaging.message.id"),
        Some(&Value::from(handle.id().0.to_string()))
    );
    assert_eq!(trace.trace_id(), send.span_context.trace_id().to_string());
    assert_eq!(trace.span_id(), send.span_context.span_id().to_string());

    let runs = attempts(&spans);
    assert_eq!(runs.len(), failures as usize + 1, "one span per attempt");
    for (i, run) in runs.iter().enumerate() {
        assert_eq!(run.name, format!("process {queue}"));
        assert_eq!(
            attr(run, "messaging.operation.type"),
            Some(&Value::from("process"))
        );
        assert_eq!(
            attr(run, "conveyor.task.attempt"),
            Some(&Value::I64(i as i64 + 1))
        );
        assert_eq!(
            attr(run, "conveyor.task.handler"),
            Some(&Value::from("otel-echo"))
        );
        assert_eq!(run.links.links.len(), 1, "linked to the enqueue");
        let link = &run.links.links[0].span_context;
        assert_eq!(link.trace_id(), send.span_context.trace_id());
        assert_eq!(link.span_id(), send.span_context.span_id());
        assert_ne!(
            run.span_context.trace_id(),
            send.span_context.trace_id(),
            "a link, not a parent: the attempt has a trace of its own"
        );
        let last = i == failures as usize;
        if last {
            assert_eq!(
                attr(run, "conveyor.task.outcome"),
                Some(&Value::from("succeeded"))
            );
            assert_eq!(run.status, Status::Unset);
        } else {
            assert_eq!(
                attr(run, "conveyor.task.outcome"),
                Some(&Value::from("failed"))
            );
            assert!(
                matches!(run.status, Status::Error { .. }),
                "{:?}",
                run.status
            );
        }
        // The handler's span of this attempt is its child.
        let inner: Vec<&SpanData> = spans
            .iter()
            .filter(|s| {
                s.name == format!("inner {queue}") && s.parent_span_id == run.span_context.span_id()
            })
            .collect();
        assert_eq!(
            inner.len(),
            1,
            "the handler's span nests in attempt {}",
            i + 1
        );
        assert_eq!(
            inner[0].span_context.trace_id(),
            run.span_context.trace_id()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_attempts_link_to_their_enqueue() {
    one_task_retried(Arc::new(MemoryBackend::new()), "otel-memory", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_attempts_link_to_their_enqueue() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let backend = EmbeddedBackend::open(dir.path().join("tasks.db")).expect("open");
    one_task_retried(Arc::new(backend), "otel-embedded", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_one_span_every_task_links_to() {
    exporter();
    let queue = "otel-batch";
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let client = Client::new(backend.clone());
    let opts = EnqueueOptions::new().queue(queue);
    let handles = client
        .enqueue_many(&ECHO, &[1, 2, 3], &opts)
        .await
        .expect("enqueue");
    with_worker(backend, queue, echo(queue, 0), async {
        for h in &handles {
            h.wait_timeout(Duration::from_secs(20))
                .await
                .expect("a result");
        }
    })
    .await;
    let spans = spans_of(queue);
    let sends: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_kind == SpanKind::Producer)
        .collect();
    assert_eq!(sends.len(), 1, "one span for the batch");
    assert_eq!(
        attr(sends[0], "messaging.batch.message_count"),
        Some(&Value::I64(3))
    );
    let runs = attempts(&spans);
    assert_eq!(runs.len(), 3);
    for run in runs {
        assert_eq!(run.links.links.len(), 1);
        assert_eq!(
            run.links.links[0].span_context.span_id(),
            sends[0].span_context.span_id()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_links_to_the_attempt_that_made_it() {
    exporter();
    let (queue, next) = ("otel-step-1", "otel-step-2");
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let client = Client::new(backend.clone());
    let step = Handler::io(
        "otel-step",
        move |n: u32, ctx: conveyor::TaskContext| async move {
            if n == 1 {
                let task = conveyor::durable::NewTask::new("otel-step", b"2".to_vec()).queue(next);
                ctx.follow_up(task)
                    .map_err(|e| TaskError::new(e.to_string()))?;
            }
            Ok::<_, TaskError>(n)
        },
    );
    let step_type: TaskType<u32, u32> = TaskType::new("otel-step");
    let first = client
        .enqueue_with(&step_type, &1, &EnqueueOptions::new().queue(queue))
        .await
        .expect("enqueue");
    let worker = Worker::builder(backend.clone())
        .queues([queue, next])
        .handler(step)
        .poll_interval(Duration::from_millis(20))
        .build()
        .expect("a valid worker");
    let stopper = worker.stopper();
    let running = tokio::spawn(worker.run_until(std::future::pending()));
    first
        .wait_timeout(Duration::from_secs(20))
        .await
        .expect("step 1");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while attempts(&spans_of(next)).is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stopper.stop();
    running
        .await
        .expect("the worker task")
        .expect("the worker's run");
    let parent = attempts(&spans_of(queue))
        .first()
        .map(|s| (*s).clone())
        .expect("step 1's attempt span");
    let child = attempts(&spans_of(next))
        .first()
        .map(|s| (*s).clone())
        .expect("step 2's attempt span");
    assert_eq!(child.links.links.len(), 1, "the follow-up is linked");
    let link = &child.links.links[0].span_context;
    assert_eq!(link.trace_id(), parent.span_context.trace_id());
    assert_eq!(link.span_id(), parent.span_context.span_id());
}
