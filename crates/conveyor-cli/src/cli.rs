//! The command line, as clap sees it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// conveyor: run lots of work concurrently — durable task queues and workers.
#[derive(Debug, Parser)]
#[command(name = "conveyor", version, about)]
pub struct Cli {
    /// Where tasks wait: a backend URL (embedded://PATH, redis://…,
    /// postgres://…; --help lists them; memory:// lives in one process and is
    /// refused here). Defaults to $CONVEYOR_URL, then embedded://./conveyor.db.
    /// `status` and `dead` only open a store that exists.
    #[arg(long, global = true, value_name = "URL", long_help = backend_long_help())]
    pub backend: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--backend`'s long help: the URL forms of the backends built in, from
/// their own schemes.
fn backend_long_help() -> String {
    format!(
        "Where tasks wait, as a backend URL:\n\n{}\n\nDefaults to ${}, then {}. memory:// \
         lives inside one process and is refused by these commands (each runs in its own \
         process). `status` and `dead` only open a store that exists: they never create a file \
         or a schema.",
        conveyor::durable::Schemes::default().help(),
        conveyor::durable::URL_ENV,
        conveyor::durable::DEFAULT_URL
    )
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command once per input item: concurrently, with rate limits,
    /// retries, timeouts, progress and resumable state.
    Run(crate::run::RunArgs),
    /// Run a worker whose handlers are the commands declared in a TOML file.
    Worker(WorkerArgs),
    /// Enqueue a task; print its id, or its result with --wait.
    Submit(SubmitArgs),
    /// Per queue: tasks by state, in flight, age of the oldest ready task.
    Status(StatusArgs),
    /// Inspect, requeue or delete dead-lettered tasks.
    #[command(subcommand)]
    Dead(DeadCommand),
    /// Kafka tools: `kafka produce` generates keyed load.
    #[cfg(feature = "kafka")]
    #[command(subcommand)]
    Kafka(crate::kafka_cmd::KafkaCommand),
    /// Create or migrate the backend's schema (PostgreSQL tables, the embedded
    /// file); every command also does it on first use.
    Migrate,
}

/// `conveyor worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The handlers file.
    #[arg(long, short, default_value = "conveyor.toml")]
    pub config: PathBuf,
    /// Queues to take tasks from (repeatable; overrides the file).
    #[arg(long = "queue", short)]
    pub queues: Vec<String>,
    /// Tasks at once (overrides the file).
    #[arg(long)]
    pub slots: Option<usize>,
    /// Lease length (overrides the file), e.g. 30s.
    #[arg(long, value_parser = parse_duration)]
    pub lease: Option<Duration>,
    /// Grace period on SIGINT/SIGTERM (overrides the file).
    #[arg(long, value_parser = parse_duration)]
    pub grace: Option<Duration>,
}

/// `conveyor submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The handler's name.
    pub handler: String,
    /// The params as JSON (default `null`).
    #[arg(conflicts_with = "lines")]
    pub params: Option<String>,
    /// Read one params JSON per stdin line and enqueue them in atomic batches,
    /// printing each id once its batch is stored.
    #[arg(long, conflicts_with = "wait")]
    pub lines: bool,
    /// With --lines: tasks per batch.
    #[arg(long, default_value_t = 500, requires = "lines")]
    pub batch: usize,
    /// The queue.
    #[arg(long, short, default_value = conveyor::durable::DEFAULT_QUEUE_NAME)]
    pub queue: String,
    /// Do not start before this delay, e.g. 10s, 5m.
    #[arg(long, value_parser = parse_duration)]
    pub delay: Option<Duration>,
    /// Ordering key: tasks with the same key run one at a time, in order.
    #[arg(long)]
    pub key: Option<String>,
    /// Unique key: while a task with this key is unfinished, return it instead.
    #[arg(long)]
    pub unique: Option<String>,
    /// Priority (higher first).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// Total attempts, counting the first.
    #[arg(long, default_value_t = conveyor::durable::DEFAULT_ATTEMPTS)]
    pub max_attempts: u32,
    /// Time limit of one attempt, e.g. 30s.
    #[arg(long, value_parser = parse_duration)]
    pub task_timeout: Option<Duration>,
    /// Wait for the task to finish and print its result.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (exit status 3).
    #[arg(long, requires = "wait", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

/// `conveyor status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `conveyor dead …`.
#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// List dead tasks, oldest first.
    List {
        /// Only this queue.
        #[arg(long, short)]
        queue: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put dead tasks back to run (attempts reset).
    Retry {
        /// Task ids.
        ids: Vec<u64>,
        /// Every dead task (of --queue, if given).
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// With --all: only this queue.
        #[arg(long, short, requires = "all")]
        queue: Option<String>,
    },
    /// Delete dead tasks.
    Purge {
        /// Only this queue.
        #[arg(long, short)]
        queue: Option<String>,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (try 500ms, 30s, 5m, 1h)"))
}
