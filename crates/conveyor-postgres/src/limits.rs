//! Global handler limits on PostgreSQL: the `handler_limits` table (migration
//! 2) and the reservation path used while any handler has limits.
//!
//! The fast reserve statement is gated on the table being empty. While it is
//! not, a reservation is one short transaction: lock every limits row
//! (`SELECT … FOR UPDATE`, in handler order), count the limited handlers'
//! running tasks, pick candidates with `FOR NO KEY UPDATE SKIP LOCKED`,
//! admit them in order with [`Admission`], mark the admitted ones running and
//! store the moved rate states. The lock statement runs before the counting
//! one, so under READ COMMITTED the count's snapshot is taken after the lock
//! is held and includes every reservation committed before it: two reservers
//! can never both take a handler's last slot. Reports and lease recovery do
//! not touch the limits rows (running counts are read from the kept counts,
//! which every statement that moves tasks writes beside them), so they never
//! wait on a reservation.

use std::collections::HashMap;
use std::time::Duration;

use conveyor_core::{Admission, Error, HandlerLimits, Rate, Reserved, Timestamp, Transition};
use deadpool_postgres::Object;
use tokio_postgres::Row;

use crate::error::{bad_data, db};
use crate::row::{self, col};
use crate::schema::Schema;
use crate::statements::{eligible, not_paused, Predicates, NEW_TOKEN};

/// The statements of this module, as text for one schema.
#[derive(Debug, Clone)]
pub(crate) struct LimitStatements {
    exists: String,
    lock: String,
    running: String,
    pick: String,
    take: String,
    store_tat: String,
    upsert: String,
    delete: String,
    list: String,
}

const COLUMNS: &str = "handler, concurrency, rate_count, rate_per_us, burst, tat_us";

impl LimitStatements {
    pub(crate) fn new(schema: &Schema) -> Self {
        let t = schema.table("tasks");
        let l = schema.table("handler_limits");
        let p = Predicates::new();
        Self {
            exists: format!("SELECT EXISTS (SELECT 1 FROM {l})"),
            lock: format!("SELECT {COLUMNS} FROM {l} ORDER BY handler FOR UPDATE"),
            // $1 handlers. Summed from the kept counts, which the statement
            // that moves a task writes in its own transaction (migration 7's
            // triggers): exactly the running tasks a count of the rows would
            // find, read from a few rows per statement since the last fold.
            running: format!(
                "SELECT handler, sum(n)::bigint FROM {c}
                 WHERE state = {running} AND handler = ANY($1)
                 GROUP BY handler",
                c = schema.table("task_counts"),
                running = Transition::Reserve.target().code(),
            ),
            // $1 queue, $2 limit, $3 handlers to leave out, $4 ids to leave out.
            pick: format!(
                "SELECT t.id, t.handler FROM {t} t
                 WHERE t.{available} AND t.queue = $1 AND {eligible}
                   AND t.handler <> ALL($3) AND t.id <> ALL($4) AND {not_paused}
                 ORDER BY t.priority DESC, t.id
                 LIMIT $2
                 FOR NO KEY UPDATE SKIP LOCKED",
                available = p.available,
                eligible = eligible(&t, &p.unfinished),
                not_paused = not_paused(schema, "$1"),
            ),
            // $1 ids, $2 lease_until, $3 worker, $4 now.
            take: format!(
                "UPDATE {t} t
                 SET state = {running_to}, attempts = t.attempts + 1, token = {NEW_TOKEN},
                     lease_until = $2, worker = $3::text, started_at = $4::bigint
                 WHERE t.id = ANY($1) AND t.{available}
                 RETURNING t.id, t.token, t.queue, t.handler, t.payload, t.attempts,
                           t.max_attempts, t.timeout_ms, t.ordering_key, t.created_at, t.run_at,
                           t.lease_until, t.priority, t.trace",
                running_to = Transition::Reserve.target().code(),
                available = p.available,
            ),
            // $1 handlers, $2 TATs.
            store_tat: format!(
                "UPDATE {l} l SET tat_us = v.tat
                 FROM unnest($1::text[], $2::bigint[]) AS v(h, tat) WHERE l.handler = v.h"
            ),
            // $1 handler, $2 concurrency, $3 count, $4 per (µs), $5 burst.
            upsert: format!(
                "INSERT INTO {l} (handler, concurrency, rate_count, rate_per_us, burst)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (handler) DO UPDATE SET concurrency = excluded.concurrency,
                   rate_count = excluded.rate_count, rate_per_us = excluded.rate_per_us,
                   burst = excluded.burst"
            ),
            delete: format!("DELETE FROM {l} WHERE handler = $1"),
            list: format!("SELECT {COLUMNS} FROM {l} ORDER BY handler"),
        }
    }

    /// `SELECT EXISTS` over the limits table.
    pub(crate) fn exists(&self) -> &str {
        &self.exists
    }
}

/// A limits row: the handler, its limits and its rate state.
fn read(row: &Row) -> Result<(String, HandlerLimits, Option<i64>), Error> {
    let handler: String = col(row, 0, "handler")?;
    let bad = |what: &str| bad_data(format!("handler_limits row {handler:?}: bad {what}"));
    let nat = |v: Option<i32>, what: &str| {
        v.map(|v| u32::try_from(v).map_err(|_| bad(what)))
            .transpose()
    };
    let concurrency = nat(col(row, 1, "concurrency")?, "concurrency")?;
    let count = nat(col(row, 2, "rate_count")?, "rate_count")?;
    let per: Option<i64> = col(row, 3, "rate_per_us")?;
    let burst = nat(col(row, 4, "burst")?, "burst")?;
    let rate = match (count, per) {
        // A stored burst of 0 is bad data, not a burst of 1.
        _ if burst == Some(0) => return Err(bad("burst")),
        (Some(count), Some(per)) => {
            let per = Duration::from_micros(u64::try_from(per).map_err(|_| bad("rate_per_us"))?);
            Some(Rate::new(count, per).burst(burst.unwrap_or(1)))
        }
        (None, None) => None,
        _ => return Err(bad("rate")),
    };
    let limits = HandlerLimits { concurrency, rate };
    limits.validate().map_err(|_| bad("limits"))?;
    Ok((handler, limits, col(row, 5, "tat_us")?))
}

fn to_i32(v: Option<u32>) -> Option<i32> {
    v.map(|v| i32::try_from(v).unwrap_or(i32::MAX))
}

/// Stores (or, with no limit, removes) a handler's limits, keeping its rate state.
pub(crate) async fn set(
    conn: &Object,
    sql: &LimitStatements,
    handler: &str,
    limits: HandlerLimits,
) -> Result<(), Error> {
    let what = "storing handler limits";
    if limits.is_unlimited() {
        conn.execute(&sql.delete, &[&handler])
            .await
            .map_err(|e| db(what, e))?;
        return Ok(());
    }
    let r = limits.rate;
    let per = r.map(|r| i64::try_from(r.period().as_micros()).unwrap_or(i64::MAX));
    conn.execute(
        &sql.upsert,
        &[
            &handler,
            &to_i32(limits.concurrency),
            &to_i32(r.map(|r| r.count())),
            &per,
            &to_i32(r.map(|r| r.burst_size())),
        ],
    )
    .await
    .map_err(|e| db(what, e))?;
    Ok(())
}

/// Every stored limit, by handler.
pub(crate) async fn list(
    conn: &Object,
    sql: &LimitStatements,
) -> Result<Vec<(String, HandlerLimits)>, Error> {
    let rows = conn
        .query(&sql.list, &[])
        .await
        .map_err(|e| db("reading handler limits", e))?;
    rows.iter()
        .map(|r| read(r).map(|(h, l, _)| (h, l)))
        .collect()
}

/// Reserves up to `max` tasks of `queues` under the limits, in one
/// transaction, for `worker` (the attempts' worker), of the `wanted`
/// handlers only when given (the others are left out of the scan as a closed handler is).
pub(crate) async fn reserve(
    conn: &mut Object,
    sql: &LimitStatements,
    queues: &[String],
    max: usize,
    (now, until): (Timestamp, i64),
    worker: Option<&str>,
    wanted: Option<&[String]>,
) -> Result<Vec<Reserved>, Error> {
    let what = "reserving under handler limits";
    let err = |e| db(what, e);
    let tx = conn.transaction().await.map_err(err)?;
    let lock = tx.prepare_cached(&sql.lock).await.map_err(err)?;
    let rows = tx.query(&lock, &[]).await.map_err(err)?;
    let mut gate = Admission::new(now);
    let mut handlers = Vec::with_capacity(rows.len());
    for r in &rows {
        let (handler, limits, tat) = read(r)?;
        gate.limit(&handler, limits, 0, tat);
        handlers.push(handler);
    }
    let running = tx.prepare_cached(&sql.running).await.map_err(err)?;
    for r in tx.query(&running, &[&handlers]).await.map_err(err)? {
        let handler: String = col(&r, 0, "handler")?;
        let n: i64 = col(&r, 1, "count")?;
        gate.set_running(&handler, u64::try_from(n).unwrap_or(0));
    }
    let pick = tx.prepare_cached(&sql.pick).await.map_err(err)?;
    let mut chosen: Vec<i64> = Vec::new();
    // Handlers met in the scan that the caller does not run.
    let mut unwanted: Vec<String> = Vec::new();
    for queue in queues {
        loop {
            let want = max.saturating_sub(chosen.len());
            if want == 0 {
                break;
            }
            let limit = i64::try_from(want).unwrap_or(i64::MAX);
            let mut closed = gate.closed();
            closed.extend(unwanted.iter().cloned());
            let rows = tx
                .query(&pick, &[queue, &limit, &closed, &chosen])
                .await
                .map_err(err)?;
            let full = rows.len() == want;
            for r in &rows {
                let id: i64 = col(r, 0, "id")?;
                let handler: String = col(r, 1, "handler")?;
                if wanted.is_some_and(|hs| !hs.contains(&handler)) {
                    if !unwanted.contains(&handler) {
                        unwanted.push(handler);
                    }
                } else if gate.admit(&handler) {
                    chosen.push(id);
                }
            }
            // A short page means the queue has nothing more; a full one with
            // refusals closed a handler, so the next page leaves it out.
            if !full {
                break;
            }
        }
    }
    let mut out = Vec::with_capacity(chosen.len());
    if !chosen.is_empty() {
        let take = tx.prepare_cached(&sql.take).await.map_err(err)?;
        let now_ms = now.as_millis();
        let rows = tx
            .query(&take, &[&chosen, &until, &worker, &now_ms])
            .await
            .map_err(err)?;
        let position: HashMap<&str, usize> = queues
            .iter()
            .enumerate()
            .map(|(i, q)| (q.as_str(), i))
            .collect();
        let mut got = rows
            .iter()
            .map(row::reserved)
            .collect::<Result<Vec<_>, _>>()?;
        got.sort_by_key(|(priority, r)| {
            (
                position
                    .get(r.queue.as_str())
                    .copied()
                    .unwrap_or(usize::MAX),
                std::cmp::Reverse(*priority),
                r.lease.id,
            )
        });
        out.extend(got.into_iter().map(|(_, r)| r));
    }
    let moved = gate.moved_rates();
    if !moved.is_empty() {
        let (hs, tats): (Vec<String>, Vec<i64>) = moved.into_iter().unzip();
        let store = tx.prepare_cached(&sql.store_tat).await.map_err(err)?;
        tx.execute(&store, &[&hs, &tats]).await.map_err(err)?;
    }
    tx.commit().await.map_err(err)?;
    Ok(out)
}
