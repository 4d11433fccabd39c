//! A consumer process for the crash and rebalance tests (not a user tool).
//!
//! `conveyor-kafka-test-consumer KEY=VALUE…` with `brokers`, `topic`, `group`,
//! and optionally `ordering` (key), `max_in_flight` (20), `work_ms` (most
//! milliseconds of simulated work, 2), `session_ms` (3000), `commit_ms` (100).
//! It prints `processed PARTITION OFFSET KEY` when a handler finishes its
//! work (before the offset can be committed), `assigned` once it has
//! partitions, and `stopped` after a graceful shutdown on SIGTERM.
//! `prop.NAME=VALUE` sets a librdkafka property; `verbose=1` prints the
//! metrics to stderr every second.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use conveyor::{Handler, TaskError};
use conveyor_kafka::{ConsumerConfig, KafkaConsumer, Message};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: HashMap<String, String> = std::env::args()
        .skip(1)
        .filter_map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let arg = |k: &str| args.get(k).cloned().ok_or(format!("missing {k}="));
    let num = |k: &str, d: u64| args.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    let work_ms = num("work_ms", 2);
    let config = ConsumerConfig::new(arg("brokers")?, arg("group")?, [arg("topic")?])
        .ordering(args.get("ordering").map_or("key", String::as_str).parse()?)
        .max_in_flight(num("max_in_flight", 20) as usize)
        .read_ahead(num("read_ahead", conveyor_kafka::DEFAULT_READ_AHEAD as u64) as usize)
        .session_timeout(Duration::from_millis(num("session_ms", 3000)))
        .commit_interval(Duration::from_millis(num("commit_ms", 100)))
        .shutdown_grace(Duration::from_secs(10));
    let config = args
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("prop.").map(|p| (p, v)))
        .fold(config, |c, (k, v)| c.property(k, v));
    let handler = Handler::io("record", move |m: Message, _ctx| async move {
        if work_ms > 0 {
            tokio::time::sleep(Duration::from_micros(fastrand::u64(0..=work_ms * 1000))).await;
        }
        let line = format!(
            "processed {} {} {}\n",
            m.partition(),
            m.offset(),
            m.key_str().unwrap_or("-")
        );
        // One write per line, so a SIGKILL never leaves half a line.
        let mut out = std::io::stdout().lock();
        out.write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .map_err(TaskError::from)
    });
    let consumer = KafkaConsumer::builder(config).handler(handler)?;
    let handle = consumer.handle();
    let watcher = handle.clone();
    let verbose = num("verbose", 0) > 0;
    tokio::spawn(async move {
        let mut assigned = false;
        loop {
            let m = watcher.metrics();
            if !assigned && !m.partitions.is_empty() {
                println!("assigned");
                assigned = true;
            }
            if verbose {
                eprintln!("{m:?}");
            }
            let pause = if verbose { 1000 } else { 20 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
            if assigned && !verbose {
                break;
            }
        }
    });
    tokio::spawn(async move {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            term.recv().await;
            handle.shutdown();
        }
    });
    let report = consumer.run().await?;
    println!("stopped {}", report.runner.completed);
    Ok(())
}
