//! `conveyor.toml`: the worker settings and the command each handler runs.
//!
//! ```toml
//! [worker]
//! queues = ["default"]      # reserved in this order of preference
//! slots = 8                 # tasks at once
//! lease = "30s"
//! grace = "30s"
//! keep_completed = "1d"     # completed tasks and their results are kept this long
//! keep_dead = "7d"          # dead letters this long
//!
//! [handlers.resize]
//! program = "convert"
//! args = ["{src}", "-resize", "{size}", "{dst}"]
//! lane = "process"          # commands run as child processes
//! concurrency = 2           # at most this many at once, across all workers
//! rate = "10/s"             # and at most this rate of starts (global too)
//! burst = 5
//! retries = 3               # attempts after the first
//! backoff = "1s"            # first backoff step (doubles, capped at 5 minutes)
//! timeout = "5m"            # the child's process group is killed after it
//! keep_completed = "2h"     # its finished tasks kept this long (over [worker]'s)
//! keep_dead = "30d"         # its dead letters this long (a task's own keep wins)
//! env = { LANG = "C" }
//!
//! [handlers.add]                  # a persistent handler: long-lived children
//! program = "python3"             # answer task after task over stdin/stdout
//! args = ["tasks.py"]
//! persistent = true
//! processes = 4                   # children at once (default: concurrency, else slots)
//! max_tasks_per_child = 1000      # replace a child after this many tasks
//! max_memory = "300 MiB"          # replace a child above this resident size
//!
//! [python]                        # the @app.task functions of a Python app
//! app = "tasks:app"               # MODULE:APP (conveyor's Python package)
//! processes = 4                   # its children (default: the core count)
//!
//! [schedules.nightly-report]      # a periodic task (docs/schedules.md)
//! cron = "30 2 * * *"             # or: every = "15m"
//! timezone = "Europe/Paris"
//! handler = "resize"
//! params = { src = "a.png", size = "64x64", dst = "b.png" }
//! misfire = "skip"                # skip | once | all
//! overlap = "allow"               # allow | skip | queue
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::template;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Worker settings.
    #[serde(default)]
    pub worker: WorkerSection,
    /// A Python app whose tasks are handlers too.
    pub python: Option<PythonSection>,
    /// Handlers by name.
    #[serde(default)]
    pub handlers: BTreeMap<String, HandlerSection>,
    /// Periodic schedules by name, each as `conveyor::durable::schedule`
    /// reads a declaration (checked when the file is read: [`Config::schedules`]).
    #[serde(default)]
    pub schedules: BTreeMap<String, toml::Value>,
}

/// `[python]`: serve the tasks of an app made with conveyor's Python package.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonSection {
    /// `MODULE:APP`, imported from the worker's directory.
    pub app: String,
    /// The interpreter (default `$CONVEYOR_PYTHON`, else `python3`).
    pub interpreter: Option<String>,
    /// Children at once, shared by all the app's tasks (default: the core count).
    pub processes: Option<usize>,
    /// Replace a child after this many tasks.
    pub max_tasks_per_child: Option<u64>,
    /// Replace a child whose resident memory passes this size, e.g. `300 MiB`.
    pub max_memory: Option<String>,
}

/// `[worker]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSection {
    /// Queues to reserve from.
    pub queues: Option<Vec<String>>,
    /// Tasks at once.
    pub slots: Option<usize>,
    /// Lease length.
    #[serde(default, with = "humantime_serde_opt")]
    pub lease: Option<Duration>,
    /// Grace period on stop.
    #[serde(default, with = "humantime_serde_opt")]
    pub grace: Option<Duration>,
    /// Poll interval while idle.
    #[serde(default, with = "humantime_serde_opt")]
    pub poll: Option<Duration>,
    /// How long completed and cancelled tasks (and results) are kept.
    #[serde(default, with = "humantime_serde_opt")]
    pub keep_completed: Option<Duration>,
    /// How long dead-lettered tasks are kept.
    #[serde(default, with = "humantime_serde_opt")]
    pub keep_dead: Option<Duration>,
}

/// `[handlers.NAME]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerSection {
    /// The program (looked up in PATH).
    pub program: String,
    /// Argument templates (see the `template` module).
    #[serde(default)]
    pub args: Vec<String>,
    /// Lane: only `process` (commands run as child processes).
    pub lane: Option<String>,
    /// Per-handler concurrency: global across workers when the backend stores
    /// handler limits, else on this worker.
    pub concurrency: Option<u32>,
    /// Rate of starts, e.g. `10/s` (global like `concurrency`).
    pub rate: Option<String>,
    /// Burst of the rate.
    pub burst: Option<u32>,
    /// Retries after the first attempt.
    pub retries: Option<u32>,
    /// First backoff step.
    #[serde(default, with = "humantime_serde_opt")]
    pub backoff: Option<Duration>,
    /// Time limit of one attempt.
    #[serde(default, with = "humantime_serde_opt")]
    pub timeout: Option<Duration>,
    /// How long its completed and cancelled tasks are kept (over the
    /// worker's; a task's own keep wins).
    #[serde(default, with = "humantime_serde_opt")]
    pub keep_completed: Option<Duration>,
    /// How long its dead-lettered tasks are kept (over the worker's).
    #[serde(default, with = "humantime_serde_opt")]
    pub keep_dead: Option<Duration>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Params JSON written to the child's stdin (default false).
    #[serde(default)]
    pub stdin_params: bool,
    /// Long-lived children fed task after task over the line protocol,
    /// instead of a process per task (default false).
    #[serde(default)]
    pub persistent: bool,
    /// Persistent: children at once (default: `concurrency`, else the slots).
    pub processes: Option<usize>,
    /// Persistent: replace a child after this many tasks.
    pub max_tasks_per_child: Option<u64>,
    /// Persistent: replace a child whose resident memory passes this size,
    /// e.g. `300 MiB`.
    pub max_memory: Option<String>,
}

impl HandlerSection {
    /// `max_memory` in bytes.
    pub fn max_memory_bytes(&self) -> anyhow::Result<Option<u64>> {
        size_bytes(self.max_memory.as_deref())
    }
}

/// A size such as `300 MiB` in bytes.
pub fn size_bytes(size: Option<&str>) -> anyhow::Result<Option<u64>> {
    size.map(|s| {
        s.parse::<bytesize::ByteSize>()
            .map(|b| b.as_u64())
            .map_err(|e| anyhow::anyhow!("max_memory {s:?}: {e} (try \"300 MiB\")"))
    })
    .transpose()
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid config {}", path.display()))
    }

    /// Parses and checks config text.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let cfg: Config = toml::from_str(text)?;
        if cfg.handlers.is_empty() && cfg.python.is_none() {
            bail!(
                "no [handlers.NAME] section and no [python] app: a worker needs at least one \
                 handler"
            );
        }
        if let Some(py) = &cfg.python {
            if py.processes == Some(0) || py.max_tasks_per_child == Some(0) {
                bail!("[python]: processes and max_tasks_per_child must be at least 1");
            }
            size_bytes(py.max_memory.as_deref()).map_err(|e| anyhow::anyhow!("[python]: {e}"))?;
        }
        for (name, h) in &cfg.handlers {
            if h.program.trim().is_empty() {
                bail!("handler {name:?}: program is empty");
            }
            if let Some(lane) = &h.lane {
                if lane != "process" {
                    bail!("handler {name:?}: lane {lane:?}: commands run in the \"process\" lane");
                }
            }
            for a in &h.args {
                template::check(a).map_err(|e| anyhow::anyhow!("handler {name:?}: {e}"))?;
            }
            if let Some(r) = &h.rate {
                r.parse::<conveyor::Rate>()
                    .map_err(|e| anyhow::anyhow!("handler {name:?}: {e}"))?;
            }
            if h.concurrency == Some(0) {
                bail!("handler {name:?}: concurrency must be at least 1");
            }
            check_mode(name, h)?;
        }
        cfg.schedules()?;
        Ok(cfg)
    }

    /// The `[schedules.NAME]` sections, read and checked.
    pub fn schedules(&self) -> anyhow::Result<Vec<conveyor::durable::schedule::Schedule>> {
        self.schedules
            .iter()
            .map(|(name, section)| {
                let value =
                    serde_json::to_value(section).with_context(|| format!("schedule {name:?}"))?;
                Ok(conveyor::durable::schedule::Schedule::declared(
                    name, value,
                )?)
            })
            .collect()
    }
}

/// The keys of one mode are refused in the other: a persistent handler's
/// args are fixed (the params travel in the request line), and the pool's
/// keys mean nothing for a process per task.
fn check_mode(name: &str, h: &HandlerSection) -> anyhow::Result<()> {
    if h.persistent {
        for a in &h.args {
            let tokens =
                template::tokens(a).map_err(|e| anyhow::anyhow!("handler {name:?}: {e}"))?;
            if tokens
                .iter()
                .any(|t| matches!(t, template::Token::Placeholder(_)))
            {
                bail!(
                    "handler {name:?}: arg {a:?} has a placeholder, but a persistent handler's \
                     args are fixed when its children start; its tasks' params arrive as JSON \
                     on stdin"
                );
            }
        }
        if h.stdin_params {
            bail!(
                "handler {name:?}: stdin_params is for a process per task; a persistent \
                 handler always reads its tasks on stdin"
            );
        }
        if h.processes == Some(0) || h.max_tasks_per_child == Some(0) {
            bail!("handler {name:?}: processes and max_tasks_per_child must be at least 1");
        }
        h.max_memory_bytes()
            .map_err(|e| anyhow::anyhow!("handler {name:?}: {e}"))?;
        return Ok(());
    }
    for (key, set) in [
        ("processes", h.processes.is_some()),
        ("max_tasks_per_child", h.max_tasks_per_child.is_some()),
        ("max_memory", h.max_memory.is_some()),
    ] {
        if set {
            bail!("handler {name:?}: {key} applies to persistent handlers: add persistent = true");
        }
    }
    Ok(())
}

/// Optional durations written like `30s`, `500ms`, `5m`.
mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// The fuzz test of this parser (docs/fuzzing.md).
#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    /// `[schedules.NAME]` sections read into schedules; a bad one is
    /// refused when the file is read, naming the schedule and the field.
    #[test]
    fn schedules_are_read_and_checked() {
        let base = "[handlers.echo]\nprogram = \"echo\"\n";
        let cfg = Config::parse(&format!(
            "{base}[schedules.nightly]\ncron = \"30 2 * * *\"\ntimezone = \"Europe/Paris\"\n\
             handler = \"echo\"\nparams = {{ day = \"yesterday\" }}\nmisfire = \"once\"\n\
             [schedules.tick]\nevery = \"30s\"\nhandler = \"echo\"\n"
        ))
        .expect("parses");
        let schedules = cfg.schedules().expect("schedules");
        let names: Vec<&str> = schedules.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["nightly", "tick"]);
        assert_eq!(schedules[0].task.payload, br#"{"day":"yesterday"}"#);
        for (bad, why) in [
            (
                "[schedules.x]\ncron = \"61 * * * *\"\nhandler = \"echo\"\n",
                "cron expression",
            ),
            (
                "[schedules.x]\nevery = \"1m\"\nhandler = \"echo\"\ncolour = \"red\"\n",
                "colour",
            ),
            (
                "[schedules.x]\nhandler = \"echo\"\n",
                "one of cron and every",
            ),
        ] {
            let e = format!(
                "{:#}",
                Config::parse(&format!("{base}{bad}")).expect_err(bad)
            );
            assert!(e.contains(why) && e.contains("\"x\""), "{bad}: {e}");
        }
    }

    #[test]
    fn a_full_config_parses() {
        let cfg = Config::parse(
            r#"
            [worker]
            slots = 4
            lease = "10s"
            keep_completed = "2h"
            keep_dead = "30d"
            [handlers.echo]
            program = "echo"
            args = ["{msg}"]
            rate = "5/s"
            burst = 2
            retries = 2
            timeout = "1m"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.worker.slots, Some(4));
        assert_eq!(cfg.worker.lease, Some(Duration::from_secs(10)));
        assert_eq!(cfg.worker.keep_completed, Some(Duration::from_secs(7200)));
        assert_eq!(cfg.worker.keep_dead, Some(Duration::from_secs(30 * 86400)));
        assert_eq!(cfg.handlers["echo"].timeout, Some(Duration::from_secs(60)));
    }

    #[test]
    fn mistakes_are_named() {
        let e = Config::parse("[handlers.x]\nprogram = \"a\"\nargs = [\"{oops\"]").unwrap_err();
        assert!(format!("{e:#}").contains("unclosed"), "{e:#}");
        let e = Config::parse("[handlers.x]\nprogram = \"a\"\nlane = \"cpu\"").unwrap_err();
        assert!(format!("{e:#}").contains("process"), "{e:#}");
        let e = Config::parse("[handlers.x]\nprogram = \"a\"\nrtry = 1").unwrap_err();
        assert!(format!("{e:#}").contains("rtry"), "{e:#}");
        let e = Config::parse("[worker]\nslots = 1").unwrap_err();
        assert!(format!("{e:#}").contains("handlers"), "{e:#}");
        let e = Config::parse("[handlers.x]\nprogram = \"a\"\nrate = \"fast\"").unwrap_err();
        assert!(format!("{e:#}").contains("rate"), "{e:#}");
    }

    #[test]
    fn a_python_app_alone_is_a_worker() {
        let cfg = Config::parse("[python]\napp = \"tasks:app\"\nprocesses = 3").unwrap();
        assert!(cfg.handlers.is_empty());
        assert_eq!(
            cfg.python.as_ref().map(|p| p.app.as_str()),
            Some("tasks:app")
        );
        for (text, needle) in [
            ("[python]\napp = \"t:a\"\nprocesses = 0", "at least 1"),
            (
                "[python]\napp = \"t:a\"\nmax_memory = \"lots\"",
                "max_memory",
            ),
            ("[python]\nap = \"t:a\"", "ap"),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert!(format!("{e:#}").contains(needle), "{text}: {e:#}");
        }
    }

    #[test]
    fn persistent_handlers_have_their_own_keys() {
        let cfg = Config::parse(
            "[handlers.x]\nprogram = \"python3\"\nargs = [\"t.py\"]\npersistent = true\n\
             processes = 2\nmax_tasks_per_child = 10\nmax_memory = \"300 MiB\"",
        )
        .unwrap();
        let h = &cfg.handlers["x"];
        assert_eq!(h.max_memory_bytes().unwrap(), Some(300 << 20));
        for (text, needle) in [
            ("args = [\"{n}\"]\npersistent = true", "placeholder"),
            ("persistent = true\nstdin_params = true", "stdin_params"),
            ("processes = 2", "persistent = true"),
            ("persistent = true\nmax_memory = \"lots\"", "max_memory"),
            ("persistent = true\nprocesses = 0", "at least 1"),
        ] {
            let e = Config::parse(&format!("[handlers.x]\nprogram = \"a\"\n{text}")).unwrap_err();
            assert!(format!("{e:#}").contains(needle), "{text}: {e:#}");
        }
    }
}
