//! `conveyor run`'s options, as clap sees them.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use conveyor::Rate;

use crate::units::{parse_duration, parse_size};

/// `conveyor run [OPTIONS] -- PROGRAM [ARGS...]`: run PROGRAM once per input item.
///
/// Placeholders in PROGRAM and ARGS: {} the item, {1} {2}… its fields, {.field}
/// a JSON field (--json), {#} its number. Without any, the item is appended.
/// Each expands into one argument; no shell is involved unless --shell.
///
/// Exit status: 0 when every item succeeded; 1–100 the number of failed items
/// (101: more than 100); 130/143 interrupted by SIGINT/SIGTERM; 255 when conveyor
/// itself could not go on (bad option, unreadable input, state file error).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Read items from a source instead of stdin: kafka://HOST:PORT/TOPIC?group=G
    /// runs the command per record of the topic (see docs/run.md).
    #[arg(long, value_name = "URL", conflicts_with = "input")]
    pub from: Option<String>,
    /// With --from kafka://: key (default), partition or unordered.
    #[arg(long, requires = "from")]
    pub ordering: Option<String>,
    /// Read items from FILE instead of stdin.
    #[arg(long, short = 'a', value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Items are JSON Lines: {.field} reads a field; a line that is not JSON fails.
    #[arg(long)]
    pub json: bool,
    /// Items are separated by NUL bytes (as from `find -print0`), not newlines.
    #[arg(long, short = '0', conflicts_with = "json")]
    pub null: bool,
    /// Split items into the fields {1}, {2}… on this string instead of whitespace.
    #[arg(long, short = 'd')]
    pub delimiter: Option<String>,
    /// Items running at once [default: the number of cores].
    #[arg(long, short = 'j', value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub jobs: Option<u32>,
    /// At most this many starts per unit: 20/s, 100/m, 5/h, 10/500ms.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<Rate>,
    /// Starts allowed at once before --rate applies (default 1).
    #[arg(long, requires = "rate")]
    pub burst: Option<u32>,
    /// Attempts after the first when an item fails or times out.
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
    /// First wait before a retry; doubles each time (up to 60s), with jitter.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub retry_delay: Duration,
    /// Time limit of one attempt: the program and its process group are killed.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Print each item's output in input order (like GNU parallel -k).
    #[arg(long, short = 'k')]
    pub keep_order: bool,
    /// Stop starting items after the first failure (running ones finish).
    #[arg(long, conflicts_with = "max_failures")]
    pub halt_on_error: bool,
    /// Stop starting items after this many failures.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_failures: Option<u64>,
    /// Write one JSON object per finished item to FILE (appended with --state).
    #[arg(long, value_name = "FILE")]
    pub results: Option<PathBuf>,
    /// Bytes of stdout and of stderr kept per item in --results.
    #[arg(long, default_value = "64KiB", value_parser = parse_size)]
    pub results_cap: usize,
    /// Bytes of stdout and of stderr kept per item for printing; beyond it the
    /// rest is read and dropped, with a warning.
    #[arg(long, default_value = "8MiB", value_parser = parse_size)]
    pub max_output: usize,
    /// Record every item's outcome in FILE; a rerun of the same command with the
    /// same FILE runs only what has not finished.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// With --state: also rerun items that failed in an earlier run.
    #[arg(long, requires = "state")]
    pub retry_failed: bool,
    /// Run the command through /bin/sh -c (placeholders are single-quoted in it).
    #[arg(long)]
    pub shell: bool,
    /// No progress bar and no summary.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// With --from kafka://: serve Prometheus metrics (lag per partition,
    /// in flight, records by outcome) at http://ADDR/metrics while it runs.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// The program and its arguments.
    #[arg(last = true, required = true, value_name = "PROGRAM [ARGS]")]
    pub command: Vec<String>,
}

fn parse_rate(s: &str) -> Result<Rate, String> {
    s.parse::<Rate>().map_err(|e| e.to_string())
}
