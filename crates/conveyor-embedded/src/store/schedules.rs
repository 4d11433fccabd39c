//! Schedules in the file (`schedules`, schema version 14): one row per
//! schedule with its declaration (JSON) and where its firing stands. A due
//! schedule is fired in the write transaction that enqueues its fires, so
//! however many processes fire at once, the file's write lock lets one
//! of them move its next fire on, and the others then find it not due.

use conveyor_core::schedule::{enqueued, Fired, Schedule, ScheduleRecord};
use conveyor_core::{Error, NewTask, TaskId, Timestamp};
use rusqlite::{params, OptionalExtension, Row};

use super::Store;
use crate::error::db_err;
use crate::row::{id_param, state_from_code, task_id};

/// The columns a record is read from, in [`record`]'s order.
const COLUMNS: &str = "name, declared, paused, next_fire, last_fire, last_task, missed";

/// A row as read: the name and declaration, the rest of the record.
type Stored = (
    String,
    Vec<u8>,
    bool,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    i64,
);

fn stored(r: &Row<'_>) -> rusqlite::Result<Stored> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

/// The record a row holds; a declaration that no longer reads is an error
/// naming the schedule.
fn record(row: Stored) -> Result<ScheduleRecord, Error> {
    let (name, declared, paused, next, last, task, missed) = row;
    Ok(ScheduleRecord {
        schedule: Schedule::from_json(&name, &declared)?,
        paused,
        next_fire: next.map(Timestamp),
        last_fire: last.map(Timestamp),
        last_task: task.map(task_id).transpose()?,
        missed: u64::try_from(missed).unwrap_or(0),
    })
}

impl Store {
    fn read_schedule(&mut self, name: &str) -> Result<Option<ScheduleRecord>, Error> {
        let row = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM schedules WHERE name = ?1"))
            .and_then(|mut s| s.query_row([name], stored).optional())
            .map_err(db_err)?;
        row.map(record).transpose()
    }

    fn write_schedule(&mut self, r: &ScheduleRecord) -> Result<(), Error> {
        let declared = r.schedule.to_json();
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO schedules (name, declared, paused, next_fire, last_fire, \
                 last_task, missed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    r.schedule.name,
                    declared,
                    r.paused,
                    r.next_fire.map(|t| t.0),
                    r.last_fire.map(|t| t.0),
                    r.last_task.and_then(id_param),
                    i64::try_from(r.missed).unwrap_or(i64::MAX)
                ])
            })
            .map_err(db_err)?;
        Ok(())
    }

    /// Stores `schedule` (see `Schedules::put_schedule`).
    pub(crate) fn put_schedule(&mut self, schedule: &Schedule) -> Result<ScheduleRecord, Error> {
        let kept = self.read_schedule(&schedule.name)?;
        let record = ScheduleRecord::declare(schedule, kept.as_ref(), self.now());
        self.write_schedule(&record)?;
        Ok(record)
    }

    /// Removes schedule `name`.
    pub(crate) fn remove_schedule(&mut self, name: &str) -> Result<bool, Error> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM schedules WHERE name = ?1")
            .and_then(|mut s| s.execute([name]))
            .map_err(db_err)?;
        Ok(n > 0)
    }

    /// Pauses or resumes schedule `name`.
    pub(crate) fn pause_schedule(
        &mut self,
        name: &str,
        paused: bool,
    ) -> Result<Option<ScheduleRecord>, Error> {
        let Some(mut record) = self.read_schedule(name)? else {
            return Ok(None);
        };
        record.set_paused(paused, self.now());
        self.write_schedule(&record)?;
        Ok(Some(record))
    }

    /// Schedule `name`.
    pub(crate) fn schedule(&mut self, name: &str) -> Result<Option<ScheduleRecord>, Error> {
        self.read_schedule(name)
    }

    /// Every schedule, by name.
    pub(crate) fn schedules(&mut self) -> Result<Vec<ScheduleRecord>, Error> {
        let rows: Vec<Stored> = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM schedules ORDER BY name"))
            .and_then(|mut s| s.query_map([], stored)?.collect())
            .map_err(db_err)?;
        rows.into_iter().map(record).collect()
    }

    /// The earliest next fire of a schedule not paused.
    pub(crate) fn next_fire(&mut self) -> Result<Option<Timestamp>, Error> {
        let next: Option<i64> = self
            .conn
            .prepare_cached("SELECT MIN(next_fire) FROM schedules WHERE paused = 0")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(db_err)?;
        Ok(next.map(Timestamp))
    }

    /// Whether task `id` has not ended.
    fn still_running(&mut self, id: TaskId) -> Result<bool, Error> {
        let Some(raw) = id_param(id) else {
            return Ok(false);
        };
        let code: Option<i64> = self
            .conn
            .prepare_cached("SELECT state FROM tasks WHERE id = ?1")
            .and_then(|mut s| s.query_row([raw], |r| r.get(0)).optional())
            .map_err(db_err)?;
        match code {
            Some(code) => Ok(!state_from_code(code, raw)?.is_finished()),
            None => Ok(false),
        }
    }

    /// Fires every schedule due at `now` that is not paused, in this
    /// transaction: every due fire enqueued in one batch, then each
    /// schedule's row moved on.
    pub(crate) fn fire_due(&mut self, now: Timestamp) -> Result<Vec<Fired>, Error> {
        let rows: Vec<Stored> = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM schedules WHERE paused = 0 AND next_fire <= ?1 \
                 ORDER BY next_fire"
            ))
            .and_then(|mut s| s.query_map([now.0], stored)?.collect())
            .map_err(db_err)?;
        let mut planned = Vec::new();
        for row in rows {
            // One declaration that no longer reads (written by another
            // version) must not stop the others firing: it is skipped,
            // and logged.
            let name = row.0.clone();
            let record = match record(row) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(schedule = %name, error = %e, "skipping a schedule that does not read");
                    continue;
                }
            };
            let running = match record.watched_task() {
                Some(task) => self.still_running(task)?,
                None => false,
            };
            if let Some(plan) = record.plan(now, running) {
                planned.push((record, plan));
            }
        }
        let fires: Vec<NewTask> = planned
            .iter()
            .flat_map(|(r, plan)| plan.fires.iter().map(|&at| r.schedule.fire(at)))
            .collect();
        let tasks = self.enqueue_many(fires)?.into_iter().map(|e| e.id);
        let (fired, moved) = enqueued(planned, tasks)?;
        for record in &moved {
            self.move_on(record)?;
        }
        Ok(fired)
    }

    /// Writes where `r`'s firing stands (its declaration unchanged).
    fn move_on(&mut self, r: &ScheduleRecord) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "UPDATE schedules SET next_fire = ?2, last_fire = ?3, last_task = ?4, \
                 missed = ?5 WHERE name = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    r.schedule.name,
                    r.next_fire.map(|t| t.0),
                    r.last_fire.map(|t| t.0),
                    r.last_task.and_then(id_param),
                    i64::try_from(r.missed).unwrap_or(i64::MAX)
                ])
            })
            .map_err(db_err)?;
        Ok(())
    }

    /// Enqueues one fire of schedule `name` now.
    pub(crate) fn trigger_schedule(&mut self, name: &str) -> Result<Option<TaskId>, Error> {
        let Some(mut record) = self.read_schedule(name)? else {
            return Ok(None);
        };
        let fire = record.schedule.fire(self.now());
        let Some(task) = self.enqueue_many(vec![fire])?.pop() else {
            return Ok(None);
        };
        record.last_task = Some(task.id);
        self.move_on(&record)?;
        Ok(Some(task.id))
    }
}
