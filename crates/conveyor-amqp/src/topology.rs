//! The arguments of every queue conveyor declares, in one place.
//!
//! All are quorum queues (replicated, durable, fsynced before a publish is
//! confirmed). Work queues end a task that keeps killing its workers after
//! `delivery_limit` deliveries and dead-letter it into their dead queue,
//! at-least-once (which needs `overflow=reject-publish`). Ladder rungs and
//! custody queues dead-letter at-least-once too, on expiry.

use lapin::types::{AMQPValue, FieldTable, LongString};

fn text(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v.as_bytes().to_vec()))
}

fn quorum() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-queue-type".into(), text("quorum"));
    t
}

/// Dead-letter at-least-once into `exchange` (with `routing_key`, or the
/// message's own keys).
fn dead_letters(t: &mut FieldTable, exchange: &str, routing_key: Option<&str>) {
    t.insert("x-dead-letter-exchange".into(), text(exchange));
    if let Some(key) = routing_key {
        t.insert("x-dead-letter-routing-key".into(), text(key));
    }
    t.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    t.insert("x-overflow".into(), text("reject-publish"));
}

/// A work queue: poison tasks dead-letter into `dead` after `delivery_limit`.
pub(crate) fn work_queue(dead: &str, delivery_limit: u32) -> FieldTable {
    let mut t = quorum();
    t.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(delivery_limit.into()),
    );
    dead_letters(&mut t, "", Some(dead));
    t
}

/// A dead queue: kept until requeued or purged.
pub(crate) fn dead_queue() -> FieldTable {
    quorum()
}

/// Rung `ttl_ms` of the ladder, expiring into exchange `next`.
pub(crate) fn rung(ttl_ms: u64, next: &str) -> FieldTable {
    let mut t = quorum();
    t.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt(i64::try_from(ttl_ms).unwrap_or(i64::MAX)),
    );
    dead_letters(&mut t, next, None);
    t
}

/// A custody queue: its one message returns to `work` when `ttl_ms` passes
/// without its holder renewing it; the queue itself goes `expires_ms` after.
pub(crate) fn custody(work: &str, ttl_ms: u64, expires_ms: u64) -> FieldTable {
    let mut t = quorum();
    let ms = |v: u64| AMQPValue::LongLongInt(i64::try_from(v).unwrap_or(i64::MAX));
    t.insert("x-message-ttl".into(), ms(ttl_ms));
    t.insert("x-expires".into(), ms(expires_ms));
    dead_letters(&mut t, "", Some(work));
    t
}

/// An anchor queue (see `link`): a quorum queue that expires on its own
/// should its deletion not arrive.
pub(crate) fn anchor() -> FieldTable {
    let mut t = quorum();
    t.insert("x-expires".into(), AMQPValue::LongLongInt(10_000));
    t
}
