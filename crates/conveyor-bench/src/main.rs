//! conveyor's benchmarks: every subject runs side by side with its baselines in
//! one run; a table and one JSON object per line are printed.
//!
//! Usage: `conveyor-bench [inproc|noop|sleep|cpu|rate|rss] [--quick]`, or
//! `conveyor-bench queue [--backend URL] [--quick]` for the durable queues,
//! `conveyor-bench run [--quick]` for `conveyor run` against xargs and GNU parallel,
//! `conveyor-bench kafka [--brokers HOST:PORT] [--quick]` for Kafka consumption,
//! `conveyor-bench worker [--backend URL] [--quick]` for `conveyor worker` with
//! Python handlers against Celery,
//! `conveyor-bench python-client [--backend URL] [--quick]` for the Python
//! package's `delay()` and `get()` against Celery's,
//! `conveyor-bench inspect [--backend URL] [--tasks N] [--quick]` for the
//! dashboard's pages over a million tasks.
//! `inproc` (the default) runs the in-process ones. Timings are printed, never asserted.
//! `conveyor-bench --help` (or `-h`, or `help`) lists every subcommand and its
//! flags; `conveyor-bench SUBCOMMAND --help` prints that subcommand's. Both
//! exit 0 without running anything; an unknown subcommand prints the usage
//! and exits 2.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod alternate;
mod amqp_floor;
#[cfg(feature = "apalis")]
mod apalis_enqueue;
#[cfg(feature = "apalis")]
mod apalis_peer;
#[cfg(feature = "apalis")]
mod apalis_sqlite_peer;
mod celery;
mod cmdrun;
mod cpu;
mod cpu_time;
mod inspect;
mod kafka;
mod namespace;
mod nats_floor;
mod noop;
mod pg_floor;
mod python;
mod python_client;
mod queue;
mod rate_limit;
mod redis_cluster;
mod redis_scripts;
mod report;
mod rss;
mod schedules;
mod sleep;
mod sqlite_floor;
mod ticker;
mod worker;
mod workflow;

use std::io::Write;
use std::time::{Duration, Instant};

use report::Report;

/// Every benchmark `inproc` runs, in order.
const ALL: [&str; 5] = ["noop", "sleep", "cpu", "rate", "rss"];

/// One subcommand as the usage lists it.
struct Command {
    /// Its name, the first argument.
    name: &'static str,
    /// Its arguments and flags, as the usage line shows them.
    args: &'static str,
    /// What it runs, and what its flags mean.
    about: &'static str,
}

/// Every subcommand, in the order the usage lists them.
const COMMANDS: [Command; 14] = [
    Command {
        name: "inproc",
        args: "[--quick]",
        about: "the in-process benchmarks, in turn: noop, sleep, cpu, rate, rss \
                (the default when no subcommand is given)",
    },
    Command {
        name: "(noop|sleep|cpu|rate|rss)",
        args: "[--quick]",
        about: "one in-process benchmark: no-op tasks, sleeping tasks, CPU-bound \
                tasks, a rate limit, peak memory",
    },
    Command {
        name: "queue",
        args: "[--backend URL] [--quick]",
        about: "the durable queues: enqueue, processed tasks/s and latency, beside the \
                backend's floor and peers (Redis: apalis with `--features apalis`; \
                RabbitMQ: Celery). --backend: embedded://, redis://, postgres://, \
                amqp:// or nats:// (default: a new embedded file)",
    },
    Command {
        name: "run",
        args: "[--quick]",
        about: "`conveyor run` against xargs -P and GNU parallel (needs the release \
                `conveyor` binary beside this one)",
    },
    Command {
        name: "kafka",
        args: "[--brokers HOST:PORT] [--quick]",
        about: "Kafka consumption (--brokers, else $CONVEYOR_KAFKA_BROKERS, else \
                127.0.0.1:9092)",
    },
    Command {
        name: "worker",
        args: "[--backend URL] [--quick]",
        about: "`conveyor worker` with Python handlers against Celery (default backend: \
                redis://127.0.0.1:6379/0; needs the release `conveyor` binary)",
    },
    Command {
        name: "python-client",
        args: "[--backend URL] [--quick]",
        about: "the Python package's delay() and get() against Celery's, on Redis (default \
                redis://127.0.0.1:6379/0; needs the release `conveyor` binary and \
                extension: cargo build --release -p conveyor-cli -p conveyor-python)",
    },
    Command {
        name: "workflow",
        args: "[--backend URL] [--quick]",
        about: "what a workflow node costs: N no-op tasks as plain tasks, a group and \
                a chord on one store (default: a new embedded file)",
    },
    Command {
        name: "redis-cluster",
        args: "[--quick]",
        about: "Redis Cluster vs one server, on servers of its own: one namespace on each, \
                and three namespaces on the cluster's three primaries (needs redis-server \
                and redis-cli)",
    },
    Command {
        name: "schedules",
        args: "[--backend URL] [--quick]",
        about: "fire-time accuracy: the lateness of the leader's pass over 1,000 schedules \
                firing every second together vs one (default: a new embedded file)",
    },
    Command {
        name: "inspect",
        args: "[--backend URL] [--tasks N] [--quick]",
        about: "the dashboard's pages over N tasks (default 1,000,000; --quick \
                100,000); with no --backend, the embedded store and \
                $CONVEYOR_POSTGRES_URL",
    },
    Command {
        name: "noop-only",
        args: "[conveyor|tokio|async-channel|flume] [TASKS] [RUNS]",
        about: "for profilers: one no-op subject alone (default conveyor, 1,000,000 \
                tasks, 3 runs)",
    },
    Command {
        name: "sleep-only",
        args: "[conveyor|tokio] [TASKS] [WORKERS] [RUNS]",
        about: "for profilers: one sleep-bound subject alone (default conveyor, \
                10,000 tasks, 1,000 workers, 20 runs)",
    },
    Command {
        name: "kafka-noop",
        args: "[--brokers HOST:PORT] [--records N] [--rounds N]",
        about: "for profilers: Kafka no-op consumption, the bare loop and conveyor \
                alternated (default 50,000 records, 3 rounds)",
    },
];

/// `enqueue-rounds`, there only when built with `--features apalis`.
const ENQUEUE_ROUNDS: Command = Command {
    name: "enqueue-rounds",
    args: "[--backend URL] [--rounds N] [--tasks N]",
    about: "for profilers, built with `--features apalis`: single enqueues, conveyor \
            and apalis on Redis alternated round by round (default \
            redis://127.0.0.1:6379, 5 rounds, 5,000 tasks)",
};

/// The flags every suite takes (the subcommands for profilers take only
/// their own).
const COMMON: &str = "  --quick        smaller workloads: a shorter, noisier run
  -h, --help     print this and exit";

/// The usage: of every subcommand, or of `only`.
fn usage(only: Option<&Command>) -> String {
    let line = |c: &Command| {
        format!(
            "  conveyor-bench {} {}\n{}",
            c.name,
            c.args,
            wrapped(c.about, "      ")
        )
    };
    let mut text = String::from("usage:\n");
    match only {
        Some(c) => text.push_str(&line(c)),
        None => {
            for c in COMMANDS.iter().chain([&ENQUEUE_ROUNDS]) {
                text.push_str(&line(c));
            }
            text.push_str(
                "  conveyor-bench help [SUBCOMMAND]\n      this text, or one subcommand's\n",
            );
        }
    }
    text.push_str("\nflags:\n");
    text.push_str(COMMON);
    text.push_str("\n\n");
    text.push_str(&wrapped(
        "Each run prints a table, its notes, then one JSON object per row; a row \
         whose subject did not do its whole workload has no figure and says why.",
        "",
    ));
    text
}

/// `text` in lines of at most 80 columns, each starting with `indent`.
fn wrapped(text: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        if line.len() > indent.len() && line.len() + 1 + word.len() > 80 {
            out.push_str(&line);
            out.push('\n');
            line = String::from(indent);
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// The subcommand `name` names, if any (`noop`, `sleep`, … share one entry).
fn command(name: &str) -> Option<&'static Command> {
    let in_process = &COMMANDS[1];
    if ALL.contains(&name) {
        return Some(in_process);
    }
    COMMANDS
        .iter()
        .chain([&ENQUEUE_ROUNDS])
        .find(|c| c.name == name && c.name != in_process.name)
}

/// Whether `name` is a subcommand this build runs (hidden ones included;
/// `--quick` alone means `inproc --quick`).
fn known(name: &str) -> bool {
    name == "--quick"
        || name == "rss-child"
        || (name == ENQUEUE_ROUNDS.name && cfg!(feature = "apalis"))
        || (name != ENQUEUE_ROUNDS.name && command(name).is_some())
}

/// Whether the arguments ask for help: `help`, or `-h` / `--help` anywhere
/// (never a value any subcommand takes). `Some(subcommand)` when it is one
/// subcommand's help.
fn asks_for_help(args: &[String]) -> Option<Option<&'static Command>> {
    let first = args.first().map(String::as_str);
    if first == Some("help") {
        return Some(args.get(1).and_then(|name| command(name)));
    }
    if !args.iter().any(|a| a == "-h" || a == "--help") {
        return None;
    }
    Some(first.and_then(command))
}

/// Runs one benchmark by name; false when the name is unknown.
async fn run_one(name: &str, report: &mut Report, quick: bool) -> bool {
    match name {
        "noop" => noop::run(report, quick).await,
        "sleep" => sleep::run(report, quick).await,
        "cpu" => cpu::run(report, quick).await,
        "rate" => rate_limit::run(report, quick).await,
        "rss" => rss::run(report, quick).await,
        _ => return false,
    }
    true
}

/// The 1-minute load average from `/proc/loadavg`, or "?" where unavailable.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(only) = asks_for_help(&args) {
        // Not println!: a closed pipe (`--help | head`) is no reason to panic.
        let _ = writeln!(std::io::stdout(), "{}", usage(only));
        return;
    }
    let which = args.first().map(String::as_str).unwrap_or("inproc");
    if !known(which) {
        eprintln!("unknown subcommand {which:?}\n\n{}", usage(None));
        std::process::exit(2);
    }
    let quick = args.iter().any(|a| a == "--quick");
    // The value after `name` on the command line, if any.
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    // Hidden: the child process of the peak-RSS benchmark.
    if which == "rss-child" {
        let code = runtime.block_on(rss::child(&args[1..]));
        std::process::exit(code);
    }
    // Hidden: one no-op subject alone, for profilers
    // (`noop-only [conveyor|tokio|async-channel|flume] [tasks] [runs]`).
    if which == "noop-only" {
        let word = args.get(1).map(String::as_str).unwrap_or("conveyor");
        let Some(subject) = noop::Subject::parse(word) else {
            eprintln!(
                "noop-only: unknown subject {word:?} (conveyor, tokio, async-channel, flume)"
            );
            std::process::exit(2);
        };
        let n = args
            .get(2)
            .and_then(|a| a.parse().ok())
            .unwrap_or(1_000_000);
        let runs = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(3u32);
        for _ in 0..runs {
            let rate = runtime.block_on(subject.measure(n));
            println!("{} no-op: {rate:.0} tasks/s", subject.name());
        }
        return;
    }
    // Hidden: Kafka no-op throughput alone, alternating rounds of the bare
    // loop and conveyor on one topic, for profilers
    // (`kafka-noop [--brokers HOST:PORT] [--records N] [--rounds N]`).
    if which == "kafka-noop" {
        let brokers = flag("--brokers")
            .or_else(|| std::env::var("CONVEYOR_KAFKA_BROKERS").ok())
            .unwrap_or_else(|| "127.0.0.1:9092".into());
        let records = flag("--records")
            .and_then(|a| a.parse().ok())
            .unwrap_or(50_000);
        let rounds = flag("--rounds").and_then(|a| a.parse().ok()).unwrap_or(3);
        runtime.block_on(kafka::noop_rounds(&brokers, records, rounds));
        return;
    }
    // Hidden (with `--features apalis`): single enqueues, conveyor and
    // apalis on Redis alternated round by round
    // (`enqueue-rounds [--backend URL] [--rounds N] [--tasks N]`).
    #[cfg(feature = "apalis")]
    if which == "enqueue-rounds" {
        let url = flag("--backend").unwrap_or_else(|| "redis://127.0.0.1:6379".into());
        let rounds = flag("--rounds").and_then(|a| a.parse().ok()).unwrap_or(5);
        let tasks = flag("--tasks")
            .and_then(|a| a.parse().ok())
            .unwrap_or(5_000);
        runtime.block_on(apalis_enqueue::rounds(&url, rounds, tasks));
        return;
    }
    // Hidden: one sleep-bound subject alone, for profilers
    // (`sleep-only [conveyor|tokio] [tasks] [workers] [runs]`).
    if which == "sleep-only" {
        let tokio = args.get(1).is_some_and(|a| a == "tokio");
        let arg =
            |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
        let (tasks, workers, runs) = (arg(2, 10_000), arg(3, 1_000).max(1), arg(4, 20).max(1));
        let one = runtime.block_on(sleep::measure_sleep(20));
        let ideal = one.as_secs_f64() * tasks.div_ceil(workers) as f64;
        let walls: Vec<Duration> = (0..runs)
            .map(|_| {
                if tokio {
                    runtime.block_on(sleep::tokio_floor(tasks, workers))
                } else {
                    runtime.block_on(sleep::run_once(tasks, workers))
                }
            })
            .collect();
        let best = walls.iter().min().copied().unwrap_or_default();
        let median = sleep::median(walls).as_secs_f64();
        println!(
            "{} {tasks}x{workers}w: median {:.2} ms = {:.3}x ideal ({:.2} ms); best {:.2} ms",
            if tokio { "tokio floor" } else { "conveyor" },
            median * 1e3,
            median / ideal,
            ideal * 1e3,
            best.as_secs_f64() * 1e3
        );
        return;
    }
    let suite: Option<(&str, String)> = match which {
        "run" => Some(("[run]", "conveyor run vs xargs and GNU parallel".into())),
        "kafka" => Some(("[kafka]", "kafka benchmark".into())),
        "queue" => Some(("[queue]", "durable queue benchmark".into())),
        "inspect" => Some(("[inspect]", "inspection at scale".into())),
        "workflow" => Some(("[workflow]", "workflow nodes vs plain tasks".into())),
        "redis-cluster" => Some(("[redis-cluster]", "Redis Cluster vs one server".into())),
        "schedules" => Some(("[schedules]", "fire-time accuracy".into())),
        "worker" => Some((
            "[worker]",
            "conveyor worker with Python handlers vs Celery".into(),
        )),
        "python-client" => Some((
            "[python-client]",
            "the Python package vs Celery's client".into(),
        )),
        _ => None,
    };
    if let Some((title, what)) = suite {
        let mut report = Report::default();
        let started = Instant::now();
        eprintln!("{title}");
        match which {
            "run" => cmdrun::run(&mut report, quick),
            "kafka" => {
                let brokers = flag("--brokers")
                    .or_else(|| std::env::var("CONVEYOR_KAFKA_BROKERS").ok())
                    .unwrap_or_else(|| "127.0.0.1:9092".into());
                eprintln!("  brokers {brokers}");
                runtime.block_on(kafka::run(&mut report, quick, &brokers));
            }
            "worker" => runtime.block_on(worker::run(
                &mut report,
                quick,
                flag("--backend").as_deref(),
            )),
            "python-client" => runtime.block_on(python_client::run(
                &mut report,
                quick,
                flag("--backend").as_deref(),
            )),
            "redis-cluster" => runtime.block_on(redis_cluster::run(&mut report, quick)),
            "workflow" => runtime.block_on(workflow::run(
                &mut report,
                quick,
                flag("--backend").as_deref(),
            )),
            "schedules" => runtime.block_on(schedules::run(
                &mut report,
                quick,
                flag("--backend").as_deref(),
            )),
            "inspect" => runtime.block_on(inspect::run(
                &mut report,
                quick,
                flag("--backend").as_deref(),
                flag("--tasks").and_then(|n| n.parse().ok()),
            )),
            _ => runtime.block_on(queue::run(&mut report, quick, flag("--backend").as_deref())),
        }
        report.note(format!(
            "{what}, {} cores, total {:.1} s, load average {}",
            conveyor::available_cores(),
            started.elapsed().as_secs_f64(),
            load_average()
        ));
        report.print();
        return;
    }
    let names: Vec<&str> = if which == "inproc" || which == "--quick" {
        ALL.to_vec()
    } else {
        vec![which]
    };
    let mut report = Report::default();
    let load_before = load_average();
    let started = Instant::now();
    for name in names {
        eprintln!("[{name}]");
        if !runtime.block_on(run_one(name, &mut report, quick)) {
            eprintln!("unknown subcommand {name:?}\n\n{}", usage(None));
            std::process::exit(2);
        }
    }
    report.note(format!(
        "{} mode, {} cores, total {:.1} s; 1-min load average {} before, {} after \
         (above ~0.5, other processes share the cores and timings are noisy)",
        if quick { "quick" } else { "full" },
        conveyor::available_cores(),
        started.elapsed().as_secs_f64(),
        load_before,
        load_average(),
    ));
    report.print();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn help_is_asked_with_a_flag_anywhere_or_the_help_subcommand() {
        assert!(matches!(asks_for_help(&args("--help")), Some(None)));
        assert!(matches!(asks_for_help(&args("-h")), Some(None)));
        assert!(matches!(asks_for_help(&args("help")), Some(None)));
        let one = |line: &str| asks_for_help(&args(line)).flatten().map(|c| c.name);
        assert_eq!(one("inspect --help"), Some("inspect"));
        assert_eq!(one("queue --backend redis://x -h"), Some("queue"));
        assert_eq!(one("help kafka"), Some("kafka"));
        assert_eq!(one("cpu --help"), Some("(noop|sleep|cpu|rate|rss)"));
        assert!(asks_for_help(&args("queue --backend redis://x --quick")).is_none());
        assert!(asks_for_help(&args("")).is_none());
    }

    #[test]
    fn every_subcommand_run_by_name_is_known_and_others_are_not() {
        for name in [
            "inproc",
            "noop",
            "rss",
            "queue",
            "run",
            "kafka",
            "worker",
            "python-client",
            "inspect",
            "--quick",
            "rss-child",
            "noop-only",
            "sleep-only",
            "kafka-noop",
        ] {
            assert!(known(name), "{name}");
        }
        assert_eq!(known("enqueue-rounds"), cfg!(feature = "apalis"));
        for name in ["bogus", "--bogus", "help-me", "(noop|sleep|cpu|rate|rss)"] {
            assert!(!known(name), "{name}");
        }
    }

    #[test]
    fn the_usage_lists_every_subcommand_in_80_columns() {
        let text = usage(None);
        for c in COMMANDS.iter().chain([&ENQUEUE_ROUNDS]) {
            assert!(text.contains(&format!("conveyor-bench {} {}", c.name, c.args)));
        }
        assert!(text.lines().all(|l| l.len() <= 80 || !l.contains(' ')));
    }
}
