//! Redis Cluster (`docs/high-availability.md`): a namespace is one hash
//! slot, served by one primary; an untagged prefix is refused; namespaces
//! with other tags live on other primaries, each whole on its own; the
//! cluster refuses a script's key of another node's slot (but not one of
//! another slot on the same node, which is why conveyor checks its scripts'
//! keys itself); code lost
//! by the slot's primary is loaded again; and a worker keeps every
//! acknowledged task across the failover of its slot's primary. On
//! clusters of the tests' own (three primaries with a replica each, on free
//! loopback ports).
#![cfg(has_redis_server)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::parts::Inspection;
use conveyor_core::{Backend, Error, Finish, NewTask, ReserveParams, SystemClock, TaskState};
use conveyor_redis::{RedisBackend, ScriptMode};
use conveyor_testkit::lost_claims::{lost_claim_is_fenced, reserve_one};
use conveyor_testkit::redis_cluster::{self, RedisCluster};

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking step")
}

async fn connect(url: &str, prefix: &str) -> Result<RedisBackend, Error> {
    RedisBackend::connect_with(url, prefix, Arc::new(SystemClock)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untagged_prefix_is_refused() {
    let url = blocking(|| redis_cluster::shared_url("")).await;
    let e = connect(&url, "jobs:").await.expect_err("no hash tag");
    let Error::InvalidConfig(said) = e else {
        panic!("not a configuration error: {e}");
    };
    assert!(
        said.contains("hash tag") && said.contains("{NAME}"),
        "{said}"
    );
    match conveyor_redis::SCHEME
        .open(&format!("{url}/?prefix=jobs:"))
        .await
    {
        Err(Error::InvalidConfig(_)) => {}
        Err(e) => panic!("not a configuration error: {e}"),
        Ok(_) => panic!("an untagged prefix was taken"),
    }
}

/// Three tags whose slots three different primaries serve.
fn tags_on_each_primary(c: &RedisCluster) -> Vec<(String, u16)> {
    let primaries = c.primaries();
    let mut found: Vec<(String, u16)> = Vec::new();
    let run = fastrand::u64(..);
    for i in 0.. {
        let tag = format!("spread-{run:x}-{i}");
        let p = c.primary_of(&tag);
        if !found.iter().any(|(_, q)| *q == p) {
            found.push((tag, p));
        }
        if found.len() == primaries.len() {
            return found;
        }
        assert!(i < 1000, "no tags found for every primary");
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_spread_over_the_primaries_each_whole_on_its_own() {
    let (url, spread) =
        blocking(|| redis_cluster::shared(|c| (c.url(""), tags_on_each_primary(c)))).await;
    assert_eq!(spread.len(), 3, "{spread:?}");
    let mut runs = Vec::new();
    for (tag, _) in &spread {
        let prefix = format!("{{{tag}}}:");
        let b = connect(&url, &prefix).await.expect("connect");
        runs.push(tokio::spawn(async move {
            let tasks = (0..50).map(|n| NewTask::new("work", vec![n]));
            b.enqueue_many(tasks.collect()).await.expect("enqueue");
            let queues = vec![conveyor_core::DEFAULT_QUEUE.to_string()];
            let mut done = 0;
            while done < 50 {
                let got = b
                    .reserve(ReserveParams::new(&queues, 20, Duration::from_secs(30)))
                    .await
                    .expect("reserve");
                assert!(!got.is_empty(), "work left in the namespace");
                done += got.len();
                let finishes = got.into_iter().map(|r| Finish::complete(r.lease));
                b.finish(finishes.collect()).await.expect("finish");
            }
            let completed: u64 = b
                .stats()
                .await
                .expect("stats")
                .iter()
                .map(|q| q.counts.get(&TaskState::Completed).copied().unwrap_or(0))
                .sum();
            assert_eq!(completed, 50);
            b
        }));
    }
    let mut backends = Vec::new();
    for r in runs {
        backends.push(r.await.expect("a namespace's run"));
    }
    // Each namespace's keys are on its own primary, and on no other.
    let (spread_again, per_node) = blocking(move || {
        redis_cluster::shared(|c| {
            let per_node: Vec<Vec<(String, u64)>> = spread
                .iter()
                .map(|(_, port)| {
                    spread
                        .iter()
                        .map(|(tag, _)| {
                            let slot = c.slot_of(tag).to_string();
                            let n = c
                                .cli(*port, &["CLUSTER", "COUNTKEYSINSLOT", &slot])
                                .expect("count keys");
                            (tag.clone(), n.trim().parse().expect("a count"))
                        })
                        .collect()
                })
                .collect();
            (spread.clone(), per_node)
        })
    })
    .await;
    for ((tag, port), counts) in spread_again.iter().zip(&per_node) {
        for (other, n) in counts {
            if other == tag {
                assert!(*n > 0, "{tag}'s keys are not on its primary {port}");
            } else {
                assert_eq!(*n, 0, "{other}'s keys on {tag}'s primary {port}");
            }
        }
    }
    for b in backends {
        assert!(b.clear().await.expect("clear") > 0);
        assert_eq!(b.clear().await.expect("clear again"), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_catches_a_stray_key_only_on_another_node() {
    // Why conveyor checks its scripts' keys itself (the key guard of debug
    // builds, and the lint over the scripts): Redis refuses a script's key
    // of another slot only when another node serves that slot; on the same
    // node the script runs, and would break once resharding moved the slot.
    let (same_node, other_node) = blocking(|| {
        redis_cluster::shared(|c| {
            let port = c.primary_of("mine");
            let inside = c.cli(
                port,
                &[
                    "EVAL",
                    "return redis.call('SET', KEYS[1] .. 'x', 1)",
                    "1",
                    "{mine}:",
                ],
            );
            assert_eq!(inside.as_deref(), Ok("OK"));
            c.cli(port, &["DEL", "{mine}:x"]).expect("del");
            let stray = |here: bool| {
                let key = (0..)
                    .map(|i| format!("stray-{i}"))
                    .find(|k| (c.primary_of(k) == port) == here)
                    .expect("a key of another slot");
                let said = c.cli(
                    port,
                    &[
                        "EVAL",
                        &format!("return redis.call('SET', '{key}', 1)"),
                        "1",
                        "{mine}:",
                    ],
                );
                if said.is_ok() {
                    c.cli(port, &["DEL", &key]).expect("del");
                }
                said
            };
            (stray(true), stray(false))
        })
    })
    .await;
    assert_eq!(same_node.as_deref(), Ok("OK"));
    let said = other_node.expect_err("a key on another node");
    assert!(said.contains("non local key"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_the_slots_primary_lost_is_loaded_again() {
    let (url, port) =
        blocking(|| redis_cluster::shared(|c| (c.url(""), c.primary_of("reload")))).await;
    let b = connect(&url, "{reload}:").await.expect("connect");
    assert_eq!(b.script_mode(), ScriptMode::Functions);
    b.enqueue(NewTask::new("work", vec![1]))
        .await
        .expect("enqueue");
    blocking(move || {
        redis_cluster::shared(|c| c.cli(port, &["FUNCTION", "FLUSH"]).expect("flush"))
    })
    .await;
    b.enqueue(NewTask::new("work", vec![2]))
        .await
        .expect("enqueue after the flush");
    assert!(b.clear().await.expect("clear") > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_lost_in_a_cluster_failover_is_never_issued_again() {
    // Asynchronous replication: the replica is cut off while a task is
    // reserved on the primary alone, the primary dies, and the replica the
    // cluster promotes never saw that reservation.
    let c = blocking(RedisCluster::start).await;
    let tag = "lost".to_string();
    let url = c.url("");
    let b: Arc<dyn Backend> = Arc::new(connect(&url, "{lost}:").await.expect("connect"));
    let task = b
        .enqueue(NewTask::new("work", vec![1]))
        .await
        .expect("enqueue")
        .id;
    let (mut c, primary, replica) = blocking(move || {
        let primary = c.primary_of("lost");
        let replica = c.replica_of(primary);
        c.node(primary).caught_up(c.node(replica));
        // Paused, and its link cut from the primary's side: what the
        // primary writes next never reaches it (a paused replica alone
        // would read it from its socket once resumed).
        c.node(replica).pause();
        let cut = c
            .cli(primary, &["CLIENT", "KILL", "TYPE", "replica"])
            .expect("cut the replica's link");
        assert_eq!(cut, "1");
        (c, primary, replica)
    })
    .await;
    let lost = reserve_one(b.as_ref()).await;
    assert_eq!(lost.lease.id, task);
    let killed_at = std::time::Instant::now();
    let c = blocking(move || {
        c.node_mut(primary).kill();
        c.killed = Some(primary);
        c.node(replica).resume();
        let promoted = c.wait_for_promotion(&tag, primary);
        assert_eq!(promoted, replica);
        c
    })
    .await;
    lost_claim_is_fenced(b.as_ref(), task, &lost).await;
    // What a failover costs here: from the primary's death to a task
    // settled on its successor (docs/high-availability.md).
    eprintln!(
        "SETTLED_ON_SUCCESSOR after_s={:.2}",
        killed_at.elapsed().as_secs_f64()
    );
    drop(b);
    blocking(move || drop(c)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_follows_a_cluster_failover() {
    conveyor_testkit::faults::failover_mid_run(common::fault_target(), || {
        Box::new(RedisCluster::start())
    })
    .await;
}
