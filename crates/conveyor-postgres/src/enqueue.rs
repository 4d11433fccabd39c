//! Enqueueing: a batch of tasks in one statement, on the backend's own
//! connection or inside the caller's transaction.
//!
//! The whole batch is one `INSERT … SELECT FROM unnest(arrays)`, so it is
//! atomic and costs one round trip however many tasks it holds. Unique keys are
//! settled in two places: repeats within the batch are folded here before
//! sending (each later one reports the first's id), and a key already held by an
//! unfinished task is caught by the partial unique index (`ON CONFLICT DO
//! NOTHING`) and answered with that task's id. Tasks with an ordering key take a
//! transaction-scoped advisory lock per `(queue, key)` before their ids are
//! drawn, so the ids of one key are committed in increasing order — which is
//! what lets `reserve` trust "lowest unfinished id of the key" as the head.
//!
//! Running inside the caller's transaction (see
//! [`PostgresBackend::enqueue_in`](crate::PostgresBackend::enqueue_in)) the
//! tasks, and their wake-up notification, exist only if the caller commits.

use std::collections::HashMap;

use conveyor_core::{Enqueued, Error, NewTask, Timestamp, TraceContext, Transition};
use tokio_postgres::{Client, Statement};

use crate::error::db;
use crate::row::{col, task_id};
use crate::schema::Schema;
use crate::statements::Statements;

/// How many times a conflict with a task that vanished under us is retried.
const CONFLICT_ROUNDS: usize = 3;

/// Checks a batch before anything is sent: the contract's own checks, then what
/// this store cannot hold.
pub(crate) fn validate(tasks: &[NewTask]) -> Result<(), Error> {
    for t in tasks {
        t.validate()?;
        if i32::try_from(t.max_attempts).is_err() {
            return Err(Error::InvalidConfig(format!(
                "max_attempts {} is more than the postgres backend stores ({})",
                t.max_attempts,
                i32::MAX
            )));
        }
    }
    Ok(())
}

/// A timeout or keep in whole milliseconds, rounded up so a short one never
/// becomes 0.
pub(crate) fn timeout_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX)
}

/// Where and when a batch is enqueued.
pub(crate) struct Target<'a> {
    /// The connection (the backend's own, or the caller's in its transaction).
    pub client: &'a Client,
    /// The enqueue statement, prepared on that connection: `sql.enqueue`
    /// (it wakes workers at its transaction's commit) or `sql.enqueue_quiet`.
    pub statement: &'a Statement,
    /// True for `sql.enqueue`, which takes the channel as a parameter.
    pub wakes: bool,
    /// The backend's statements.
    pub sql: &'a Statements,
    /// The backend's schema.
    pub schema: &'a Schema,
    /// The backend clock's reading.
    pub now: Timestamp,
}

/// Enqueues `tasks` (already validated) with the prepared enqueue statement.
pub(crate) async fn enqueue(at: &Target<'_>, tasks: &[NewTask]) -> Result<Vec<Enqueued>, Error> {
    let mut out: Vec<Option<Enqueued>> = vec![None; tasks.len()];
    // A repeated unique key within the batch answers with its first task.
    let mut first_of_key: HashMap<(&str, &str), usize> = HashMap::new();
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    let mut pending: Vec<usize> = Vec::with_capacity(tasks.len());
    for (i, t) in tasks.iter().enumerate() {
        if let Some(k) = &t.unique_key {
            if let Some(&first) = first_of_key.get(&(t.queue.as_str(), k.as_str())) {
                repeats.push((i, first));
                continue;
            }
            first_of_key.insert((t.queue.as_str(), k.as_str()), i);
        }
        pending.push(i);
    }
    for _ in 0..CONFLICT_ROUNDS {
        if pending.is_empty() {
            break;
        }
        pending = insert(at, tasks, &pending, &mut out).await?;
    }
    if !pending.is_empty() {
        return Err(Error::backend_other(format!(
            "postgres: enqueueing: {} task(s) kept meeting a unique key held by a task that \
             finished before it could be read; enqueue them again",
            pending.len()
        )));
    }
    for (i, first) in repeats {
        let id = out[first]
            .map(|e| e.id)
            .ok_or_else(|| Error::backend_other("postgres: enqueueing: a task got no id"))?;
        out[i] = Some(Enqueued {
            id,
            duplicate: true,
        });
    }
    out.into_iter()
        .map(|e| e.ok_or_else(|| Error::backend_other("postgres: enqueueing: a task got no id")))
        .collect()
}

/// Inserts the tasks at `which`, filling `out`; returns the ones whose unique
/// key conflicted with a task that could no longer be found (to try again).
async fn insert(
    at: &Target<'_>,
    tasks: &[NewTask],
    which: &[usize],
    out: &mut [Option<Enqueued>],
) -> Result<Vec<usize>, Error> {
    let Target {
        client,
        statement,
        wakes,
        sql,
        schema,
        now,
    } = *at;
    let n = which.len();
    let mut queues = Vec::with_capacity(n);
    let mut handlers = Vec::with_capacity(n);
    let mut payloads = Vec::with_capacity(n);
    let mut priorities = Vec::with_capacity(n);
    let mut max_attempts = Vec::with_capacity(n);
    let mut timeouts = Vec::with_capacity(n);
    let mut unique_keys = Vec::with_capacity(n);
    let mut ordering_keys = Vec::with_capacity(n);
    let mut run_ats = Vec::with_capacity(n);
    let mut states = Vec::with_capacity(n);
    let mut traces = Vec::with_capacity(n);
    let mut keeps = Vec::with_capacity(n);
    let mut locks = Vec::new();
    for &i in which {
        let t = &tasks[i];
        let run_at = t.first_run(now);
        let first = if run_at > now {
            Transition::Schedule
        } else {
            Transition::Enqueue
        };
        queues.push(t.queue.as_str());
        handlers.push(t.handler.as_str());
        payloads.push(t.payload.as_slice());
        priorities.push(t.priority);
        max_attempts.push(i32::try_from(t.max_attempts).unwrap_or(i32::MAX));
        timeouts.push(t.timeout.map(timeout_ms));
        unique_keys.push(t.unique_key.as_deref());
        ordering_keys.push(t.ordering_key.as_deref());
        run_ats.push(run_at.as_millis());
        // Codes are 0..=6: the cast cannot truncate.
        states.push(first.target().code() as i16);
        traces.push(t.trace.as_ref().map(TraceContext::encode));
        keeps.push(t.keep.map(timeout_ms));
        if let Some(k) = &t.ordering_key {
            locks.push(schema.ordering_lock(&t.queue, k));
        }
    }
    // A fixed order of lock acquisition: two batches never wait on each other
    // in a cycle.
    locks.sort_unstable();
    locks.dedup();
    let channel = schema.channel();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 15] = [
        &queues,
        &handlers,
        &payloads,
        &priorities,
        &max_attempts,
        &timeouts,
        &unique_keys,
        &ordering_keys,
        &run_ats,
        &states,
        &now.as_millis(),
        &locks,
        &traces,
        &keeps,
        &channel,
    ];
    let params = if wakes { &params[..] } else { &params[..14] };
    let rows = client
        .query(statement, params)
        .await
        .map_err(|e| db("enqueueing", e))?;
    let mut unresolved = Vec::new();
    for row in &rows {
        let ord: i64 = col(row, 0, "ord")?;
        let slot = usize::try_from(ord)
            .ok()
            .and_then(|o| o.checked_sub(1))
            .and_then(|o| which.get(o).copied())
            .ok_or_else(|| {
                Error::backend_other(format!("postgres: enqueueing: bad ordinal {ord}"))
            })?;
        let inserted: bool = col(row, 2, "inserted")?;
        if inserted {
            out[slot] = Some(Enqueued {
                id: task_id(col(row, 1, "id")?)?,
                duplicate: false,
            });
            continue;
        }
        let existing: Option<i64> = col(row, 3, "existing")?;
        let existing = match existing {
            Some(id) => Some(id),
            // The key's holder committed after this statement's snapshot.
            None => find_unique(client, sql, &tasks[slot]).await?,
        };
        match existing {
            Some(id) => {
                out[slot] = Some(Enqueued {
                    id: task_id(id)?,
                    duplicate: true,
                })
            }
            None => unresolved.push(slot),
        }
    }
    Ok(unresolved)
}

/// The task holding (or that last held) `task`'s unique key, read afresh.
async fn find_unique(
    client: &Client,
    sql: &Statements,
    task: &NewTask,
) -> Result<Option<i64>, Error> {
    let Some(key) = &task.unique_key else {
        return Err(Error::backend_other(
            "postgres: enqueueing: a task without a unique key was not inserted",
        ));
    };
    let row = client
        .query_opt(&sql.find_unique, &[&task.queue, key])
        .await
        .map_err(|e| db("enqueueing (reading a unique key's holder)", e))?;
    row.map(|r| col(&r, 0, "id")).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timeouts_round_up_to_milliseconds() {
        assert_eq!(timeout_ms(Duration::from_secs(7)), 7000);
        assert_eq!(timeout_ms(Duration::from_micros(1)), 1);
        assert_eq!(timeout_ms(Duration::ZERO), 0);
        assert_eq!(timeout_ms(Duration::MAX), i64::MAX);
    }

    #[test]
    fn oversized_attempt_counts_are_refused() {
        let t = NewTask::new("h", Vec::new()).max_attempts(u32::MAX);
        assert!(matches!(validate(&[t]), Err(Error::InvalidConfig(_))));
        let bad = NewTask::new("", Vec::new());
        assert!(matches!(validate(&[bad]), Err(Error::InvalidConfig(_))));
    }
}
