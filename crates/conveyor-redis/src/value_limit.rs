//! How big a task's params or result may be on this server: a value is one
//! string in Redis, and a string, like each argument of a call, is capped by
//! the server's `proto-max-bulk-len` (512 MiB by default). An argument over
//! it is a protocol error that drops the connection — an outage to the
//! worker, retried for ever — so the backend refuses such a value itself,
//! before the call ([`conveyor_core::ValueLimit`]).
//!
//! One call, all its values together, is capped by the server's
//! `client-query-buffer-limit` (1 GiB by default): a batch past it is
//! refused whole, and the reports of a `finish` past it are sent again in
//! a later call.
//!
//! Both caps are read with `CONFIG GET` when connecting; a server that refuses
//! `CONFIG` (a managed Redis often renames it) is taken to have the default.
//! A task's stored record holds its params with the rest of the task, so
//! the limit keeps [`RECORD_ROOM`] for that.

use conveyor_core::ValueLimit;

/// Redis's default `proto-max-bulk-len`.
pub(crate) const DEFAULT_BULK: usize = 512 << 20;

/// Bytes of a record kept for what it holds besides the value: names, keys,
/// trace context, the history of attempts and their errors.
pub(crate) const RECORD_ROOM: usize = 64 << 10;

/// Redis's default `client-query-buffer-limit`: the most one request may
/// carry.
pub(crate) const DEFAULT_QUERY: usize = 1 << 30;

/// The server's limit, read from its configuration.
pub(crate) async fn server_limit(conn: &mut crate::primary::Primary) -> ValueLimit {
    let read: Result<Vec<String>, _> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("proto-max-bulk-len")
        .arg("client-query-buffer-limit")
        .query_async(conn)
        .await;
    let pairs = read.unwrap_or_default();
    let get = |name: &str| -> Option<usize> {
        let at = pairs.iter().position(|k| k == name)?;
        pairs.get(at + 1)?.parse().ok()
    };
    let (bulk, query) = (get("proto-max-bulk-len"), get("client-query-buffer-limit"));
    let said = if bulk.is_some() {
        "this Redis server's"
    } else {
        "Redis's default (the server would not say its own)"
    };
    limit(
        bulk.unwrap_or(DEFAULT_BULK),
        query.unwrap_or(DEFAULT_QUERY),
        said,
    )
}

/// The limit for a server whose `proto-max-bulk-len` is `bulk` and whose
/// `client-query-buffer-limit` is `query`.
pub(crate) fn limit(bulk: usize, query: usize, said: &str) -> ValueLimit {
    ValueLimit::new(
        "redis",
        bulk.saturating_sub(RECORD_ROOM),
        format!("{said} proto-max-bulk-len of {bulk} bytes, less {RECORD_ROOM} for the rest of a task's record"),
    )
    .with_call_limit(
        query.saturating_sub(RECORD_ROOM),
        format!("{said} client-query-buffer-limit of {query} bytes, less {RECORD_ROOM} for the rest of the call"),
    )
}
