//! OpenTelemetry traces (feature `otel`).
//!
//! - Enqueueing through a durable [`Client`](crate::Client) makes one span
//!   of kind `Producer`, named `send {queue}`, a child of the caller's current
//!   context. Its context is stored with every task it enqueued, as a W3C
//!   `traceparent` (and `tracestate`) in [`NewTask::trace`](conveyor_core::NewTask).
//! - A worker makes one span per attempt, of kind `Consumer`, named
//!   `process {queue}`. It starts a trace of its own and **links** to the
//!   enqueue span (a task may start hours after it was enqueued, long after
//!   the enqueuing trace ended), and it is the current context while the
//!   handler runs, so the handler's own spans are its children.
//!
//! Attributes follow the OpenTelemetry messaging conventions:
//! `messaging.system` = `conveyor`, `messaging.operation.type` (`send` or
//! `process`), `messaging.operation.name`, `messaging.destination.name` (the
//! queue), `messaging.message.id` (the task id, once known),
//! `messaging.batch.message_count` (a batch), and conveyor's own
//! `conveyor.task.handler`, `conveyor.task.attempt`, `conveyor.task.outcome`.
//! A failed attempt's status is `Error`, with its error text.
//!
//! Spans go to the global tracer provider under the tracer name [`TRACER`]:
//! install a provider (an OTLP exporter, say) with
//! `opentelemetry::global::set_tracer_provider`; without one they cost next
//! to nothing and go nowhere.

use std::borrow::Cow;

use conveyor_core::{TaskId, TraceContext};
use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer,
};
use opentelemetry::{global, Context, KeyValue};

/// The instrumentation scope (tracer) name of conveyor's spans.
pub const TRACER: &str = "conveyor";

/// `messaging.system` of every span.
pub const MESSAGING_SYSTEM: &str = "conveyor";

/// The trace context `cx`'s span stands for, as a task stores it (`None`
/// when `cx` holds no valid span).
pub fn trace_context(cx: &Context) -> Option<TraceContext> {
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return None;
    }
    let parent = format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    );
    let state = sc.trace_state().header();
    TraceContext::new(parent, Some(state)).ok()
}

/// The trace id of `cx`'s span (32 lowercase hex digits), if it holds a
/// valid one: what conveyor's log lines carry as `trace_id`.
pub fn trace_id(cx: &Context) -> Option<String> {
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// The remote span context a stored trace context names (`None` when its
/// ids do not parse, which validation already excludes).
pub fn span_context(trace: &TraceContext) -> Option<SpanContext> {
    let trace_id = TraceId::from_hex(trace.trace_id()).ok()?;
    let span_id = SpanId::from_hex(trace.span_id()).ok()?;
    let state = trace
        .tracestate()
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(trace.flags()),
        true,
        state,
    ))
}

/// The enqueue span of `count` tasks to `queue`, started as a child of the
/// current context; the returned context holds it.
pub(crate) fn enqueue_span(queue: &str, count: usize) -> Context {
    let tracer = global::tracer(TRACER);
    let mut attrs = vec![
        KeyValue::new("messaging.system", MESSAGING_SYSTEM),
        KeyValue::new("messaging.operation.type", "send"),
        KeyValue::new("messaging.operation.name", "send"),
        KeyValue::new("messaging.destination.name", queue.to_string()),
    ];
    if count != 1 {
        attrs.push(KeyValue::new(
            "messaging.batch.message_count",
            i64::try_from(count).unwrap_or(i64::MAX),
        ));
    }
    let parent = Context::current();
    let span = tracer
        .span_builder(Cow::Owned(format!("send {queue}")))
        .with_kind(SpanKind::Producer)
        .with_attributes(attrs)
        .start_with_context(&tracer, &parent);
    parent.with_span(span)
}

/// Ends an enqueue span: the task id of a single enqueue, or the error.
pub(crate) fn end_enqueue(cx: &Context, ids: &[TaskId], error: Option<&conveyor_core::Error>) {
    let span = cx.span();
    if let [id] = ids {
        span.set_attribute(KeyValue::new("messaging.message.id", id.0.to_string()));
    }
    if let Some(e) = error {
        span.set_status(Status::error(e.to_string()));
    }
    span.end();
}

/// Starts the span of one attempt; the returned context holds it.
pub(crate) fn attempt_span(
    trace: Option<&TraceContext>,
    queue: &str,
    handler: &str,
    id: TaskId,
    attempt: u32,
) -> Context {
    let tracer = global::tracer(TRACER);
    let links = trace
        .and_then(span_context)
        .map(|sc| vec![Link::with_context(sc)])
        .unwrap_or_default();
    let span = tracer
        .span_builder(Cow::Owned(format!("process {queue}")))
        .with_kind(SpanKind::Consumer)
        .with_attributes([
            KeyValue::new("messaging.system", MESSAGING_SYSTEM),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.operation.name", "process"),
            KeyValue::new("messaging.destination.name", queue.to_string()),
            KeyValue::new("messaging.message.id", id.0.to_string()),
            KeyValue::new("conveyor.task.handler", handler.to_string()),
            KeyValue::new("conveyor.task.attempt", i64::from(attempt)),
        ])
        .with_links(links)
        // A trace of its own: the enqueue is linked, not a parent.
        .start_with_context(&tracer, &Context::new());
    Context::new().with_span(span)
}

/// Ends an attempt's span with its outcome (`error`: why it failed).
pub(crate) fn end_attempt(cx: &Context, outcome: &str, error: Option<String>) {
    let span = cx.span();
    span.set_attribute(KeyValue::new("conveyor.task.outcome", outcome.to_string()));
    if let Some(e) = error {
        span.set_status(Status::error(e));
    }
    span.end();
}
