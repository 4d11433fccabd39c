//! `conveyor.toml`: the worker settings and the command each handler runs.
//!
//! ```toml
//! [worker]
//! queues = ["default"]      # reserved in this order of preference
//! slots = 8                 # tasks at once
//! lease = "30s"
//! grace = "30s"
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
//! env = { LANG = "C" }
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::template;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Worker settings.
    #[serde(default)]
    pub worker: WorkerSection,
    /// Handlers by name.
    pub handlers: BTreeMap<String, HandlerSection>,
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
}

/// `[handlers.NAME]`.
#[derive(Debug, Deserialize)]
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
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Params JSON written to the child's stdin (default false).
    #[serde(default)]
    pub stdin_params: bool,
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
        if cfg.handlers.is_empty() {
            bail!("no [handlers.NAME] section: a worker needs at least one handler");
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
        }
        Ok(cfg)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_config_parses() {
        let cfg = Config::parse(
            r#"
            [worker]
            slots = 4
            lease = "10s"
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
}
