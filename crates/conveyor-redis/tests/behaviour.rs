//! Redis-specific behaviour beyond the conformance suite: several connections
//! racing, namespaces cleaned up, memory bounded after pruning, wake-ups, and
//! bad data in the store.

mod common;

use conveyor_core::parts::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{keys_under, redis_url, Namespace};
use conveyor_core::{
    Backend, Clock, Error, Finish, FinishAction, ListParams, ManualClock, NewTask, ReserveParams,
    Retention, SystemClock, TaskId, TaskState,
};

const LEASE: Duration = Duration::from_secs(30);

fn task(handler: &str) -> NewTask {
    NewTask::new(handler, handler.as_bytes().to_vec())
}

fn default_queue() -> Vec<String> {
    vec![conveyor_core::DEFAULT_QUEUE.to_string()]
}

/// Reservers on separate connections never hold the same task, and tasks
/// sharing an ordering key run one at a time, in enqueue order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservers_on_separate_connections_share_nothing_and_keep_key_order() {
    let (ns, clock) = Namespace::manual().await;
    let n = 600;
    let keys = 10;
    let tasks: Vec<NewTask> = (0..n)
        .map(|i| {
            let t = task(&format!("t{i}")).priority((i % 3) as i32);
            if i % 3 == 0 {
                t
            } else {
                t.ordering_key(format!("k{}", i % keys))
            }
        })
        .collect();
    let key_of: HashMap<TaskId, Option<String>> = ns
        .backend
        .enqueue_many(tasks.clone())
        .await
        .expect("enqueue")
        .into_iter()
        .zip(&tasks)
        .map(|(e, t)| (e.id, t.ordering_key.clone()))
        .collect();
    let key_of = Arc::new(key_of);
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let running_keys = Arc::new(Mutex::new(HashSet::new()));
    let order: Arc<Mutex<BTreeMap<String, Vec<TaskId>>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut joins = Vec::new();
    for _ in 0..4 {
        let b = ns.another(clock.clone()).await;
        let (key_of, seen, running_keys, order, done) = (
            key_of.clone(),
            seen.clone(),
            running_keys.clone(),
            order.clone(),
            done.clone(),
        );
        joins.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while done.load(std::sync::atomic::Ordering::SeqCst) < n {
                assert!(Instant::now() < deadline, "reservers stalled");
                let got = b
                    .reserve(ReserveParams::new(&default_queue(), 16, LEASE))
                    .await
                    .expect("reserve");
                if got.is_empty() {
                    tokio::task::yield_now().await;
                    continue;
                }
                for r in &got {
                    assert!(
                        seen.lock().expect("lock").insert(r.lease.id),
                        "task {} reserved twice",
                        r.lease.id
                    );
                    if let Some(k) = &key_of[&r.lease.id] {
                        assert!(
                            running_keys.lock().expect("lock").insert(k.clone()),
                            "two tasks of key {k} running at once"
                        );
                        order
                            .lock()
                            .expect("lock")
                            .entry(k.clone())
                            .or_default()
                            .push(r.lease.id);
                    }
                }
                // Free the keys before reporting: once the report lands, the
                // next task of the key may be reserved by anyone.
                for r in &got {
                    if let Some(k) = &key_of[&r.lease.id] {
                        running_keys.lock().expect("lock").remove(k);
                    }
                }
                let out = b
                    .finish(
                        got.iter()
                            .map(|r| Finish::complete(r.lease.clone()))
                            .collect(),
                    )
                    .await
                    .expect("finish");
                assert!(out.iter().all(|r| r.is_ok()));
                done.fetch_add(got.len(), std::sync::atomic::Ordering::SeqCst);
            }
        }));
    }
    for j in joins {
        j.await.expect("reserver");
    }
    assert_eq!(seen.lock().expect("lock").len(), n);
    let order = order.lock().expect("lock");
    assert_eq!(order.len(), keys);
    for (k, ids) in order.iter() {
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, &sorted, "key {k} ran out of enqueue order");
    }
}

/// `clear` deletes every key of its namespace and none of another's.
#[tokio::test]
async fn clear_deletes_every_key_under_the_prefix() {
    let (ns, _clock) = Namespace::manual().await;
    let (other, _c2) = Namespace::manual().await;
    let b = &ns.backend;
    b.enqueue_many(vec![
        task("a").unique_key("u").ordering_key("o"),
        task("b").delay(Duration::from_secs(60)),
        task("c").queue("q2"),
    ])
    .await
    .expect("enqueue");
    b.reserve(ReserveParams::new(&default_queue(), 1, LEASE))
        .await
        .expect("reserve");
    other.backend.enqueue(task("x")).await.expect("enqueue");
    assert!(keys_under(ns.prefix()).len() > 5);
    let deleted = b.clear().await.expect("clear");
    assert!(deleted > 5);
    assert!(keys_under(ns.prefix()).is_empty());
    assert!(
        !keys_under(other.prefix()).is_empty(),
        "other namespaces stay"
    );
}

/// After every task finished and retention passed, pruning leaves nothing but
/// the id and token counters: no task records, no empty helper sets or key
/// maps.
#[tokio::test]
async fn memory_is_bounded_after_prune() {
    let (ns, clock) = Namespace::manual().await;
    let b = &ns.backend;
    let queues = vec!["default".to_string(), "other".to_string()];
    let enq = b
        .enqueue_many(vec![
            task("plain"),
            task("unique").unique_key("u"),
            task("k1").ordering_key("K"),
            task("k2").ordering_key("K").priority(5),
            task("delayed").delay(Duration::from_secs(10)),
            task("other")
                .queue("other")
                .unique_key("x")
                .ordering_key("Y"),
            task("cancel"),
            task("expire").max_attempts(1),
            task("retry").max_attempts(2),
            task("requeue").unique_key("r").ordering_key("R"),
            task("release"),
            task("discard"),
            // Kept for a time of their own: their keep, or their report's
            // retention.
            task("kept").keep(Duration::from_secs(30)),
            task("kept_cancel").keep(Duration::from_secs(30)),
            task("kept_expire")
                .max_attempts(1)
                .keep(Duration::from_secs(30)),
            task("retained").queue("other"),
        ])
        .await
        .expect("enqueue");
    for cancel in [enq[6].id, enq[13].id] {
        assert_eq!(
            b.cancel(cancel).await.expect("cancel"),
            TaskState::Cancelled
        );
    }
    let retained = Retention {
        finished: Duration::from_secs(30),
        dead: Duration::from_secs(30),
    };
    let mut requeued = false;
    let mut released = false;
    for _round in 0..20 {
        clock.advance(Duration::from_secs(60));
        b.recover_expired().await.expect("recover");
        let got = b
            .reserve(ReserveParams::new(&queues, 100, LEASE))
            .await
            .expect("reserve");
        let mut reports = Vec::new();
        let mut dead_now = Vec::new();
        for r in &got {
            let action = match r.handler.as_str() {
                "expire" | "kept_expire" => continue,
                "retry" => FinishAction::Retry {
                    delay: Duration::from_secs(1),
                    error: "again".into(),
                },
                "requeue" if !requeued => {
                    requeued = true;
                    dead_now.push(r.lease.id);
                    FinishAction::DeadLetter {
                        error: "once".into(),
                    }
                }
                "release" if !released => {
                    released = true;
                    FinishAction::Release
                }
                "discard" => FinishAction::Discard {
                    reason: "no".into(),
                },
                _ => FinishAction::Complete {
                    result: Some(b"ok".to_vec()),
                },
            };
            let report = Finish::new(r.lease.clone(), action);
            reports.push(if r.handler == "retained" {
                report.with_retention(retained)
            } else {
                report
            });
        }
        for res in b.finish(reports).await.expect("finish") {
            res.expect("report applies");
        }
        if !dead_now.is_empty() {
            assert_eq!(b.requeue_dead(&dead_now).await.expect("requeue"), 1);
        }
    }
    let stats = b.stats().await.expect("stats");
    for qs in &stats {
        for s in TaskState::UNFINISHED {
            assert_eq!(qs.count(s), 0, "{} still has {s} tasks", qs.queue);
        }
    }
    let dead: u64 = stats.iter().map(|q| q.count(TaskState::Dead)).sum();
    assert_eq!(dead, 3, "the expired ones and the retried task");
    let prefix = ns.prefix().to_string();
    let helpers: Vec<String> = keys_under(&prefix)
        .into_iter()
        .filter(|k| !k[prefix.len()..].starts_with("tasks:"))
        .filter(|k| !k.ends_with(":s:4") && !k.ends_with(":s:5") && !k.ends_with(":s:6"))
        // Completed and cancelled tasks kept for a time of their own: a
        // list per time, and the set of times.
        .filter(|k| !k.contains(":x:4:") && !k.contains(":x:6:"))
        .filter(|k| !k.ends_with(":xk:4") && !k.ends_with(":xk:6"))
        .collect();
    let want: Vec<String> = ["dead", "expires", "queues", "seq", "tokens"]
        .iter()
        .map(|k| format!("{prefix}{k}"))
        .collect();
    assert_eq!(
        helpers, want,
        "no unique, ordering, ready, timer or lease keys left"
    );
    clock.advance(Duration::from_secs(3600));
    let keep = Retention {
        finished: Duration::from_secs(60),
        dead: Duration::from_secs(600),
    };
    assert_eq!(b.prune(keep).await.expect("prune"), 16);
    // The counters of ids and lease tokens.
    assert_eq!(
        keys_under(&prefix),
        vec![format!("{prefix}seq"), format!("{prefix}tokens")]
    );
    assert!(b.stats().await.expect("stats").is_empty());
}

/// A waiting worker wakes when a task is enqueued on its queue (through the
/// published wake-up, long before its timeout); without work it returns at the
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_work_wakes_on_enqueue() {
    let ns = Namespace::new(Arc::new(SystemClock)).await;
    let producer = ns.another(Arc::new(SystemClock)).await;
    // The first wait starts the subscriber and returns at its timeout.
    assert!(
        ns.backend
            .wait_for_work(&default_queue(), Duration::from_millis(50))
            .await
    );
    subscribed(&format!("{}wake", ns.prefix())).await;
    // A worker does not hear finishes it never waits for.
    assert_eq!(subscribers(&format!("{}finished", ns.prefix())), 0);
    let woke = waiting_worker(&ns.backend).await;
    // Work on another queue does not wake it.
    producer
        .enqueue(task("elsewhere").queue("other"))
        .await
        .expect("enqueue");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!woke.is_finished(), "woken by another queue's work");
    producer.enqueue(task("w")).await.expect("enqueue");
    let woke = tokio::time::timeout(Duration::from_secs(20), woke)
        .await
        .expect("woken by the enqueue, not the 600 s timeout");
    assert!(woke.expect("waiter"));
}

/// Subscribers of `channel` now.
fn subscribers(channel: &str) -> u64 {
    let client = redis::Client::open(redis_url()).expect("url");
    let mut conn = client.get_connection().expect("connection");
    let (_, subscribers): (String, u64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query(&mut conn)
        .expect("numsub");
    subscribers
}

/// A worker waiting 600 s for work on the default queue, once the
/// wake-everyone that follows a (re)subscription is absorbed.
async fn waiting_worker(b: &conveyor_redis::RedisBackend) -> tokio::task::JoinHandle<bool> {
    b.wait_for_work(&default_queue(), Duration::from_millis(100))
        .await;
    let waiter = b.clone();
    tokio::spawn(async move {
        waiter
            .wait_for_work(&default_queue(), Duration::from_secs(600))
            .await
    })
}

/// Waits until `channel` has its one subscriber.
async fn subscribed(channel: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while subscribers(channel) != 1 {
        assert!(
            Instant::now() < deadline,
            "the subscriber of {channel} never came up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A program awaiting results hears finishes, not the wake-up each enqueue
/// publishes; once it also waits for work, the same subscriber adds the wake
/// channel and an enqueue wakes it. A result wait still ends at the finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_are_subscribed_once_something_waits_on_them() {
    let ns = Namespace::new(Arc::new(SystemClock)).await;
    let producer = ns.another(Arc::new(SystemClock)).await;
    let (wake, finished) = (
        format!("{}wake", ns.prefix()),
        format!("{}finished", ns.prefix()),
    );
    let id = producer.enqueue(task("r")).await.expect("enqueue").id;
    let mark = ns.backend.finish_mark().await.expect("a mark");
    subscribed(&finished).await;
    assert_eq!(subscribers(&wake), 0, "a result waiter hears enqueues");

    // Now it waits for work too: the wake channel joins, and an enqueue
    // wakes the waiter long before its timeout.
    assert!(
        ns.backend
            .wait_for_work(&default_queue(), Duration::from_millis(50))
            .await
    );
    subscribed(&wake).await;
    assert_eq!(subscribers(&finished), 1, "one subscriber, both channels");
    let woke = waiting_worker(&ns.backend).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    producer.enqueue(task("w")).await.expect("enqueue");
    tokio::time::timeout(Duration::from_secs(20), woke)
        .await
        .expect("woken by the enqueue, not the 600 s timeout")
        .expect("waiter");

    // The result wait from the mark taken before ends at the finish.
    let got = producer
        .reserve(ReserveParams::new(&default_queue(), 10, LEASE))
        .await
        .expect("reserve");
    let reserved = got.iter().find(|r| r.lease.id == id).expect("the task");
    let waiter = ns.backend.clone();
    let heard = tokio::spawn(async move {
        waiter
            .wait_finished(id, mark, Duration::from_secs(600))
            .await
    });
    let report = Finish::new(
        reserved.lease.clone(),
        FinishAction::Complete { result: None },
    );
    for res in producer.finish(vec![report]).await.expect("finish") {
        res.expect("report applies");
    }
    assert!(tokio::time::timeout(Duration::from_secs(20), heard)
        .await
        .expect("woken by the finish, not the 600 s timeout")
        .expect("waiter"));
}

/// Records that do not decode are errors naming the task, never panics; stray
/// index entries are dropped.
#[tokio::test]
async fn bad_data_is_an_error_not_a_panic() {
    let (ns, _clock) = Namespace::manual().await;
    let b = &ns.backend;
    let p = ns.prefix().to_string();
    let client = redis::Client::open(redis_url()).expect("url");
    let mut conn = client.get_connection().expect("connection");
    let ready = format!("{p}q:7:default:ready");
    let _: () = redis::cmd("HSET")
        .arg(format!("{p}t:999"))
        .arg("s")
        .arg(42)
        .arg("q")
        .arg("default")
        .query(&mut conn)
        .expect("hset");
    let err = b.get(TaskId(999)).await.expect_err("bad state code");
    assert!(
        matches!(&err, Error::Backend(m) if m.message().contains("unknown state code 42") && m.kind() == conveyor_core::BackendErrorKind::Data),
        "{err}"
    );
    let err = b.cancel(TaskId(999)).await.expect_err("bad state code");
    assert!(
        matches!(&err, Error::Backend(m) if m.message().contains("unknown state code") && m.kind() == conveyor_core::BackendErrorKind::Data),
        "{err}"
    );
    // A ready entry without a task behind it is dropped.
    let _: () = redis::cmd("ZADD")
        .arg(&ready)
        .arg(0)
        .arg("0000000000000997")
        .query(&mut conn)
        .expect("zadd");
    assert!(b
        .reserve(ReserveParams::new(&default_queue(), 10, LEASE))
        .await
        .expect("reserve")
        .is_empty());
    let left: u64 = redis::cmd("EXISTS")
        .arg(&ready)
        .query(&mut conn)
        .expect("exists");
    assert_eq!(left, 0);
    // A task missing its fields fails the reservation with a clear error.
    let _: () = redis::cmd("HSET")
        .arg(format!("{p}t:998"))
        .arg("s")
        .arg(1)
        .arg("q")
        .arg("default")
        .query(&mut conn)
        .expect("hset");
    let _: () = redis::cmd("ZADD")
        .arg(&ready)
        .arg(0)
        .arg("0000000000000998")
        .query(&mut conn)
        .expect("zadd");
    let err = b
        .reserve(ReserveParams::new(&default_queue(), 10, LEASE))
        .await
        .expect_err("bad task");
    assert!(
        matches!(&err, Error::Backend(m) if m.message().contains("task 998 has no") && m.kind() == conveyor_core::BackendErrorKind::Data),
        "{err}"
    );
}

/// A task's records in the namespace's record hashes that do not decode (a
/// state record, a data record, one without the other) are errors naming
/// the task in every operation that reads them, never panics; one whose
/// data names another queue is a stray entry of the ready set it sits in.
#[tokio::test]
async fn bad_records_are_errors_not_panics() {
    let (ns, _clock) = Namespace::manual().await;
    let b = &ns.backend;
    let p = ns.prefix().to_string();
    let client = redis::Client::open(redis_url()).expect("url");
    let mut conn = client.get_connection().expect("connection");
    let (state, data) = (format!("{p}tasks:state"), format!("{p}tasks:data"));
    let hset = |conn: &mut redis::Connection, key: &str, id: TaskId, v: &str| {
        let _: () = redis::cmd("HSET")
            .arg(key)
            .arg(id.0)
            .arg(v)
            .query(conn)
            .expect("hset");
    };
    let says = |err: &Error, text: &str| matches!(err, Error::Backend(m) if m.message().contains(text) && m.kind() == conveyor_core::BackendErrorKind::Data);

    // A state record that does not decode.
    let id = b.enqueue(task("t")).await.expect("enqueue").id;
    hset(&mut conn, &state, id, "1 x");
    let why = format!("task {id} has a state record that does not decode");
    let err = b.get(id).await.expect_err("bad state record");
    assert!(says(&err, &why), "{err}");
    let err = b.cancel(id).await.expect_err("bad state record");
    assert!(says(&err, &why), "{err}");
    let err = b
        .reserve(ReserveParams::new(&default_queue(), 10, LEASE))
        .await
        .expect_err("bad");
    assert!(says(&err, &why), "{err}");
    // A data record that does not decode.
    hset(&mut conn, &state, id, "1 0  0 5 ");
    hset(&mut conn, &data, id, "\u{9}\u{1}\u{0}\u{0}default");
    let err = b
        .reserve(ReserveParams::new(&default_queue(), 10, LEASE))
        .await
        .expect_err("bad");
    assert!(
        says(
            &err,
            &format!("task {id} has a data record that does not decode")
        ),
        "{err}"
    );
    // A state record without its data record.
    let _: () = redis::cmd("HDEL")
        .arg(&data)
        .arg(id.0)
        .query(&mut conn)
        .expect("hdel");
    let err = b.get(id).await.expect_err("no data record");
    assert!(
        says(
            &err,
            &format!("task {id} has a state record and no data record")
        ),
        "{err}"
    );
    // A task whose data names another queue is dropped from this ready set.
    let other = b
        .enqueue(task("o").queue("other"))
        .await
        .expect("enqueue")
        .id;
    let moved: String = redis::cmd("HGET")
        .arg(&data)
        .arg(other.0)
        .query(&mut conn)
        .expect("hget");
    hset(&mut conn, &data, id, &moved);
    hset(&mut conn, &state, id, "1 0  0 5 ");
    assert!(b
        .reserve(ReserveParams::new(&default_queue(), 10, LEASE))
        .await
        .expect("reserve")
        .is_empty());
    assert_eq!(b.stats().await.expect("stats").len(), 2);

    // A running task whose records were damaged before it finished.
    let good = b.enqueue(task("g")).await.expect("enqueue").id;
    let got = b
        .reserve(ReserveParams::new(&default_queue(), 10, LEASE))
        .await
        .expect("reserve");
    assert_eq!(
        got.iter().map(|r| r.lease.id).collect::<Vec<_>>(),
        vec![good]
    );
    hset(&mut conn, &data, good, "\u{7}\u{9}\u{0}\u{0}defaulth");
    let err = b
        .finish(vec![Finish::new(
            got[0].lease.clone(),
            FinishAction::Complete { result: None },
        )])
        .await
        .expect_err("bad data record");
    assert!(
        says(
            &err,
            &format!("task {good} has a data record that does not decode")
        ),
        "{err}"
    );
}

/// Ids across the hundreds the scripts format them by (99 -> 100, 199 ->
/// 200 ...): each task is stored under its own id and reserved in id order.
#[tokio::test]
async fn ids_across_hundreds_are_exact_and_in_order() {
    let (ns, _clock) = Namespace::manual().await;
    let b = &ns.backend;
    let tasks = (1..=250)
        .map(|i| NewTask::new("n", format!("{i}").into_bytes()))
        .collect();
    let enq = b.enqueue_many(tasks).await.expect("enqueue");
    let want: Vec<TaskId> = (1..=250).map(TaskId).collect();
    assert_eq!(enq.iter().map(|e| e.id).collect::<Vec<_>>(), want);
    let mut got = Vec::new();
    while got.len() < 250 {
        let more = b
            .reserve(ReserveParams::new(&default_queue(), 64, LEASE))
            .await
            .expect("reserve");
        assert!(!more.is_empty(), "reserve stalled at {}", got.len());
        got.extend(more);
    }
    for (r, id) in got.iter().zip(&want) {
        assert_eq!(r.lease.id, *id);
        assert_eq!(r.payload, id.0.to_string().into_bytes());
    }
    let rec = b.get(TaskId(200)).await.expect("get").expect("record");
    assert_eq!(rec.payload, b"200");
}

/// A task whose keys are too long for a byte-sized length (the data record's
/// long form) runs like any other: reserved with its ordering key, its keys
/// kept on its record, completed, and its unique key freed; so does one with
/// a keep of its own, which takes that form too.
#[tokio::test]
async fn long_keys_take_the_long_form_of_the_data_record() {
    let (ns, _clock) = Namespace::manual().await;
    let b = &ns.backend;
    let (uk, ok) = ("u".repeat(300), "o".repeat(254));
    let id = b
        .enqueue(task("long").unique_key(&uk).ordering_key(&ok))
        .await
        .expect("enqueue")
        .id;
    let got = b
        .reserve(ReserveParams::new(&default_queue(), 10, LEASE))
        .await
        .expect("reserve");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].ordering_key.as_deref(), Some(ok.as_str()));
    assert_eq!(got[0].handler, "long");
    let rec = b.get(id).await.expect("get").expect("record");
    assert_eq!(
        (rec.unique_key.as_deref(), rec.ordering_key.as_deref()),
        (Some(uk.as_str()), Some(ok.as_str()))
    );
    let out = b
        .finish(vec![Finish::new(
            got[0].lease.clone(),
            FinishAction::Complete {
                result: Some(b"r".to_vec()),
            },
        )])
        .await
        .expect("finish");
    assert!(out[0].is_ok());
    assert_eq!(
        b.get(id).await.expect("get").expect("record").state,
        TaskState::Completed
    );
    // The unique key is free again: a new task with it is not a duplicate.
    let again = b
        .enqueue(task("long").unique_key(&uk))
        .await
        .expect("enqueue");
    assert_ne!(again.id, id);
    // Long-form records, one for its unique key, one for its keep, through
    // the hot paths of reserve and of a plain completion.
    let (queue, handler) = ("longform".to_string(), "h".to_string());
    let queues = vec![queue.clone()];
    let plain = b
        .enqueue(
            NewTask::new(&handler, b"1".to_vec())
                .queue(&queue)
                .unique_key("v".repeat(300)),
        )
        .await
        .expect("enqueue")
        .id;
    let kept = b
        .enqueue(
            NewTask::new(&handler, b"2".to_vec())
                .queue(&queue)
                .keep(Duration::from_secs(90)),
        )
        .await
        .expect("enqueue")
        .id;
    let got = b
        .reserve(ReserveParams::new(&queues, 10, LEASE))
        .await
        .expect("reserve");
    assert_eq!(
        got.iter().map(|r| r.lease.id).collect::<Vec<_>>(),
        [plain, kept]
    );
    assert!(got.iter().all(|r| r.handler == handler && r.queue == queue));
    let reports = got
        .iter()
        .map(|r| Finish::complete(r.lease.clone()))
        .collect();
    assert!(b
        .finish(reports)
        .await
        .expect("finish")
        .iter()
        .all(Result::is_ok));
    let (p, k) = (
        b.get(plain).await.expect("get").expect("record"),
        b.get(kept).await.expect("get").expect("record"),
    );
    assert_eq!(
        (p.state, k.state),
        (TaskState::Completed, TaskState::Completed)
    );
    assert_eq!((p.keep, p.expires_at), (None, None));
    assert_eq!(k.keep, Some(Duration::from_secs(90)));
    assert_eq!(
        k.expires_at,
        k.finished_at.map(|t| t.plus(Duration::from_secs(90)))
    );
    let listed = b
        .list(&ListParams::new(TaskState::Completed).queue(queue.as_str()))
        .await
        .expect("list");
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        [plain, kept]
    );
}

/// A ready-set entry of a task that does not head its ordering key (left
/// there by a race, written here by hand) is moved to the parked set and
/// not counted as taken: a reservation of one still finds the task behind
/// it, and the entry is gone from the ready set.
#[tokio::test]
async fn a_ready_entry_behind_its_key_is_parked_not_counted() {
    let (ns, _clock) = Namespace::manual().await;
    let b = &ns.backend;
    let ready = format!("{}q:7:default:ready", ns.prefix());
    let client = redis::Client::open(redis_url()).expect("url");
    let mut conn = client.get_connection().expect("connection");
    let head = b
        .enqueue(task("a").ordering_key("k"))
        .await
        .expect("enqueue")
        .id;
    let behind = b
        .enqueue(task("b").ordering_key("k"))
        .await
        .expect("enqueue")
        .id;
    // The head's ready member is its id padded with zeros; the one behind
    // goes in front of it.
    let members: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(&ready)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut conn)
        .expect("zrange");
    assert_eq!(members.len(), 1, "only the head is ready: {members:?}");
    let (member, score) = &members[0];
    let stray = format!("{:0>width$}", behind.0, width = member.len());
    let _: () = redis::cmd("ZADD")
        .arg(&ready)
        .arg(score - 1.0)
        .arg(&stray)
        .query(&mut conn)
        .expect("zadd");

    let got = b
        .reserve(ReserveParams::new(&default_queue(), 1, LEASE))
        .await
        .expect("reserve");
    assert_eq!(
        got.iter().map(|r| r.lease.id).collect::<Vec<_>>(),
        vec![head]
    );
    let left: Option<f64> = redis::cmd("ZSCORE")
        .arg(&ready)
        .arg(&stray)
        .query(&mut conn)
        .expect("zscore");
    assert_eq!(left, None, "the entry behind its key left the ready set");
}

/// Time is the injected clock's, not the server's.
#[tokio::test]
async fn times_come_from_the_injected_clock() {
    let clock = Arc::new(ManualClock::new(conveyor_core::Timestamp(1_000)));
    let ns = Namespace::new(clock.clone()).await;
    let id = ns.backend.enqueue(task("t")).await.expect("enqueue").id;
    let rec = ns.backend.get(id).await.expect("get").expect("record");
    assert_eq!(rec.created_at, clock.now());
    let got = ns
        .backend
        .reserve(ReserveParams::new(&default_queue(), 1, LEASE))
        .await
        .expect("reserve");
    assert_eq!(got[0].lease_until, clock.now().plus(LEASE));
}
