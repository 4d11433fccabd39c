//! Redis Cluster against one server: `conveyor-bench redis-cluster
//! [--quick]`.
//!
//! Starts servers of its own (the testkit's, all alike: an append-only
//! file fsynced at every write): one `redis-server`, and a cluster of three
//! primaries with a replica each. The same N no-op tasks (60,000;
//! `--quick` 12,000), pre-enqueued, are processed with 64 slots per worker,
//! three ways: one namespace on the one server (the baseline); one
//! namespace on the cluster (what routing by slot costs, with a replica
//! fed); and three namespaces whose hash tags three different primaries
//! serve, a worker each with a third of the tasks, counted together. Each
//! figure is tasks/s, the median of three alternating rounds, as a ratio to
//! the baseline.
//!
//! On a 2-core machine the six cluster servers, the one server and the
//! workers share the same two cores: the figures show what the cluster
//! costs and that work spreads over its primaries, not how it scales.

use std::sync::Arc;

use conveyor::durable::Backend;
use conveyor_testkit::redis_cluster::RedisCluster;
use conveyor_testkit::servers::TempRedis;

use crate::namespace::{unique, Subject};
use crate::queue::{enqueue_backlog, process, Watch};
use crate::report::{median_measured, ratio_of, Measured, Report};

/// Rounds of each way, alternating which goes first.
const ROUNDS: usize = 3;

/// A worker's slots.
const SLOTS: usize = 64;

/// The ways the tasks are kept and processed.
#[derive(Debug, Clone, Copy)]
enum Way {
    OneServer,
    ClusterOne,
    ClusterThree,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::OneServer => "one namespace on one server",
            Way::ClusterOne => "one namespace on the cluster",
            Way::ClusterThree => "three namespaces on the cluster's three primaries",
        }
    }
}

/// Runs the benchmark.
pub async fn run(report: &mut Report, quick: bool) {
    let n = if quick { 12_000 } else { 60_000 };
    let (server, cluster, tags) = tokio::task::spawn_blocking(|| {
        let server = TempRedis::start();
        let cluster = RedisCluster::start();
        let tags = tags_on_each_primary(&cluster);
        (server, cluster, tags)
    })
    .await
    .expect("start the servers");
    let single = server.url();
    let seeds = cluster.url("");
    eprintln!("  one server {single}; cluster {seeds}; tags {tags:?}");
    let bench = "redis-cluster";
    let ways = [Way::OneServer, Way::ClusterOne, Way::ClusterThree];
    let mut runs: [Vec<Measured>; 3] = Default::default();
    let mut ratios: [Vec<Measured>; 2] = Default::default();
    for round in 0..ROUNDS {
        let mut rates: [Measured; 3] = std::array::from_fn(|_| Err(String::new()));
        for k in 0..ways.len() {
            let i = (round + k) % ways.len();
            rates[i] = match ways[i] {
                Way::OneServer => measure(vec![Subject::new(Some(&single), "one")], n).await,
                Way::ClusterOne => {
                    let tag = &tags[round % tags.len()];
                    measure(vec![Subject::redis(&seeds, &prefix(tag))], n).await
                }
                Way::ClusterThree => {
                    let subjects: Vec<Subject> = tags
                        .iter()
                        .map(|t| Subject::redis(&seeds, &prefix(t)))
                        .collect();
                    measure(subjects, n).await
                }
            };
            eprintln!("  round {}: {}: {:?}", round + 1, ways[i].name(), rates[i]);
        }
        ratios[0].push(ratio_of(&rates[1], &rates[0]));
        ratios[1].push(ratio_of(&rates[2], &rates[0]));
        for (run, rate) in runs.iter_mut().zip(rates) {
            run.push(rate);
        }
    }
    report.measured(
        bench,
        &format!("{n} no-op tasks, {}, {SLOTS} slots", Way::OneServer.name()),
        &median_measured(&runs[0]),
        "tasks/s",
    );
    for (i, way) in [Way::ClusterOne, Way::ClusterThree].into_iter().enumerate() {
        report.with_ratio(
            bench,
            &format!("{n} no-op tasks, {}, {SLOTS} slots per worker", way.name()),
            &median_measured(&runs[i + 1]),
            "tasks/s",
            &format!("one server (median of {ROUNDS} alternating rounds)"),
            &median_measured(&ratios[i]),
        );
    }
    report.note(
        "redis-cluster: the cluster's six servers, the one server and the workers share this \
         machine's cores; the figures show the cluster's cost and the spread over its primaries, \
         not scaling",
    );
    tokio::task::spawn_blocking(move || drop((server, cluster)))
        .await
        .expect("stop the servers");
}

/// A fresh namespace prefix on the tag `tag`'s slot.
fn prefix(tag: &str) -> String {
    format!("{{{tag}}}:{}:", unique("b", '_'))
}

/// Three tags whose slots the cluster's three primaries serve, one each.
fn tags_on_each_primary(c: &RedisCluster) -> Vec<String> {
    let primaries = c.primaries();
    let mut found: Vec<(String, u16)> = Vec::new();
    for i in 0..10_000 {
        let tag = format!("bench{i}");
        let p = c.primary_of(&tag);
        if !found.iter().any(|(_, q)| *q == p) {
            found.push((tag, p));
        }
        if found.len() == primaries.len() {
            break;
        }
    }
    found.into_iter().map(|(t, _)| t).collect()
}

/// Enqueues `n` tasks spread over the namespaces, then processes each
/// namespace's share with a worker of its own, all at once; tasks/s in all,
/// from the workers' start to the last one's end.
async fn measure(subjects: Vec<Subject>, n: usize) -> Measured {
    let share = n / subjects.len();
    let mut backends: Vec<Arc<dyn Backend>> = Vec::new();
    let mut rate = Ok(0.0);
    for s in &subjects {
        let b = s.open().await;
        if let Err(e) = enqueue_backlog(b.as_ref(), share).await {
            rate = Err(e);
        }
        backends.push(b);
    }
    if rate.is_ok() {
        let started = std::time::Instant::now();
        let runs: Vec<_> = backends
            .iter()
            .map(|b| tokio::spawn(process(b.clone(), share, SLOTS, Watch::Nobody)))
            .collect();
        for r in runs {
            match r.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => rate = Err(e),
                Err(e) => rate = Err(format!("a worker panicked: {e}")),
            }
        }
        if rate.is_ok() {
            rate = Ok((share * subjects.len()) as f64 / started.elapsed().as_secs_f64());
        }
    }
    drop(backends);
    for s in subjects {
        s.close().await;
    }
    rate
}
