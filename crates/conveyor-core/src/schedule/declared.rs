//! A schedule declared as data: a `[schedules.NAME]` table of
//! `conveyor.toml`, or the JSON the HTTP API and the CLI send, read into a
//! [`Schedule`].
//!
//! ```toml
//! [schedules.nightly-report]
//! cron = "30 2 * * *"            # or: every = "15m"
//! timezone = "Europe/Paris"      # an IANA name; UTC when absent
//! handler = "report"
//! params = { day = "yesterday" } # any JSON; null when absent
//! queue = "reports"
//! misfire = "skip"               # skip | once | all
//! overlap = "allow"              # allow | skip | queue
//! grace = "1m"                   # how late a fire is still on time
//! ```
//!
//! The task options `priority`, `attempts`, `timeout`, `keep` and
//! `ordering_key` read as a workflow task's do. A fire's unique key is its
//! own (the schedule and the fire time), and its time is the fire time, so
//! `unique_key` and `delay` are refused; so is any unknown field, so that
//! a misspelt option is an error rather than ignored.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Misfire, Overlap, Timing};
use crate::{Error, NewTask, Timestamp};

/// How late a fire may be and still be on time when a schedule says
/// nothing ([`Schedule::grace`]): longer than a leader's failover, so the
/// first fire after one is late rather than skipped.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);

/// A schedule: what each fire enqueues, and when it fires.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Its name, unique in its store.
    pub name: String,
    /// When it fires.
    pub timing: Timing,
    /// The task each fire enqueues (under the fire's unique key).
    pub task: NewTask,
    /// What becomes of the fire times missed while no leader fired.
    pub misfire: Misfire,
    /// What a fire does while the previous fire's task has not ended.
    pub overlap: Overlap,
    /// How late a fire may be and still be on time.
    pub grace: Duration,
    /// Declared paused: it fires only once resumed.
    pub paused: bool,
    /// The declaration it was read from (as stored and shown).
    declared: Value,
}

/// The declaration as sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Declared {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    every: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timezone: Option<String>,
    handler: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    params: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    priority: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keep: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ordering_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    misfire: Option<Misfire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    overlap: Option<Overlap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grace: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    paused: bool,
}

fn bad(name: &str, why: impl std::fmt::Display) -> Error {
    Error::InvalidConfig(format!("schedule {name:?}: {why}"))
}

fn duration(name: &str, field: &str, text: &str) -> Result<Duration, Error> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        bad(
            name,
            format!("{field} {text:?}: {e} (try 500ms, 30s, 5m, 1h)"),
        )
    })
}

impl Schedule {
    /// Schedule `name` declared as `value` (see the module header).
    pub fn declared(name: &str, value: Value) -> Result<Schedule, Error> {
        crate::durable_task::check_name("a schedule's name", name).map_err(Error::InvalidConfig)?;
        let d: Declared =
            serde_json::from_value(value.clone()).map_err(|e| bad(name, e.to_string()))?;
        let timing = match (&d.cron, &d.every) {
            (Some(cron), None) => Timing::cron(cron, d.timezone.as_deref()),
            (None, Some(every)) if d.timezone.is_none() => Timing::every(every),
            (None, Some(_)) => {
                return Err(bad(
                    name,
                    "timezone goes with cron; an interval counts real time",
                ))
            }
            _ => return Err(bad(name, "give one of cron and every")),
        }
        .map_err(|e| bad(name, e))?;
        if d.handler.trim().is_empty() {
            return Err(bad(name, "handler is empty"));
        }
        let params = d.params.clone().unwrap_or(Value::Null);
        let mut task = NewTask::new(d.handler.clone(), params.to_string().into_bytes());
        if let Some(q) = &d.queue {
            task = task.queue(q.clone());
        }
        if let Some(p) = d.priority {
            task = task.priority(p);
        }
        if let Some(n) = d.attempts {
            task = task.max_attempts(n);
        }
        if let Some(t) = &d.timeout {
            task = task.timeout(duration(name, "timeout", t)?);
        }
        if let Some(k) = &d.keep {
            task = task.keep(duration(name, "keep", k)?);
        }
        if let Some(key) = &d.ordering_key {
            task = task.ordering_key(key.clone());
        }
        let grace = match &d.grace {
            Some(g) => duration(name, "grace", g)?,
            None => DEFAULT_GRACE,
        };
        let schedule = Schedule {
            name: name.to_string(),
            timing,
            misfire: d.misfire.unwrap_or_default(),
            overlap: d.overlap.unwrap_or_default(),
            grace,
            paused: d.paused,
            declared: serde_json::to_value(&d).unwrap_or(value),
            task,
        };
        // What an enqueue would refuse, refused now, with a sample fire.
        schedule
            .fire(Timestamp(0))
            .validate()
            .map_err(|e| bad(name, e))?;
        Ok(schedule)
    }

    /// The declaration, as stored and shown (the fields given, normalised).
    pub fn to_value(&self) -> Value {
        self.declared.clone()
    }

    /// The declaration as JSON bytes, as a store keeps it.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.declared).unwrap_or_default()
    }

    /// Schedule `name` read back from the JSON a store kept; a declaration
    /// that no longer reads is an error naming the schedule.
    ///
    /// The leader reads every due schedule at each pass, so what was read
    /// is kept (by name, with the bytes it was read from) and read again
    /// only when the bytes differ.
    pub fn from_json(name: &str, json: &[u8]) -> Result<Schedule, Error> {
        if let Some(kept) = read_back::get(name, json) {
            return Ok(kept);
        }
        let schedule = Self::parse_json(name, json)?;
        read_back::put(&schedule, json);
        Ok(schedule)
    }

    fn parse_json(name: &str, json: &[u8]) -> Result<Schedule, Error> {
        let value = serde_json::from_slice(json).map_err(|e| {
            Error::backend(
                crate::BackendErrorKind::Data,
                format!("schedule {name:?}'s stored declaration does not read: {e}"),
            )
        })?;
        Schedule::declared(name, value)
    }

    /// The task fire time `at` enqueues: the schedule's, due at `at`, under
    /// the fire's unique key.
    pub fn fire(&self, at: Timestamp) -> NewTask {
        let mut task = self.task.clone();
        task.run_at = Some(at);
        task.unique_key = Some(super::fire_key(&self.name, at));
        task
    }
}

/// The declarations [`Schedule::from_json`] read, by name, with the bytes
/// they were read from; cleared when it holds more than [`read_back::MOST`].
mod read_back {
    use std::collections::HashMap;
    use std::sync::{Mutex, PoisonError};

    use super::Schedule;

    /// The most declarations kept.
    pub(super) const MOST: usize = 10_000;

    type Kept = HashMap<String, (Vec<u8>, Schedule)>;

    static KEPT: Mutex<Option<Kept>> = Mutex::new(None);

    pub(super) fn get(name: &str, json: &[u8]) -> Option<Schedule> {
        let kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
        let (bytes, schedule) = kept.as_ref()?.get(name)?;
        (bytes.as_slice() == json).then(|| schedule.clone())
    }

    pub(super) fn put(schedule: &Schedule, json: &[u8]) {
        let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
        let map = kept.get_or_insert_with(HashMap::new);
        if map.len() >= MOST {
            map.clear();
        }
        map.insert(schedule.name.clone(), (json.to_vec(), schedule.clone()));
    }
}
