//! Schedules on Redis (`lua/sched.lua`): a hash per schedule with its
//! declaration, where its firing stands and a revision, and a sorted set
//! of the due ones by next fire.
//!
//! The leader's pass reads the due schedules, decides each one's fires here
//! (`conveyor_core::schedule::plan`, which reads the last fire's task when
//! the overlap policy needs it), then fires it in one script call that
//! enqueues the fires (each under its fire key) and moves the next fire on
//! only while the schedule is still at the revision read. Two leaders of
//! one moment read one revision; the first call moves it, the second
//! enqueues nothing. Declaring, pausing and resuming write at the revision
//! read too, so none of them undoes a fire made meanwhile.

use conveyor_core::schedule::{Fired, Schedule, ScheduleRecord};
use conveyor_core::{async_trait, Error, ResultStore, Schedules, TaskId, Timestamp};
use redis::Value;

use crate::reply::{self, bad};
use crate::scripts::Op;
use crate::RedisBackend;

/// A schedule as read: its record and revision.
type Read = (ScheduleRecord, u64);

/// Schedules one script call fires at most.
const FIRE_BATCH: usize = 100;

/// One schedule to fire at its revision: its fire times, the next fire and
/// last fire to store (`None`: kept), the fire times it passed over.
struct Firing<'a> {
    schedule: &'a Schedule,
    rev: u64,
    at: &'a [Timestamp],
    next: Option<Timestamp>,
    last: Option<Timestamp>,
    missed: u64,
}

/// An optional number field ('' or nil: none).
fn opt_number(v: Value, what: &str) -> Result<Option<i64>, Error> {
    match reply::opt_bytes(v, what)? {
        None => Ok(None),
        Some(b) if b.is_empty() => Ok(None),
        Some(b) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| bad(format!("{what}: not a number"))),
    }
}

/// One record from its eight values ({name, d, p, n, lf, lt, m, v}).
fn record(values: [Value; 8]) -> Result<Read, Error> {
    let [name, d, p, n, lf, lt, m, v] = values;
    let name = reply::string(name, "a schedule's name")?;
    let what = format!("schedule {name}");
    let declared = reply::bytes(d, what.as_str())?;
    let paused = reply::opt_bytes(p, what.as_str())?.is_some_and(|b| b == b"1");
    let record = ScheduleRecord {
        schedule: Schedule::from_json(&name, &declared)?,
        paused,
        next_fire: opt_number(n, &what)?.map(Timestamp),
        last_fire: opt_number(lf, &what)?.map(Timestamp),
        last_task: opt_number(lt, &what)?
            .map(|id| u64::try_from(id).map(TaskId))
            .transpose()
            .map_err(|_| bad(format!("{what}: a negative task id")))?,
        missed: opt_number(m, &what)?.map_or(0, |m| u64::try_from(m).unwrap_or(0)),
    };
    let rev = opt_number(v, &what)?.ok_or_else(|| bad(format!("{what}: no revision")))?;
    Ok((record, u64::try_from(rev).unwrap_or(0)))
}

/// The records of a flat reply, eight values each; one that does not read
/// is `Err` in its place, so a caller may pass it by.
fn records(v: Value, what: &str) -> Result<Vec<Result<Read, Error>>, Error> {
    let items = reply::array(v, what)?;
    if items.len() % 8 != 0 {
        return Err(bad(format!("{what}: {} values", items.len())));
    }
    let mut out = Vec::with_capacity(items.len() / 8);
    let mut it = items.into_iter();
    while let Ok(values) = <[Value; 8]>::try_from(it.by_ref().take(8).collect::<Vec<_>>()) {
        out.push(record(values));
    }
    Ok(out)
}

/// A timestamp as an argument ('' for none).
fn time_arg(t: Option<Timestamp>) -> String {
    t.map_or(String::new(), |t| t.0.to_string())
}

impl RedisBackend {
    /// One `sched` call in `mode`.
    fn sched_call(&self, mode: &str) -> crate::calls::Call {
        let mut call = self.call(Op::Sched);
        call.arg(self.inner.clock.now().as_millis()).arg(mode);
        call
    }

    /// Schedule `name` and its revision.
    async fn read_schedule(&self, name: &str) -> Result<Option<Read>, Error> {
        let mut call = self.sched_call("get");
        call.arg(name);
        match self.run("reading a schedule", &call).await? {
            Value::Nil | Value::Boolean(false) => Ok(None),
            v => {
                let values: [Value; 8] = reply::array(v, "reading a schedule")?
                    .try_into()
                    .map_err(|_| bad("reading a schedule: a short record"))?;
                record(values).map(Some)
            }
        }
    }

    /// Writes `r` if its schedule is still at `rev` (0: absent); false when
    /// it is not.
    async fn write_schedule(&self, r: &ScheduleRecord, rev: u64) -> Result<bool, Error> {
        let mut call = self.sched_call("put");
        call.arg(&r.schedule.name)
            .arg(rev)
            .arg(r.schedule.to_json())
            .arg(if r.paused { "1" } else { "0" })
            .arg(time_arg(r.next_fire))
            .arg(time_arg(r.last_fire))
            .arg(r.last_task.map_or(String::new(), |t| t.0.to_string()))
            .arg(r.missed);
        let what = "writing a schedule";
        Ok(!matches!(
            self.run(what, &call).await?,
            Value::Nil | Value::Boolean(false)
        ))
    }

    /// Changes schedule `name` as `change` says (`None`: it is absent),
    /// at the revision read, reading again when another write came first.
    async fn change_schedule<F>(
        &self,
        name: &str,
        change: F,
    ) -> Result<Option<ScheduleRecord>, Error>
    where
        F: Fn(Option<ScheduleRecord>) -> Option<ScheduleRecord>,
    {
        loop {
            let kept = self.read_schedule(name).await?;
            let rev = kept.as_ref().map_or(0, |(_, rev)| *rev);
            let Some(record) = change(kept.map(|(r, _)| r)) else {
                return Ok(None);
            };
            if self.write_schedule(&record, rev).await? {
                return Ok(Some(record));
            }
        }
    }

    /// Fires each of `fires` at its revision, in one script call: the
    /// tasks' ids of each, or `None` for one that moved from its revision.
    async fn fire_at_rev(&self, fires: &[Firing<'_>]) -> Result<Vec<Option<Vec<TaskId>>>, Error> {
        let what = "firing schedules";
        let now = self.inner.clock.now();
        let mut call = self.sched_call("fire");
        call.arg(fires.len());
        for f in fires {
            let tasks: Vec<_> = f.at.iter().map(|&at| f.schedule.fire(at)).collect();
            for t in &tasks {
                t.validate()?;
                self.limit.check_params(t)?;
            }
            call.arg(&f.schedule.name)
                .arg(f.rev)
                .arg(time_arg(f.next))
                .arg(time_arg(f.last))
                .arg(f.missed)
                .arg(f.at.len());
            for at in f.at {
                call.arg(at.0);
            }
            crate::task_forms::push(&mut call, &tasks, now);
        }
        let replies = reply::array(self.run(what, &call).await?, what)?;
        if replies.len() != fires.len() {
            return Err(bad(format!(
                "{what}: {} replies for {} schedules",
                replies.len(),
                fires.len()
            )));
        }
        replies
            .into_iter()
            .zip(fires)
            .map(|(r, f)| {
                let mut items = reply::array(r, what)?.into_iter();
                let fired: i64 = reply::number(items.next().unwrap_or(Value::Nil), what)?;
                if fired == 0 {
                    return Ok(None);
                }
                let ids = items
                    .map(|id| reply::number::<u64>(id, what).map(TaskId))
                    .collect::<Result<Vec<_>, _>>()?;
                if ids.len() != f.at.len() {
                    return Err(bad(format!(
                        "{what}: {} ids for {} fires",
                        ids.len(),
                        f.at.len()
                    )));
                }
                Ok(Some(ids))
            })
            .collect()
    }

    /// Whether task `id` has not ended.
    async fn still_running(&self, id: TaskId) -> Result<bool, Error> {
        Ok(self.get(id).await?.is_some_and(|r| !r.state.is_finished()))
    }
}

#[async_trait]
impl Schedules for RedisBackend {
    async fn put_schedule(&self, schedule: &Schedule) -> Result<ScheduleRecord, Error> {
        let now = self.inner.clock.now();
        self.change_schedule(&schedule.name, |kept| {
            Some(ScheduleRecord::declare(schedule, kept.as_ref(), now))
        })
        .await?
        .ok_or_else(|| bad("storing a schedule: nothing stored"))
    }

    async fn remove_schedule(&self, name: &str) -> Result<bool, Error> {
        let mut call = self.sched_call("remove");
        call.arg(name);
        let n: i64 = reply::number(self.run("removing a schedule", &call).await?, "removing")?;
        Ok(n > 0)
    }

    async fn pause_schedule(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<Option<ScheduleRecord>, Error> {
        let now = self.inner.clock.now();
        self.change_schedule(name, |kept| {
            kept.map(|mut r| {
                r.set_paused(paused, now);
                r
            })
        })
        .await
    }

    async fn schedule(&self, name: &str) -> Result<Option<ScheduleRecord>, Error> {
        Ok(self.read_schedule(name).await?.map(|(r, _)| r))
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, Error> {
        let what = "listing schedules";
        let v = self.run(what, &self.sched_call("all")).await?;
        records(v, what)?
            .into_iter()
            .map(|r| r.map(|(r, _)| r))
            .collect()
    }

    async fn next_fire(&self) -> Result<Option<Timestamp>, Error> {
        let what = "reading the next fire";
        match self.run(what, &self.sched_call("next")).await? {
            Value::Nil | Value::Boolean(false) => Ok(None),
            v => Ok(Some(Timestamp(reply::number(v, what)?))),
        }
    }

    async fn fire_due(&self, now: Timestamp) -> Result<Vec<Fired>, Error> {
        let what = "reading the due schedules";
        let mut call = self.call(Op::Sched);
        call.arg(now.as_millis()).arg("due");
        let due = records(self.run(what, &call).await?, what)?;
        let mut planned = Vec::new();
        for read in due {
            // One declaration that no longer reads (written by another
            // version) must not stop the others firing: it is skipped,
            // and logged.
            let (record, rev) = match read {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a schedule that does not read");
                    continue;
                }
            };
            let running = match record.watched_task() {
                Some(task) => self.still_running(task).await?,
                None => false,
            };
            if let Some(plan) = record.plan(now, running) {
                planned.push((record, rev, plan));
            }
        }
        let mut fired = Vec::new();
        for chunk in planned.chunks(FIRE_BATCH) {
            let firings: Vec<Firing<'_>> = chunk
                .iter()
                .map(|(record, rev, plan)| Firing {
                    schedule: &record.schedule,
                    rev: *rev,
                    at: &plan.fires,
                    next: plan.next,
                    last: plan.fires.last().copied(),
                    missed: plan.missed,
                })
                .collect();
            for (f, ids) in firings.iter().zip(self.fire_at_rev(&firings).await?) {
                // None: another leader fired it from the same revision.
                let Some(ids) = ids else { continue };
                fired.extend(f.at.iter().zip(ids).map(|(&at, task)| Fired {
                    name: f.schedule.name.clone(),
                    at,
                    task,
                }));
            }
        }
        Ok(fired)
    }

    async fn trigger_schedule(&self, name: &str) -> Result<Option<TaskId>, Error> {
        loop {
            let Some((record, rev)) = self.read_schedule(name).await? else {
                return Ok(None);
            };
            let now = self.inner.clock.now();
            let firing = Firing {
                schedule: &record.schedule,
                rev,
                at: &[now],
                next: record.next_fire,
                last: None,
                missed: 0,
            };
            if let Some(Some(ids)) = self.fire_at_rev(&[firing]).await?.pop() {
                return Ok(ids.first().copied());
            }
        }
    }
}
