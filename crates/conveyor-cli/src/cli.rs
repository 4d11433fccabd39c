//! The command line, as clap sees it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::units::parse_duration;

/// conveyor: run lots of work concurrently — a command per input line (`run`),
/// durable task queues with workers whose handlers are programs in any
/// language (`worker`, `submit`, `status`, `result`, …), Kafka tools.
#[derive(Debug, Parser)]
#[command(name = "conveyor", version)]
pub struct Cli {
    /// Where tasks wait, for every command but `run`: a backend URL
    /// (embedded://PATH, redis://…, postgres://…; --help lists them; memory://
    /// lives in one process and is refused here). Defaults to $CONVEYOR_URL,
    /// then embedded://./conveyor.db.
    /// `status`, `dead`, `result`, `wait`, `cancel` and `show` only open a store that exists.
    #[arg(long, global = true, value_name = "URL", long_help = backend_long_help())]
    pub backend: Option<String>,

    /// How log lines are written to stderr: `text` or `json` (one object per
    /// line). What is logged: `RUST_LOG` (or `CONVEYOR_LOG`), default `info`.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "CONVEYOR_LOG_FORMAT"
    )]
    pub log_format: crate::logging::LogFormat,

    /// Export OpenTelemetry traces (an enqueue's span, each attempt's span
    /// linked to it) over OTLP/HTTP to this collector (`http://host:4318`;
    /// `/v1/traces` is appended unless given). Without it,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    /// turn the export on.
    #[cfg(feature = "otel")]
    #[arg(long, global = true, value_name = "URL")]
    pub otlp: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--backend`'s long help: the URL forms of the backends built in, from
/// their own schemes.
fn backend_long_help() -> String {
    format!(
        "Where tasks wait, for every command but `run`, as a backend URL:\n\n{}\n\nDefaults to ${}, then {}. memory:// \
         lives inside one process and is refused by these commands (each runs in its own \
         process). `status`, `dead`, `result`, `wait`, `cancel` and `show` only open a store that exists: they never create a file \
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
    #[command(after_help = RUN_AFTER_HELP)]
    Run(crate::run::RunArgs),
    /// Run a worker whose handlers are the commands declared in a TOML file.
    Worker(WorkerArgs),
    /// Enqueue a task; print its id, or its result with --wait.
    Submit(SubmitArgs),
    /// Per queue: tasks by state and the age of the oldest ready task; the
    /// workers heard from, and how many tasks they are running.
    Status(StatusArgs),
    /// Print finished tasks' results (one JSON line each), without waiting.
    #[command(after_help = EXIT_CODES)]
    Result(ResultArgs),
    /// Wait for tasks to finish, printing each result line as it finishes.
    #[command(after_help = EXIT_CODES)]
    Wait(WaitArgs),
    /// Cancel tasks that are still waiting (not yet taken by a worker).
    Cancel(CancelArgs),
    /// Everything about one task: state, params, attempts, keys, times,
    /// result, last error.
    Show(ShowArgs),
    /// Inspect, requeue or delete dead-lettered tasks.
    #[command(subcommand)]
    Dead(DeadCommand),
    /// Submit, show and cancel workflows: tasks joined by dependencies
    /// (chains, groups, chords, graphs), declared as JSON.
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// List, add, remove, pause, resume and trigger periodic schedules
    /// (cron expressions or intervals), fired once per fire time by the
    /// worker that leads the `schedules` role.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Pause, resume and list queues: a paused queue's tasks wait, for
    /// every worker on the backend, until it is resumed.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Serve the web dashboard (/), the HTTP JSON API (/api/v1, OpenAPI at
    /// /openapi.json) and Prometheus gauges of the queues (/metrics) over
    /// the backend.
    Serve(crate::serve_args::ServeArgs),
    /// Kafka tools: `kafka produce` generates keyed load.
    #[cfg(feature = "kafka")]
    #[command(subcommand)]
    Kafka(crate::kafka_cmd::KafkaCommand),
    /// Print the helper that serves persistent handlers in a language
    /// (standard library only): `conveyor helper python > conveyor_handler.py`.
    Helper {
        /// The language.
        #[arg(value_enum)]
        language: HelperLanguage,
    },
    /// Print a shell completion script: `conveyor completions bash >
    /// /etc/bash_completion.d/conveyor` (zsh: into a directory of $fpath as
    /// `_conveyor`; fish: ~/.config/fish/completions/conveyor.fish).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `conveyor man > /usr/local/share/man/man1/conveyor.1`.
    Man,
    /// Create or migrate the backend's schema (PostgreSQL tables, the embedded
    /// file); every command also does it on first use.
    Migrate,
}

/// Languages with a persistent-handler helper.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum HelperLanguage {
    /// `conveyor_handler.py`: `serve({"name": function})`.
    Python,
}

/// `conveyor worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The handlers file (default `conveyor.toml`; with --python, read only
    /// if it exists).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Serve the `@app.task` functions of a Python app made with conveyor's
    /// package, as MODULE:APP (e.g. `tasks:app`, imported from this
    /// directory), beside the file's handlers. The app's URL is the backend
    /// unless --backend names one.
    #[arg(long, value_name = "MODULE:APP")]
    pub python: Option<String>,
    /// The Python app's interpreter (default `[python] interpreter`, else
    /// $CONVEYOR_PYTHON, else `python3`).
    #[arg(long, value_name = "PATH")]
    pub interpreter: Option<String>,
    /// The Python app's children at once, shared by all its tasks
    /// (default `[python] processes`, else the core count).
    #[arg(long)]
    pub processes: Option<usize>,
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
    /// How long completed tasks and their results are kept, e.g. 1d
    /// (overrides the file; default 1 day).
    #[arg(long, value_parser = parse_duration)]
    pub keep_completed: Option<Duration>,
    /// How long dead-lettered tasks are kept, e.g. 30d (overrides the file;
    /// default 7 days).
    #[arg(long, value_parser = parse_duration)]
    pub keep_dead: Option<Duration>,
    /// Serve Prometheus metrics at http://ADDR/metrics while the worker runs,
    /// e.g. 127.0.0.1:9464 (port 0: any free port, logged at start).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
}

/// `conveyor submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The handler's name.
    #[arg(required_unless_present = "workflow")]
    pub handler: Option<String>,
    /// Submit a workflow declared as JSON instead (a file, or - for stdin),
    /// as `conveyor workflow submit FILE` does.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["handler", "params", "lines"])]
    pub workflow: Option<PathBuf>,
    /// The params as JSON (default `null`).
    #[arg(conflicts_with = "lines")]
    pub params: Option<String>,
    /// Read one params JSON per stdin line and enqueue them in atomic batches,
    /// printing each id once its batch is stored (with --wait: each task's
    /// result line instead, in input order, once all are stored).
    #[arg(long)]
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
    /// Do not start before this time: RFC 3339 with its UTC offset, e.g.
    /// 2026-11-27T22:30:00Z or 2026-11-27T23:30:00+01:00 (a time past runs
    /// at once; with --delay too, the later of the two).
    #[arg(long, value_parser = parse_time)]
    pub at: Option<conveyor::Timestamp>,
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
    /// Keep the task's record and result this long once it has finished,
    /// however it ends, e.g. 2h (over its handler's and the worker's
    /// retention).
    #[arg(long, value_parser = parse_duration)]
    pub keep: Option<Duration>,
    /// Wait for the task to finish and print its result (exit status by
    /// outcome: 0 completed, 1 dead, 3 not finished by --timeout, 4 cancelled).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (exit status 3).
    #[arg(long, requires = "wait", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// With --wait: say on stderr when a task has been due this long and no
    /// worker has taken it.
    #[arg(long, requires = "wait", value_parser = parse_duration,
          default_value = "10s")]
    pub warn_after: Duration,
}

/// `conveyor run --help`'s closing text: placeholders and exit statuses.
pub const RUN_AFTER_HELP: &str = "Placeholders in PROGRAM and ARGS: {} the whole item; {1}, {2}, … its \
fields (split on whitespace, or on --delimiter); {.field}, {.a.b}, {.list.0} a field of a JSON item \
(--json); {#} the item's number; {{ and }} literal braces. Without any placeholder the item is \
appended as the last argument. Each template is one argument: no shell is involved unless --shell \
(which quotes every value).

Exit status: 0 every item succeeded; 1-100 the number of failed items (101: more than 100); \
130 or 143 interrupted by SIGINT or SIGTERM; 255 conveyor itself could not go on (a bad option, \
unreadable input, a state file error).";

/// The exit statuses of the commands that report tasks' outcomes.
pub const EXIT_CODES: &str = "Exit status: 0 every task completed; 1 a task failed for good \
(dead-lettered); 3 a task has not finished (still waiting or running, or --timeout ran out); \
4 a task was cancelled or discarded; 5 no task has an id; 2 usage error. With several tasks, \
the first that applies in the order 5, 1, 4, 3, 0.";

/// `conveyor result`.
#[derive(Debug, Args)]
pub struct ResultArgs {
    /// Task ids.
    #[arg(required = true)]
    pub ids: Vec<u64>,
}

/// `conveyor wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Task ids.
    #[arg(required = true)]
    pub ids: Vec<u64>,
    /// Give up after this long (exit status 3), e.g. 30s; default: wait forever.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Say on stderr when a task has been due this long and no worker has
    /// taken it.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub warn_after: Duration,
}

/// `conveyor cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// Task ids.
    #[arg(required = true)]
    pub ids: Vec<u64>,
}

/// `conveyor show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The task id.
    pub id: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
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

/// `conveyor queue …`.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Pause a queue: no worker takes its tasks from now on (enqueueing goes
    /// on, tasks already running finish). A queue with no task yet may be
    /// paused.
    Pause {
        /// The queue.
        name: String,
    },
    /// Resume a paused queue: its tasks run again at once.
    Resume {
        /// The queue.
        name: String,
    },
    /// Every queue with its ready and reserved tasks, and whether it is
    /// paused.
    List {
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `conveyor schedule …`.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Every schedule: its timing, handler, whether it is paused, its next
    /// and last fire, its last fire's task and the fire times it passed
    /// over.
    List {
        /// Print one JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a schedule, or replace the one of its name (where it stands is
    /// kept unless its timing changes). Give --cron or --every, and
    /// --handler; or the whole declaration as --json.
    Add(Box<ScheduleAddArgs>),
    /// Remove a schedule (a fire already enqueued stays). Exits 5 for an
    /// unknown name.
    Remove {
        /// The schedule's name.
        name: String,
    },
    /// Pause a schedule: it fires nothing until resumed. Exits 5 for an
    /// unknown name.
    Pause {
        /// The schedule's name.
        name: String,
    },
    /// Resume a paused schedule from its next fire time after now (what it
    /// would have fired meanwhile is not made up). Exits 5 for an unknown
    /// name.
    Resume {
        /// The schedule's name.
        name: String,
    },
    /// Fire a schedule once now, outside its timing; print the task's id.
    /// Exits 5 for an unknown name.
    Trigger {
        /// The schedule's name.
        name: String,
    },
}

/// `conveyor schedule add`.
#[derive(Debug, clap::Args)]
pub struct ScheduleAddArgs {
    /// The schedule's name.
    pub name: String,
    /// A cron expression: 5 fields (minute to weekday), 6 (seconds first)
    /// or 7 (and a year), or a nickname such as @hourly.
    #[arg(long, conflicts_with = "every")]
    pub cron: Option<String>,
    /// An interval instead: every 30s, 5m, 1h…
    #[arg(long)]
    pub every: Option<String>,
    /// The IANA time zone the cron expression is read in (default UTC).
    #[arg(long)]
    pub timezone: Option<String>,
    /// The handler each fire enqueues a task of.
    #[arg(long)]
    pub handler: Option<String>,
    /// Its params, as JSON (default null).
    #[arg(long)]
    pub params: Option<String>,
    /// Its queue.
    #[arg(long)]
    pub queue: Option<String>,
    /// What becomes of fire times missed while no worker fired: skip,
    /// once or all.
    #[arg(long)]
    pub misfire: Option<String>,
    /// What a fire does while the last fire's task runs: allow, skip or
    /// queue.
    #[arg(long)]
    pub overlap: Option<String>,
    /// The whole declaration as JSON instead of the flags (the form of a
    /// `[schedules.NAME]` table).
    #[arg(long, conflicts_with_all = ["cron", "every", "timezone", "handler", "params", "queue", "misfire", "overlap"])]
    pub json: Option<String>,
}

/// `conveyor workflow …`.
#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Submit a workflow declared as JSON (a file, or - for stdin); print
    /// its id, or with --wait its outcome. The form: `chain`, `group`,
    /// `chord` (`header`, `body`) or `nodes` (`name`, `after`, `input`),
    /// each task a `handler` with `params`, `queue`, `priority`,
    /// `attempts`, `timeout`, `delay`, `keep`, `ordering_key`; callbacks
    /// `on_success`, `on_failure`, `on_complete` (see docs/workflows.md).
    #[command(after_help = WORKFLOW_EXIT_CODES)]
    Submit(WorkflowSubmitArgs),
    /// Every node of a workflow: its state, task, attempts and result or
    /// error. Exits 5 when no workflow has the id.
    Show {
        /// The workflow's id.
        id: u64,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Cancel every node of a workflow that has not settled (running nodes'
    /// tasks are cancelled; no callback runs). Exits 5 for an unknown id.
    Cancel {
        /// The workflow's id.
        id: u64,
    },
    /// Put the failed part of an ended workflow back to run: its failed,
    /// cancelled and skipped nodes run again (those that succeeded keep
    /// their results and do not), and the callbacks follow the new end.
    /// Exits 3 while the workflow is still running, 5 for an unknown id.
    Retry {
        /// The workflow's id.
        id: u64,
    },
    /// The stuck-node check: every node of a running workflow that can no
    /// longer move by itself (running with its task's record gone, its
    /// task ended long ago but the node never settled, or waiting though
    /// everything it waits for has settled). Exits 1 when it finds one.
    Check {
        /// How long an ended task's node may stay unsettled before it
        /// counts (maintenance settles a crash's ends each pass).
        #[arg(long, value_parser = parse_duration, default_value = "1m")]
        grace: std::time::Duration,
        /// Print one JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The workflows, newest first: each one's state, how many of its
    /// nodes are left, when it was submitted and when it ended.
    List {
        /// Only workflows in this state.
        #[arg(long, value_parser = parse_workflow_state)]
        state: Option<conveyor::durable::workflow::WorkflowState>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only workflows older than this one (the last id of a page, for
        /// the next).
        #[arg(long)]
        before: Option<u64>,
        /// Print one JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn parse_workflow_state(s: &str) -> Result<conveyor::durable::workflow::WorkflowState, String> {
    conveyor::durable::workflow::WorkflowState::parse(s)
        .ok_or_else(|| format!("{s:?}: expected running, succeeded, failed or cancelled"))
}

/// `conveyor workflow submit`'s arguments (also `conveyor submit --workflow`).
#[derive(Debug, clap::Args)]
pub struct WorkflowSubmitArgs {
    /// The declaration: a JSON file, or - for stdin.
    pub file: PathBuf,
    /// Wait for the workflow to end and print it (exit status by outcome).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (exit status 3).
    #[arg(long, requires = "wait", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

/// Exit statuses of `conveyor workflow submit --wait`.
pub const WORKFLOW_EXIT_CODES: &str = "Exit status with --wait: 0 succeeded, 1 failed, 3 not \
ended by --timeout, 4 cancelled; 2 for a declaration refused.";

fn parse_time(s: &str) -> Result<conveyor::Timestamp, String> {
    conveyor::Timestamp::parse_rfc3339(s).map_err(|e| e.to_string())
}
