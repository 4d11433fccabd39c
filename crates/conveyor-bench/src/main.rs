//! conveyor's benchmarks: every subject runs side by side with its baselines in
//! one run; a table and one JSON object per line are printed.
//!
//! Usage: `conveyor-bench [inproc|noop|sleep|cpu|rate|rss] [--quick]`, or
//! `conveyor-bench queue [--backend URL] [--quick]` for the durable queues,
//! `conveyor-bench run [--quick]` for `conveyor run` against xargs and GNU parallel,
//! `conveyor-bench kafka [--brokers HOST:PORT] [--quick]` for Kafka consumption,
//! `conveyor-bench worker [--backend URL] [--quick]` for `conveyor worker` with
//! Python handlers against Celery,
//! `conveyor-bench inspect [--backend URL] [--tasks N] [--quick]` for the
//! dashboard's pages over a million tasks.
//! `inproc` (the default) runs the in-process ones. Timings are printed, never asserted.

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
mod queue;
mod rate_limit;
mod redis_scripts;
mod report;
mod rss;
mod sleep;
mod sqlite_floor;
mod ticker;
mod worker;

use std::time::{Duration, Instant};

use report::Report;

/// Every benchmark `inproc` runs, in order.
const ALL: [&str; 5] = ["noop", "sleep", "cpu", "rate", "rss"];

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
    let which = args.first().map(String::as_str).unwrap_or("inproc");
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
        "worker" => Some((
            "[worker]",
            "conveyor worker with Python handlers vs Celery".into(),
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
            eprintln!(
                "unknown benchmark {name:?}; try: inproc, {}",
                ALL.join(", ")
            );
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
