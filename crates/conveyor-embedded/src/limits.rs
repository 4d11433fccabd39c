//! Global handler limits in the file: the `handler_limits` table (schema v2)
//! and the admission state a reservation reads from it.
//!
//! Every write transaction holds SQLite's write lock (`BEGIN IMMEDIATE`), for
//! this process and every other one sharing the file, so the running counts
//! and rate states read at the start of a reservation are exactly as they are
//! when it marks tasks running: two reservers can never both take the last
//! slot.

use std::time::Duration;

use conveyor_core::{Admission, Error, HandlerLimits, Rate, TaskState, Timestamp};
use rusqlite::{params, Row};

use crate::error::db_err;
use crate::store::Store;

fn bad(handler: &str, what: &str) -> Error {
    Error::backend_other(format!(
        "handler_limits row for {handler:?} has a bad {what}"
    ))
}

fn nat<T: TryFrom<i64>>(handler: &str, what: &str, v: Option<i64>) -> Result<Option<T>, Error> {
    v.map(|v| T::try_from(v).map_err(|_| bad(handler, what)))
        .transpose()
}

/// A row's limits and rate state (columns: handler, concurrency, rate_count,
/// rate_per_us, burst, tat_us).
fn read(row: &Row<'_>) -> Result<(String, HandlerLimits, Option<i64>), Error> {
    let handler: String = row.get(0).map_err(db_err)?;
    let get = |i: usize| row.get::<_, Option<i64>>(i).map_err(db_err);
    let concurrency = nat::<u32>(&handler, "concurrency", get(1)?)?;
    let count = nat::<u32>(&handler, "rate_count", get(2)?)?;
    let per = nat::<u64>(&handler, "rate_per_us", get(3)?)?;
    let burst = nat::<u32>(&handler, "burst", get(4)?)?;
    let rate = match (count, per) {
        (Some(count), Some(per)) => {
            Some(Rate::new(count, Duration::from_micros(per)).burst(burst.unwrap_or(1)))
        }
        _ => None,
    };
    let limits = HandlerLimits { concurrency, rate };
    limits.validate().map_err(|_| bad(&handler, "limit"))?;
    Ok((handler, limits, get(5)?))
}

const SELECT: &str =
    "SELECT handler, concurrency, rate_count, rate_per_us, burst, tat_us FROM handler_limits \
     ORDER BY handler";

impl Store {
    /// Stores (or, with no limit, removes) a handler's limits, keeping its rate state.
    pub(crate) fn set_limits(&mut self, handler: &str, limits: HandlerLimits) -> Result<(), Error> {
        if limits.is_unlimited() {
            self.conn
                .execute("DELETE FROM handler_limits WHERE handler = ?1", [handler])
                .map_err(db_err)?;
            return Ok(());
        }
        let rate = limits.rate;
        let per = rate.map(|r| i64::try_from(r.period().as_micros()).unwrap_or(i64::MAX));
        self.conn
            .execute(
                "INSERT INTO handler_limits (handler, concurrency, rate_count, rate_per_us, burst)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (handler) DO UPDATE SET concurrency = excluded.concurrency,
                   rate_count = excluded.rate_count, rate_per_us = excluded.rate_per_us,
                   burst = excluded.burst",
                params![
                    handler,
                    limits.concurrency,
                    rate.map(|r| r.count()),
                    per,
                    rate.map(|r| r.burst_size())
                ],
            )
            .map_err(db_err)?;
        Ok(())
    }

    /// Every stored limit, by handler.
    pub(crate) fn limits(&mut self) -> Result<Vec<(String, HandlerLimits)>, Error> {
        Ok(self
            .limit_rows()?
            .into_iter()
            .map(|(h, l, _)| (h, l))
            .collect())
    }

    fn limit_rows(&mut self) -> Result<Vec<(String, HandlerLimits, Option<i64>)>, Error> {
        let mut stmt = self.conn.prepare_cached(SELECT).map_err(db_err)?;
        let mut rows = stmt.query([]).map_err(db_err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(db_err)? {
            out.push(read(row)?);
        }
        Ok(out)
    }

    /// The admission state of a reservation at `now`: every limited handler
    /// with its running count and rate state.
    pub(crate) fn admission(&mut self, now: Timestamp) -> Result<Admission, Error> {
        let mut gate = Admission::new(now);
        let rows = self.limit_rows()?;
        if rows.is_empty() {
            return Ok(gate);
        }
        // The kept counts (`crate::tally`), plus what this transaction's
        // requests moved and has not written yet: no index over running tasks
        // is needed (each one cost every reservation and settlement two index
        // writes).
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT COALESCE(SUM(n), 0) FROM task_counts WHERE handler = ?1 AND state = ?2",
            )
            .map_err(db_err)?;
        let running_code = TaskState::Running.code();
        for (handler, limits, tat) in rows {
            let kept: i64 = stmt
                .query_row(params![handler, running_code], |r| r.get(0))
                .map_err(db_err)?;
            let running = kept + self.tally.unwritten(&handler, TaskState::Running);
            gate.limit(&handler, limits, u64::try_from(running).unwrap_or(0), tat);
        }
        Ok(gate)
    }

    /// Stores the rate states a reservation moved.
    pub(crate) fn store_rates(&mut self, gate: &Admission) -> Result<(), Error> {
        let moved = gate.moved_rates();
        if moved.is_empty() {
            return Ok(());
        }
        let mut stmt = self
            .conn
            .prepare_cached("UPDATE handler_limits SET tat_us = ?2 WHERE handler = ?1")
            .map_err(db_err)?;
        for (handler, tat) in moved {
            stmt.execute(params![handler, tat]).map_err(db_err)?;
        }
        Ok(())
    }
}
