//! `conveyor schedule list|add|remove|pause|resume|trigger`: the backend's
//! periodic schedules (`conveyor::durable::schedule`), fired by the worker
//! that leads the `schedules` role.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use conveyor::durable::schedule::{Schedule, ScheduleRecord};
use conveyor::durable::Backend;
use serde_json::{json, Map, Value};

use crate::cli::{ScheduleAddArgs, ScheduleCommand};
use crate::show_cmd::time;

/// Exit status when no schedule has the name.
const UNKNOWN: u8 = 5;

/// Runs one `conveyor schedule` command.
pub async fn run(backend: Arc<dyn Backend>, cmd: ScheduleCommand) -> anyhow::Result<ExitCode> {
    let part = backend.schedules()?;
    let unknown = |name: &str| {
        eprintln!("conveyor: no schedule named {name:?}");
        Ok(ExitCode::from(UNKNOWN))
    };
    match cmd {
        ScheduleCommand::List { json } => {
            let all = part.schedules().await?;
            if json {
                let rows: Vec<Value> = all.iter().map(record_json).collect();
                println!("{}", Value::Array(rows));
            } else {
                print_table(&all);
            }
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCommand::Add(args) => {
            let schedule = declared(args)?;
            let record = part.put_schedule(&schedule).await?;
            println!(
                "schedule {:?}: {}, next fire {}",
                record.schedule.name,
                record.schedule.timing.describe(),
                record.next_fire.map_or("never".to_string(), time)
            );
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCommand::Remove { name } => {
            if !part.remove_schedule(&name).await? {
                return unknown(&name);
            }
            println!("schedule {name:?} removed");
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCommand::Pause { name } => {
            match part.pause_schedule(&name, true).await? {
                Some(_) => println!("schedule {name:?} paused"),
                None => return unknown(&name),
            }
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCommand::Resume { name } => {
            match part.pause_schedule(&name, false).await? {
                Some(r) => println!(
                    "schedule {name:?} resumed, next fire {}",
                    r.next_fire.map_or("never".to_string(), time)
                ),
                None => return unknown(&name),
            }
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCommand::Trigger { name } => match part.trigger_schedule(&name).await? {
            Some(task) => {
                println!("{}", task.0);
                Ok(ExitCode::SUCCESS)
            }
            None => unknown(&name),
        },
    }
}

/// The schedule the flags (or `--json`) declare.
fn declared(args: Box<ScheduleAddArgs>) -> anyhow::Result<Schedule> {
    let value = match args.json {
        Some(text) => serde_json::from_str(&text).context("--json is not JSON")?,
        None => {
            let mut d = Map::new();
            for (key, v) in [
                ("cron", args.cron),
                ("every", args.every),
                ("timezone", args.timezone),
                ("handler", args.handler),
                ("queue", args.queue),
                ("misfire", args.misfire),
                ("overlap", args.overlap),
            ] {
                if let Some(v) = v {
                    d.insert(key.to_string(), Value::String(v));
                }
            }
            if let Some(p) = args.params {
                let params: Value = serde_json::from_str(&p).context("--params is not JSON")?;
                d.insert("params".to_string(), params);
            }
            Value::Object(d)
        }
    };
    Ok(Schedule::declared(&args.name, value)?)
}

fn record_json(r: &ScheduleRecord) -> Value {
    json!({
        "name": r.schedule.name,
        "timing": r.schedule.timing.describe(),
        "declared": r.schedule.to_value(),
        "paused": r.paused,
        "next_fire": r.next_fire.map(time),
        "last_fire": r.last_fire.map(time),
        "last_task": r.last_task.map(|t| t.0),
        "missed": r.missed,
    })
}

fn print_table(all: &[ScheduleRecord]) {
    if all.is_empty() {
        println!("no schedules");
        return;
    }
    println!(
        "{:<20} {:<32} {:<14} {:<7} {:<24} {:<24} MISSED",
        "NAME", "TIMING", "HANDLER", "STATE", "NEXT FIRE", "LAST FIRE"
    );
    for r in all {
        println!(
            "{:<20} {:<32} {:<14} {:<7} {:<24} {:<24} {}",
            r.schedule.name,
            r.schedule.timing.describe(),
            r.schedule.task.handler,
            if r.paused { "paused" } else { "active" },
            r.next_fire.map_or("-".to_string(), time),
            r.last_fire.map_or("-".to_string(), time),
            r.missed
        );
    }
}
