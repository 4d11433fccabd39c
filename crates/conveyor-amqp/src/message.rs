//! A task as an AMQP message: the payload is the body, everything else rides
//! in the message id and `conveyor-*` headers, and the trace context in the
//! W3C `traceparent` and `tracestate` headers (as the OpenTelemetry messaging
//! conventions carry it over AMQP). A retry or a delay republishes the
//! message with its headers, so the context stays with the task.
//!
//! A message may come from anyone with access to the queue, so decoding never
//! panics: a missing or mistyped header is an error naming it, and the worker
//! dead-letters such a message instead of stopping.

use std::time::Duration;

use conveyor_core::workflow::entries::NodeLink;
use conveyor_core::{NewTask, TaskId, Timestamp, TraceContext};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;

const HANDLER: &str = "conveyor-handler";
const QUEUE: &str = "conveyor-queue";
const ATTEMPTS: &str = "conveyor-attempts";
const MAX_ATTEMPTS: &str = "conveyor-max-attempts";
const TIMEOUT_MS: &str = "conveyor-timeout-ms";
const KEEP_MS: &str = "conveyor-keep-ms";
const ENQUEUED_AT: &str = "conveyor-enqueued-at";
const DUE_AT: &str = "conveyor-due-at";
const ERROR: &str = "conveyor-error";
/// The workflow node a task runs: `FLOW.NODE`.
const NODE: &str = "conveyor-node";
const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// Persistent (written to disk by the broker).
const PERSISTENT: u8 = 2;

/// One task as it travels through the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskMessage {
    pub(crate) id: TaskId,
    pub(crate) queue: String,
    pub(crate) handler: String,
    pub(crate) payload: Vec<u8>,
    /// Attempts already made (finished with a retry) before this message.
    pub(crate) attempts: u32,
    pub(crate) max_attempts: u32,
    pub(crate) timeout: Option<Duration>,
    pub(crate) enqueued_at: Timestamp,
    /// Not before this time.
    pub(crate) due_at: Timestamp,
    /// The last error, on a retry or a dead task.
    pub(crate) error: Option<String>,
    /// The trace context given at enqueue.
    pub(crate) trace: Option<TraceContext>,
    /// How long its record is kept once finished (`NewTask::keep`).
    pub(crate) keep: Option<Duration>,
    /// The workflow node it runs, if it is a node's task.
    pub(crate) node: Option<NodeLink>,
}

impl TaskMessage {
    /// A new task's first message.
    pub(crate) fn new(id: TaskId, task: NewTask, now: Timestamp) -> TaskMessage {
        let due_at = task.first_run(now);
        TaskMessage {
            id,
            queue: task.queue,
            handler: task.handler,
            payload: task.payload,
            attempts: 0,
            max_attempts: task.max_attempts,
            timeout: task.timeout,
            enqueued_at: now,
            due_at,
            error: None,
            trace: task.trace,
            keep: task.keep,
            node: None,
        }
    }

    /// The AMQP properties carrying everything but the payload.
    pub(crate) fn properties(&self) -> BasicProperties {
        let mut h = FieldTable::default();
        let s = |v: &str| AMQPValue::LongString(LongString::from(v.as_bytes().to_vec()));
        h.insert(HANDLER.into(), s(&self.handler));
        h.insert(QUEUE.into(), s(&self.queue));
        h.insert(
            ATTEMPTS.into(),
            AMQPValue::LongLongInt(self.attempts.into()),
        );
        h.insert(
            MAX_ATTEMPTS.into(),
            AMQPValue::LongLongInt(self.max_attempts.into()),
        );
        for (key, d) in [(TIMEOUT_MS, self.timeout), (KEEP_MS, self.keep)] {
            if let Some(d) = d {
                let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                h.insert(key.into(), AMQPValue::LongLongInt(ms));
            }
        }
        h.insert(
            ENQUEUED_AT.into(),
            AMQPValue::LongLongInt(self.enqueued_at.0),
        );
        h.insert(DUE_AT.into(), AMQPValue::LongLongInt(self.due_at.0));
        if let Some(e) = &self.error {
            h.insert(ERROR.into(), s(e));
        }
        if let Some(n) = &self.node {
            h.insert(NODE.into(), s(&format!("{}.{}", n.flow, n.node)));
        }
        if let Some(t) = &self.trace {
            h.insert(TRACEPARENT.into(), s(t.traceparent()));
            if let Some(state) = t.tracestate() {
                h.insert(TRACESTATE.into(), s(state));
            }
        }
        BasicProperties::default()
            .with_message_id(ShortString::from(self.id.0.to_string()))
            .with_delivery_mode(PERSISTENT)
            .with_headers(h)
    }

    /// Reads a message back. `Err` names what is missing or malformed, and
    /// gives the payload back (to dead-letter it as it came).
    pub(crate) fn decode(
        properties: &BasicProperties,
        payload: Vec<u8>,
    ) -> Result<TaskMessage, (String, Vec<u8>)> {
        match Self::head(properties) {
            Ok(mut m) => {
                m.payload = payload;
                Ok(m)
            }
            Err(why) => Err((why, payload)),
        }
    }

    fn head(properties: &BasicProperties) -> Result<TaskMessage, String> {
        let id = properties
            .message_id()
            .as_ref()
            .and_then(|m| m.as_str().parse::<u64>().ok())
            .map(TaskId)
            .ok_or("no numeric message id (not a conveyor task)")?;
        let empty = FieldTable::default();
        let h = properties.headers().as_ref().unwrap_or(&empty).inner();
        let text = |k: &str| -> Result<String, String> {
            match h.get(k) {
                Some(AMQPValue::LongString(v)) => String::from_utf8(v.as_bytes().to_vec())
                    .map_err(|_| format!("header {k} is not UTF-8")),
                Some(AMQPValue::ShortString(v)) => Ok(v.as_str().to_string()),
                Some(_) => Err(format!("header {k} is not a string")),
                None => Err(format!("header {k} is missing")),
            }
        };
        let number = |k: &str| -> Result<Option<i64>, String> {
            Ok(match h.get(k) {
                None => None,
                Some(AMQPValue::LongLongInt(v)) => Some(*v),
                Some(AMQPValue::LongInt(v)) => Some(i64::from(*v)),
                Some(AMQPValue::LongUInt(v)) => Some(i64::from(*v)),
                Some(AMQPValue::ShortInt(v)) => Some(i64::from(*v)),
                Some(AMQPValue::ShortUInt(v)) => Some(i64::from(*v)),
                Some(AMQPValue::ShortShortInt(v)) => Some(i64::from(*v)),
                Some(AMQPValue::ShortShortUInt(v)) => Some(i64::from(*v)),
                Some(_) => return Err(format!("header {k} is not a number")),
            })
        };
        let count = |k: &str, default: u32| -> Result<u32, String> {
            match number(k)? {
                None => Ok(default),
                Some(n) => u32::try_from(n).map_err(|_| format!("header {k} is out of range")),
            }
        };
        let enqueued_at = Timestamp(number(ENQUEUED_AT)?.unwrap_or(0));
        // A context that does not parse (another producer's) is dropped, not
        // a reason to dead-letter the task.
        let trace = text(TRACEPARENT)
            .ok()
            .and_then(|p| TraceContext::new(p, text(TRACESTATE).ok()).ok());
        Ok(TaskMessage {
            id,
            queue: text(QUEUE)?,
            handler: text(HANDLER)?,
            payload: Vec::new(),
            attempts: count(ATTEMPTS, 0)?,
            max_attempts: count(MAX_ATTEMPTS, conveyor_core::DEFAULT_MAX_ATTEMPTS)?.max(1),
            timeout: number(TIMEOUT_MS)?.map(duration),
            enqueued_at,
            due_at: Timestamp(number(DUE_AT)?.unwrap_or(enqueued_at.0)),
            error: match h.get(ERROR) {
                None => None,
                Some(_) => Some(text(ERROR)?),
            },
            trace,
            keep: number(KEEP_MS)?.map(duration),
            node: match h.get(NODE) {
                None => None,
                Some(_) => {
                    Some(node_link(&text(NODE)?).ok_or("header conveyor-node is not FLOW.NODE")?)
                }
            },
        })
    }
}

/// A node link as its header writes it (`FLOW.NODE`).
fn node_link(text: &str) -> Option<NodeLink> {
    let (flow, node) = text.split_once('.')?;
    Some(NodeLink {
        flow: flow.parse().ok()?,
        node: node.parse().ok()?,
    })
}

/// A header's milliseconds as a duration (a negative number is none long).
fn duration(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips() {
        let task = NewTask::new("resize", b"{\"w\":3}".to_vec())
            .queue("images")
            .max_attempts(5)
            .timeout(Duration::from_millis(1500))
            .delay(Duration::from_secs(2))
            .trace(
                TraceContext::new(
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    Some("k=v".into()),
                )
                .unwrap(),
            );
        let mut m = TaskMessage::new(TaskId(42), task, Timestamp(1_000));
        m.attempts = 2;
        m.error = Some("boom".into());
        m.node = Some(NodeLink { flow: 9, node: 4 });
        let back = TaskMessage::decode(&m.properties(), m.payload.clone()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.due_at, Timestamp(3_000));
    }

    #[test]
    fn foreign_messages_are_refused_with_a_reason() {
        let (err, payload) =
            TaskMessage::decode(&BasicProperties::default(), b"x".to_vec()).unwrap_err();
        assert!(err.contains("message id"), "{err}");
        assert_eq!(payload, b"x");
        let props = BasicProperties::default().with_message_id("7".into());
        let (err, _) = TaskMessage::decode(&props, b"x".to_vec()).unwrap_err();
        assert!(err.contains("conveyor-queue"), "{err}");
    }
}
