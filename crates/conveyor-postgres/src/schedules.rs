//! Schedules on PostgreSQL (`schedules`, schema version 13): one row per
//! schedule with its declaration (JSON) and where its firing stands.
//!
//! A due schedule is fired in one transaction: its row is locked (`FOR
//! UPDATE SKIP LOCKED`, so a second leader of the same moment passes it
//! by), its fires are enqueued in that transaction under their fire keys,
//! and its next fire is moved on before the commit. A caller that reads the
//! row after that commit finds it not due; one that waited on the lock
//! finds, at the row's new version, that it no longer matches.

use conveyor_core::schedule::{enqueued, Fired, Schedule, ScheduleRecord};
use conveyor_core::{async_trait, Error, NewTask, Schedules, TaskId, Timestamp};
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use crate::backend::PostgresBackend;
use crate::error::db;
use crate::row::{col, param_id, state, task_id};

/// The columns a record is read from, in [`record`]'s order.
const COLUMNS: &str = "name, declared, paused, next_fire, last_fire, last_task, missed";

/// The record a row holds; a declaration that no longer reads is an error
/// naming the schedule.
fn record(row: &Row) -> Result<ScheduleRecord, Error> {
    let name: String = col(row, 0, "name")?;
    let declared: Vec<u8> = col(row, 1, "declared")?;
    let missed: i64 = col(row, 6, "missed")?;
    Ok(ScheduleRecord {
        schedule: Schedule::from_json(&name, &declared)?,
        paused: col(row, 2, "paused")?,
        next_fire: col::<Option<i64>>(row, 3, "next_fire")?.map(Timestamp),
        last_fire: col::<Option<i64>>(row, 4, "last_fire")?.map(Timestamp),
        last_task: col::<Option<i64>>(row, 5, "last_task")?
            .map(task_id)
            .transpose()?,
        missed: u64::try_from(missed).unwrap_or(0),
    })
}

/// Runs `$body` (an expression using `$tx`, the transaction) in a new
/// transaction on a pooled connection of `$backend`: committed after a
/// success, rolled back after a failure.
macro_rules! in_tx {
    ($backend:expr, $what:expr, |$tx:ident| $body:expr) => {{
        let mut conn = $backend.conn($what).await?;
        let tx = conn.transaction().await.map_err(|e| db($what, e))?;
        let out = {
            let $tx = &tx;
            $body.await
        };
        crate::workflows::end_tx(tx, $what, out).await
    }};
}

impl PostgresBackend {
    /// A statement over the schedules table, `{s}` standing for its name
    /// (and `{t}` for the tasks table's).
    fn schedule_sql(&self, template: &str) -> String {
        let schema = &self.inner.schema;
        template
            .replace("{s}", &schema.table("schedules"))
            .replace("{t}", &schema.table("tasks"))
    }

    /// Schedule `name`, its row locked for the rest of `tx`.
    async fn lock_schedule(
        &self,
        tx: &Transaction<'_>,
        name: &str,
    ) -> Result<Option<ScheduleRecord>, Error> {
        let what = "reading a schedule";
        let sql = self.schedule_sql(&format!(
            "SELECT {COLUMNS} FROM {{s}} WHERE name = $1 FOR UPDATE"
        ));
        let row = tx
            .query_opt(&sql, &[&name])
            .await
            .map_err(|e| db(what, e))?;
        row.as_ref().map(record).transpose()
    }

    /// Writes `r` (inserted, or over the row of its name).
    async fn write_schedule(&self, tx: &Transaction<'_>, r: &ScheduleRecord) -> Result<(), Error> {
        let sql = self.schedule_sql(
            "INSERT INTO {s} (name, declared, paused, next_fire, last_fire, last_task, missed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO UPDATE SET \
             declared = EXCLUDED.declared, paused = EXCLUDED.paused, \
             next_fire = EXCLUDED.next_fire, last_fire = EXCLUDED.last_fire, \
             last_task = EXCLUDED.last_task, missed = EXCLUDED.missed",
        );
        let declared = r.schedule.to_json();
        let missed = i64::try_from(r.missed).unwrap_or(i64::MAX);
        tx.execute(
            &sql,
            &[
                &r.schedule.name,
                &declared,
                &r.paused,
                &r.next_fire.map(|t| t.0),
                &r.last_fire.map(|t| t.0),
                &r.last_task.and_then(param_id),
                &missed,
            ],
        )
        .await
        .map_err(|e| db("writing a schedule", e))?;
        Ok(())
    }

    /// Whether task `id` has not ended.
    async fn still_running(&self, tx: &Transaction<'_>, id: TaskId) -> Result<bool, Error> {
        let Some(raw) = param_id(id) else {
            return Ok(false);
        };
        let sql = self.schedule_sql("SELECT state FROM {t} WHERE id = $1");
        let row = tx
            .query_opt(&sql, &[&raw])
            .await
            .map_err(|e| db("reading a schedule's last task", e))?;
        match row {
            Some(row) => Ok(!state(id, col(&row, 0, "state")?)?.is_finished()),
            None => Ok(false),
        }
    }

    /// Enqueues `fire` in `tx`: its task.
    async fn enqueue_fire(
        &self,
        tx: &Transaction<'_>,
        fire: conveyor_core::NewTask,
    ) -> Result<Option<TaskId>, Error> {
        Ok(self
            .enqueue_in(&**tx, vec![fire])
            .await?
            .pop()
            .map(|e| e.id))
    }

    /// Fires the due schedules of `rows` in `tx`: every due fire enqueued
    /// in one batch, then every schedule moved on in one statement.
    async fn fire_rows(
        &self,
        tx: &Transaction<'_>,
        rows: Vec<Row>,
        now: Timestamp,
    ) -> Result<Vec<Fired>, Error> {
        let mut planned = Vec::new();
        for row in rows {
            // One declaration that no longer reads (written by another
            // version) must not stop the others firing: it is skipped,
            // and logged.
            let record = match record(&row) {
                Ok(r) => r,
                Err(e) => {
                    let name: Option<String> = row.try_get(0).ok();
                    tracing::warn!(schedule = ?name, error = %e, "skipping a schedule that does not read");
                    continue;
                }
            };
            let running = match record.watched_task() {
                Some(task) => self.still_running(tx, task).await?,
                None => false,
            };
            if let Some(plan) = record.plan(now, running) {
                planned.push((record, plan));
            }
        }
        if planned.is_empty() {
            return Ok(Vec::new());
        }
        let fires: Vec<NewTask> = planned
            .iter()
            .flat_map(|(r, plan)| plan.fires.iter().map(|&at| r.schedule.fire(at)))
            .collect();
        let tasks = if fires.is_empty() {
            Vec::new()
        } else {
            self.enqueue_in(&**tx, fires).await?
        };
        let (fired, records) = enqueued(planned, tasks.into_iter().map(|e| e.id))?;
        let mut moved = Moved::default();
        for record in &records {
            moved.push(record);
        }
        let sql = self.schedule_sql(
            "UPDATE {s} AS s SET next_fire = u.next_fire, last_fire = u.last_fire, \
             last_task = u.last_task, missed = u.missed \
             FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[]) \
             AS u(name, next_fire, last_fire, last_task, missed) WHERE s.name = u.name",
        );
        tx.execute(
            &sql,
            &[
                &moved.names,
                &moved.next,
                &moved.last,
                &moved.task,
                &moved.missed,
            ],
        )
        .await
        .map_err(|e| db("moving schedules on", e))?;
        Ok(fired)
    }
}

/// Where the schedules a pass fired stand, as the columns of one update.
#[derive(Default)]
struct Moved {
    names: Vec<String>,
    next: Vec<Option<i64>>,
    last: Vec<Option<i64>>,
    task: Vec<Option<i64>>,
    missed: Vec<i64>,
}

impl Moved {
    fn push(&mut self, r: &ScheduleRecord) {
        self.names.push(r.schedule.name.clone());
        self.next.push(r.next_fire.map(|t| t.0));
        self.last.push(r.last_fire.map(|t| t.0));
        self.task.push(r.last_task.and_then(param_id));
        self.missed
            .push(i64::try_from(r.missed).unwrap_or(i64::MAX));
    }
}

#[async_trait]
impl Schedules for PostgresBackend {
    async fn put_schedule(&self, schedule: &Schedule) -> Result<ScheduleRecord, Error> {
        let now = self.inner.clock.now();
        in_tx!(self, "storing a schedule", |tx| async {
            let kept = self.lock_schedule(tx, &schedule.name).await?;
            let record = ScheduleRecord::declare(schedule, kept.as_ref(), now);
            self.write_schedule(tx, &record).await?;
            Ok(record)
        })
    }

    async fn remove_schedule(&self, name: &str) -> Result<bool, Error> {
        let what = "removing a schedule";
        let conn = self.conn(what).await?;
        let sql = self.schedule_sql("DELETE FROM {s} WHERE name = $1");
        let n = conn
            .execute(&sql, &[&name])
            .await
            .map_err(|e| db(what, e))?;
        Ok(n > 0)
    }

    async fn pause_schedule(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<Option<ScheduleRecord>, Error> {
        let now = self.inner.clock.now();
        in_tx!(self, "pausing a schedule", |tx| async {
            let Some(mut record) = self.lock_schedule(tx, name).await? else {
                return Ok(None);
            };
            record.set_paused(paused, now);
            self.write_schedule(tx, &record).await?;
            Ok(Some(record))
        })
    }

    async fn schedule(&self, name: &str) -> Result<Option<ScheduleRecord>, Error> {
        let what = "reading a schedule";
        let conn = self.conn(what).await?;
        let sql = self.schedule_sql(&format!("SELECT {COLUMNS} FROM {{s}} WHERE name = $1"));
        let row = conn
            .query_opt(&sql, &[&name])
            .await
            .map_err(|e| db(what, e))?;
        row.as_ref().map(record).transpose()
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, Error> {
        let what = "listing schedules";
        let conn = self.conn(what).await?;
        let sql = self.schedule_sql(&format!("SELECT {COLUMNS} FROM {{s}} ORDER BY name"));
        let rows = conn.query(&sql, &[]).await.map_err(|e| db(what, e))?;
        rows.iter().map(record).collect()
    }

    async fn next_fire(&self) -> Result<Option<Timestamp>, Error> {
        let what = "reading the next fire";
        let conn = self.conn(what).await?;
        let sql = self.schedule_sql("SELECT min(next_fire) FROM {s} WHERE NOT paused");
        let row = conn.query_one(&sql, &[]).await.map_err(|e| db(what, e))?;
        Ok(col::<Option<i64>>(&row, 0, "next_fire")?.map(Timestamp))
    }

    async fn fire_due(&self, now: Timestamp) -> Result<Vec<Fired>, Error> {
        in_tx!(self, "firing schedules", |tx| async {
            let sql = self.schedule_sql(&format!(
                "SELECT {COLUMNS} FROM {{s}} WHERE NOT paused AND next_fire <= $1 \
                     ORDER BY next_fire FOR UPDATE SKIP LOCKED"
            ));
            let rows = tx
                .query(&sql, &[&now.0])
                .await
                .map_err(|e| db("reading the due schedules", e))?;
            self.fire_rows(tx, rows, now).await
        })
    }

    async fn trigger_schedule(&self, name: &str) -> Result<Option<TaskId>, Error> {
        let now = self.inner.clock.now();
        in_tx!(self, "triggering a schedule", |tx| async {
            let Some(mut record) = self.lock_schedule(tx, name).await? else {
                return Ok(None);
            };
            let Some(task) = self.enqueue_fire(tx, record.schedule.fire(now)).await? else {
                return Ok(None);
            };
            record.last_task = Some(task);
            self.write_schedule(tx, &record).await?;
            Ok(Some(task))
        })
    }
}
