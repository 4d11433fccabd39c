//! Concurrent enqueues share script calls (group enqueue): each caller still
//! gets the ids of its own tasks, in its order, and a call is all or nothing
//! even when the group it rode in fails.

mod common;

use std::sync::Arc;

use common::{redis_url, Namespace};
use conveyor_core::{Backend, Error, NewTask, ResultStore, SystemClock, TaskId, TaskState};
use conveyor_testkit::count_in;

/// Many callers at once, with batches of every size (one, a few, more than a
/// group holds): every id is new, and each id's task is the caller's task at
/// that position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_caller_gets_the_ids_of_its_own_tasks_in_order() {
    let ns = Namespace::new(Arc::new(SystemClock)).await;
    let backend = ns.backend.clone();
    let sizes = [1usize, 1, 3, 7, 1, 1_200, 2, 1, 40, 1];
    let mut joins = Vec::new();
    for caller in 0..64usize {
        let backend = backend.clone();
        let size = sizes[caller % sizes.len()];
        joins.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for call in 0..3usize {
                let tasks: Vec<NewTask> = (0..size)
                    .map(|i| {
                        let payload = format!("{caller}/{call}/{i}").into_bytes();
                        NewTask::new("h", payload).queue(format!("q{}", caller % 3))
                    })
                    .collect();
                let out = backend.enqueue_many(tasks.clone()).await.expect("enqueue");
                assert_eq!(out.len(), tasks.len(), "one id per task");
                for (e, t) in out.into_iter().zip(tasks) {
                    assert!(!e.duplicate);
                    mine.push((e.id, t.payload, t.queue));
                }
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for j in joins {
        all.extend(j.await.expect("caller"));
    }
    let mut ids: Vec<TaskId> = all.iter().map(|(id, _, _)| *id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all.len(), "every id is new");
    for (id, payload, queue) in all {
        let record = backend.get(id).await.expect("get").expect("stored");
        assert_eq!(
            record.payload, payload,
            "task {id} holds its caller's params"
        );
        assert_eq!(record.queue, queue);
    }
}

/// Calls into a queue whose ready set cannot be written (damaged by
/// something else) fail, and only they: every call beside them, in whatever
/// group it rode, succeeds with every task stored as sent, and no id is ever
/// given to two tasks, though the failed calls stopped half way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_queue_fails_only_its_own_calls_and_no_id_is_given_twice() {
    let ns = Namespace::new(Arc::new(SystemClock)).await;
    let backend = ns.backend.clone();
    // The damaged queue's ready set is a string: ZADD to it fails.
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let ready = format!("{}q:7:damaged:ready", ns.prefix());
    let _: () = redis::cmd("SET")
        .arg(&ready)
        .arg("not a sorted set")
        .query_async(&mut conn)
        .await
        .expect("SET");
    let mut succeeded = Vec::new();
    let mut failed = 0;
    for round in 0..10 {
        let mut joins = Vec::new();
        for caller in 0..24usize {
            let backend = backend.clone();
            joins.push(tokio::spawn(async move {
                let queue = if caller % 4 == 0 { "damaged" } else { "fine" };
                let tasks: Vec<NewTask> = (0..1 + caller % 3)
                    .map(|i| {
                        let payload = format!("{round}/{caller}/{i}").into_bytes();
                        NewTask::new("h", payload).queue(queue)
                    })
                    .collect();
                (queue, tasks.clone(), backend.enqueue_many(tasks).await)
            }));
        }
        for j in joins {
            let (queue, tasks, outcome) = j.await.expect("caller");
            match outcome {
                Ok(out) => {
                    assert_eq!(
                        queue, "fine",
                        "a call into the damaged queue cannot succeed"
                    );
                    assert_eq!(out.len(), tasks.len());
                    succeeded.extend(out.into_iter().zip(tasks).map(|(e, t)| (e.id, t.payload)));
                }
                Err(e) => {
                    assert_eq!(queue, "damaged", "a call beside it failed: {e}");
                    assert!(matches!(e, Error::Backend(_)), "{e}");
                    assert!(e.to_string().contains("WRONGTYPE"), "{e}");
                    failed += 1;
                }
            }
        }
    }
    assert_eq!(failed, 10 * 6, "every call into the damaged queue fails");
    // Checked after every round: a later call never took over an id.
    for (id, payload) in &succeeded {
        let record = backend.get(*id).await.expect("get").expect("stored");
        assert_eq!(
            &record.payload, payload,
            "task {id} holds its caller's params"
        );
    }
    let mut ids: Vec<TaskId> = succeeded.iter().map(|(id, _)| *id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), succeeded.len(), "no id given twice");
}

/// Requests whose task forms the script cannot read (a task repeating the
/// one before it while first, an unknown form, forms that take other than
/// the stated number of arguments) fail alone, with conveyor's words and
/// nothing written for them; the requests beside them in the same call are
/// stored, a run of like tasks (`=`) included.
#[tokio::test]
async fn requests_whose_tasks_do_not_read_fail_alone() {
    let ns = Namespace::new(Arc::new(SystemClock)).await;
    let lib = ns.backend.function_library().expect("a function library");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
        .to_string();
    let d = |p: &str| format!("1 3 {now}  0 {p}");
    // A 'p' form: a task of handler h due now, with params p.
    let plain = |p: &str| ["p", "default", "h", &d(p), "0", &now].map(String::from);
    let mut call = redis::cmd("FCALL");
    call.arg(format!("{lib}_enqueue")).arg(0).arg(ns.prefix());
    call.arg(&now).arg(5);
    // Stored: one plain task.
    call.arg(1).arg(6).arg(&plain("one"));
    // Refused: the first task repeats the one before it.
    call.arg(1).arg(2).arg("=").arg(d("x"));
    // Refused: its forms take more arguments than it says.
    call.arg(2).arg(3).arg("p").arg("default").arg("h");
    // Refused: an unknown form.
    call.arg(1).arg(2).arg("z").arg(d("x"));
    // Stored: a task and one like it.
    call.arg(2).arg(8).arg(&plain("two"));
    call.arg("=").arg(d("three"));
    let mut raw = redis::Client::open(redis_url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let replies: Vec<redis::Value> = call.query_async(&mut raw).await.expect("FCALL");
    let text = |v: &redis::Value| format!("{v:?}");
    assert_eq!(replies.len(), 5);
    for (i, why) in [
        (1, "task 1 repeats the task before it"),
        (2, "task 1 has too few arguments"),
        (3, "task 1 has an unknown form z"),
    ] {
        assert!(
            text(&replies[i]).contains(why),
            "{i}: {}",
            text(&replies[i])
        );
    }
    let ids = |v: &redis::Value| -> Vec<u64> {
        let redis::Value::Array(items) = v else {
            panic!("an array: {v:?}")
        };
        items
            .iter()
            .map(|i| redis::from_redis_value_ref(i).expect("a number"))
            .collect()
    };
    let one = ids(&replies[0]);
    let run = ids(&replies[4]);
    assert_eq!((one.len(), one[0]), (2, 1), "stored, no duplicates");
    assert_eq!((run.len(), run[0]), (2, 1), "stored, no duplicates");
    let first = run[1];
    for (id, payload) in [(one[1], "one"), (first, "two"), (first + 1, "three")] {
        let record = ns
            .backend
            .get(TaskId(id))
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(record.payload, payload.as_bytes());
        assert_eq!(record.handler, "h");
    }
    let available = count_in(&ns.backend, TaskState::Available).await;
    assert_eq!(available, 3, "nothing of the refused requests");
}
