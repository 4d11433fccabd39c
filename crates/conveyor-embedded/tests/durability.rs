//! What the file guarantees: tasks survive closing and reopening, concurrent
//! callers all land (the group-commit path), several backends and processes
//! share one file without handing a task out twice, and bad data in the file
//! is an error, never a panic.

#![allow(clippy::unwrap_used)] // tests unwrap freely: a panic is a failure report

mod common;

use conveyor_core::parts::*;
use std::collections::HashSet;
use std::sync::Arc;

use common::{queues, task, Fixture, LEASE};
use conveyor_core::{
    Backend, Error, Finish, FinishAction, ListParams, NewTask, ReserveParams, SystemClock,
    TaskState,
};
use conveyor_embedded::EmbeddedBackend;

#[tokio::test]
async fn reopening_keeps_every_task() {
    let f = Fixture::new();
    let tasks: Vec<NewTask> = (0..500).map(|i| task(&format!("t{i}"))).collect();
    let ids: Vec<_> = f
        .backend
        .enqueue_many(tasks)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    let running = f.reserve("default", 100).await;
    let done: Vec<_> = running[..50]
        .iter()
        .map(|r| {
            Finish::new(
                r.lease.clone(),
                FinishAction::Complete {
                    result: Some(vec![7]),
                },
            )
        })
        .collect();
    f.backend.finish(done).await.unwrap();
    let before = f.backend.stats().await.unwrap();

    // Closed and waited for, then reopened.
    let Fixture {
        dir,
        clock,
        backend,
    } = f;
    backend.close().await;
    let again =
        EmbeddedBackend::open_with_clock(dir.path().join("tasks.db"), clock.clone()).unwrap();
    assert_eq!(again.stats().await.unwrap(), before);
    for id in &ids {
        assert!(again.get(*id).await.unwrap().is_some());
    }
    let r = again.get(running[0].lease.id).await.unwrap().unwrap();
    assert_eq!(r.state, TaskState::Completed);
    assert_eq!(r.result, Some(vec![7]));

    // Dropped without waiting: whatever was acknowledged is there.
    let late = again.enqueue(task("late")).await.unwrap().id;
    drop(again);
    let third = EmbeddedBackend::open_with_clock(dir.path().join("tasks.db"), clock).unwrap();
    assert_eq!(
        third.get(late).await.unwrap().unwrap().state,
        TaskState::Available
    );
    assert_eq!(
        third
            .reserve(ReserveParams::new(&queues(&["default"]), 1000, LEASE))
            .await
            .unwrap()
            .len(),
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_all_land() {
    let f = Arc::new(Fixture::new());
    let mut handles = Vec::new();
    for t in 0..64 {
        let f = f.clone();
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..40 {
                let e = f.backend.enqueue(task(&format!("t{t}-{i}"))).await.unwrap();
                ids.push(e.id);
            }
            ids
        }));
    }
    let mut all = HashSet::new();
    for h in handles {
        for id in h.await.unwrap() {
            assert!(all.insert(id), "id {id} handed out twice");
        }
    }
    assert_eq!(all.len(), 64 * 40);
    let stats = f.backend.stats().await.unwrap();
    assert_eq!(stats[0].count(TaskState::Available), 64 * 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reservers_never_share_a_task() {
    let f = Arc::new(Fixture::new());
    let tasks: Vec<NewTask> = (0..2000).map(|i| task(&format!("t{i}"))).collect();
    f.backend.enqueue_many(tasks).await.unwrap();
    let mut handles = Vec::new();
    for _ in 0..16 {
        let f = f.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = f.reserve("default", 7).await;
                if got.is_empty() {
                    break mine;
                }
                let reports = got
                    .iter()
                    .map(|r| Finish::complete(r.lease.clone()))
                    .collect();
                for out in f.backend.finish(reports).await.unwrap() {
                    out.unwrap();
                }
                mine.extend(got.into_iter().map(|r| r.lease.id));
            }
        }));
    }
    let mut all = HashSet::new();
    for h in handles {
        for id in h.await.unwrap() {
            assert!(all.insert(id), "task {id} reserved twice");
        }
    }
    assert_eq!(all.len(), 2000);
}

#[tokio::test]
async fn two_backends_share_one_file() {
    let f = Fixture::new();
    let other = f.reopen();
    let a = f
        .backend
        .enqueue_many((0..300).map(|i| task(&format!("a{i}"))).collect());
    let b = other.enqueue_many((0..300).map(|i| task(&format!("b{i}"))).collect());
    let (a, b) = tokio::join!(a, b);
    assert_eq!(a.unwrap().len() + b.unwrap().len(), 600);
    let mut seen = HashSet::new();
    let q = queues(&["default"]);
    loop {
        let (x, y) = tokio::join!(
            f.backend.reserve(ReserveParams::new(&q, 50, LEASE)),
            other.reserve(ReserveParams::new(&q, 50, LEASE))
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        if x.is_empty() && y.is_empty() {
            break;
        }
        for r in x.iter().chain(&y) {
            assert!(
                seen.insert(r.lease.id),
                "task {} reserved twice",
                r.lease.id
            );
        }
    }
    assert_eq!(seen.len(), 600);
    // A unique key is unique across both handles.
    let one = f.backend.enqueue(task("u").unique_key("k")).await.unwrap();
    let two = other.enqueue(task("u").unique_key("k")).await.unwrap();
    assert!(two.duplicate);
    assert_eq!(one.id, two.id);
}

const CHILD_DB: &str = "CONVEYOR_EMBEDDED_CHILD_DB";

/// The schema version this build writes.
const SCHEMA_NOW: i64 = 14;

/// Run by `two_processes_share_one_file` in a child process; does nothing
/// when run on its own.
#[tokio::test]
#[ignore = "the child half of two_processes_share_one_file"]
async fn child_process_worker() {
    let Ok(path) = std::env::var(CHILD_DB) else {
        return;
    };
    let backend = EmbeddedBackend::open(&path).unwrap();
    let out = backend
        .enqueue_many(
            (0..500)
                .map(|i| task(&format!("c{i}")).queue("child"))
                .collect(),
        )
        .await
        .unwrap();
    assert_eq!(out.len(), 500);
    let completed = work_shared_queue(&backend).await;
    println!("child completed {completed}");
}

/// Reserves and completes `shared` tasks until none is left; returns how many.
async fn work_shared_queue(backend: &EmbeddedBackend) -> usize {
    let mut completed = 0;
    loop {
        let got = backend
            .reserve(ReserveParams::new(&queues(&["shared"]), 10, LEASE))
            .await
            .unwrap();
        if got.is_empty() {
            return completed;
        }
        let reports = got
            .iter()
            .map(|r| Finish::complete(r.lease.clone()))
            .collect();
        for out in backend.finish(reports).await.unwrap() {
            out.unwrap();
            completed += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let backend = EmbeddedBackend::open_with_clock(&path, Arc::new(SystemClock)).unwrap();
    backend
        .enqueue_many(
            (0..3000)
                .map(|i| task(&format!("s{i}")).queue("shared"))
                .collect(),
        )
        .await
        .unwrap();

    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_worker",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_DB, &path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let enqueued = backend
        .enqueue_many(
            (0..500)
                .map(|i| task(&format!("p{i}")).queue("child"))
                .collect(),
        )
        .await
        .unwrap();
    assert_eq!(enqueued.len(), 500);
    let mine = work_shared_queue(&backend).await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("child completed "))
        .unwrap_or_else(|| panic!("no count from the child: {stdout}"))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(mine + theirs, 3000, "each task completed exactly once");

    let stats = backend.stats().await.unwrap();
    let shared = stats.iter().find(|s| s.queue == "shared").unwrap();
    assert_eq!(shared.count(TaskState::Completed), 3000);
    let child_q = stats.iter().find(|s| s.queue == "child").unwrap();
    assert_eq!(child_q.count(TaskState::Available), 1000);
    // Every shared task ran exactly once: none needed a second attempt.
    let done = backend
        .list(
            &ListParams::new(TaskState::Completed)
                .queue("shared")
                .limit(10_000),
        )
        .await
        .unwrap();
    assert!(done.iter().all(|t| t.attempts == 1));
}

#[tokio::test]
async fn bad_data_is_an_error_not_a_panic() {
    let f = Fixture::new();
    let odd = f.enqueue(task("odd")).await;
    let poisoned = f.enqueue(task("poisoned")).await;
    let fine = f.enqueue(task("fine")).await;
    {
        let raw = rusqlite::Connection::open(f.path()).unwrap();
        raw.execute("UPDATE tasks SET state = 99 WHERE id = ?1", [odd.0 as i64])
            .unwrap();
        raw.execute(
            "UPDATE tasks SET payload = 42 WHERE id = ?1",
            [poisoned.0 as i64],
        )
        .unwrap();
        // The kept counts, edited the same way.
        raw.execute(
            "INSERT INTO task_counts (queue, handler, state, n) VALUES ('default', 'odd', 99, 1)",
            [],
        )
        .unwrap();
    }
    let err = f.backend.get(odd).await.unwrap_err();
    assert!(
        matches!(&err, Error::Backend(m) if m.message().contains("unknown state code 99") && m.kind() == conveyor_core::BackendErrorKind::Data),
        "{err}"
    );
    assert!(matches!(f.backend.stats().await, Err(Error::Backend(_))));
    assert!(matches!(
        f.backend.cancel(odd).await,
        Err(Error::Backend(_))
    ));

    // The unreadable task is dead-lettered; the queue goes on.
    let got = f.reserve("default", 10).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].lease.id, fine);
    let raw = rusqlite::Connection::open(f.path()).unwrap();
    let (state, error): (i64, String) = raw
        .query_row(
            "SELECT state, error FROM tasks WHERE id = ?1",
            [poisoned.0 as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(state, TaskState::Dead.code());
    assert!(error.contains("unreadable task"), "{error}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not.db");
    std::fs::write(&path, vec![b'x'; 8192]).unwrap();
    let err = EmbeddedBackend::open(&path).unwrap_err();
    assert!(matches!(err, Error::Backend(_)), "{err}");

    let newer = dir.path().join("newer.db");
    drop(EmbeddedBackend::open(&newer).unwrap());
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let err = EmbeddedBackend::open(&newer).unwrap_err();
    assert!(
        matches!(&err, Error::Backend(m) if m.message().contains("newer conveyor") && m.kind() == conveyor_core::BackendErrorKind::Config),
        "{err}"
    );
}

/// Requests that pile up while another process holds the write lock run as one
/// batch (one transaction); the ones that fail fail alone.
#[tokio::test]
async fn one_failing_request_does_not_fail_its_batch() {
    let f = Arc::new(Fixture::new());
    let stale = f.enqueue(task("stale")).await;
    let old = f.reserve("default", 1).await.remove(0);
    f.backend
        .finish(vec![Finish::new(old.lease.clone(), FinishAction::Release)])
        .await
        .unwrap();

    // Another connection takes the write lock: the database thread waits in
    // its busy timeout, and the requests below queue up behind it.
    let raw = rusqlite::Connection::open(f.path()).unwrap();
    raw.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut handles = Vec::new();
    for i in 0..20 {
        let f = f.clone();
        let old_lease = old.lease.clone();
        handles.push(tokio::spawn(async move {
            let b = &f.backend;
            match i % 4 {
                0 => b.enqueue(task(&format!("good{i}"))).await.map(|_| "ok"),
                1 => b.enqueue(task("")).await.map(|_| "ok"),
                2 => b.cancel(conveyor_core::TaskId(777_777)).await.map(|_| "ok"),
                _ => b
                    .finish(vec![Finish::complete(old_lease)])
                    .await
                    .map(|mut r| if r.remove(0).is_err() { "stale" } else { "ok" }),
            }
        }));
    }
    // Let every request reach the database thread's inbox.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    raw.execute_batch("COMMIT").unwrap();
    for (i, h) in handles.into_iter().enumerate() {
        let out = h.await.unwrap();
        match i % 4 {
            0 => assert_eq!(out.unwrap(), "ok"),
            1 => assert!(matches!(out, Err(Error::InvalidConfig(_)))),
            2 => assert!(matches!(out, Err(Error::NotFound(_)))),
            _ => assert_eq!(out.unwrap(), "stale"),
        }
    }
    let stats = f.backend.stats().await.unwrap();
    assert_eq!(
        stats[0].count(TaskState::Available),
        6,
        "five good ones and `stale`"
    );
    // The kept counts are the table's, the failed requests left nothing.
    let counted: i64 = raw
        .query_row(
            "SELECT count(*) FROM tasks WHERE state = ?1",
            [TaskState::Available.code()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(counted, 6);
    assert_eq!(
        f.backend.get(stale).await.unwrap().unwrap().state,
        TaskState::Available
    );
}

/// A statement that fails half-way leaves nothing of its request: the hot
/// statements take no statement journal of their own (`OR FAIL`), so the
/// request's savepoint or transaction is what undoes the rows it wrote
/// first. Here the second row of a multi-row insert runs out of ids, and
/// then is refused by a trigger.
#[tokio::test]
async fn an_insert_that_fails_half_way_leaves_none_of_its_rows() {
    let f = Fixture::new();
    f.enqueue(task("first")).await;
    let raw = rusqlite::Connection::open(f.path()).unwrap();
    raw.execute(
        "UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'tasks'",
        [i64::MAX - 1],
    )
    .unwrap();
    let three: Vec<NewTask> = (0..3).map(|i| task(&format!("t{i}"))).collect();
    let err = f.backend.enqueue_many(three.clone()).await.unwrap_err();
    assert!(err.is_transient(), "nothing applied, try again: {err}");
    // The row that got the last id went with the others.
    assert_rows_and_counts(&f, &raw, 1).await;

    // Ids to spare again: the same call passes, whole.
    raw.execute(
        "UPDATE sqlite_sequence SET seq = 1 WHERE name = 'tasks'",
        [],
    )
    .unwrap();
    let ids = f.backend.enqueue_many(three).await.unwrap();
    assert_eq!(ids.len(), 3);
    assert_rows_and_counts(&f, &raw, 4).await;

    // A refusal that leaves the transaction open (a trigger's `FAIL` on the
    // second row): the request is undone by the store, not by SQLite.
    raw.execute_batch(
        "CREATE TRIGGER refuse BEFORE INSERT ON tasks WHEN NEW.handler = 'refused' \
         BEGIN SELECT RAISE(FAIL, 'refused by a trigger'); END;",
    )
    .unwrap();
    let err = f
        .backend
        .enqueue_many(vec![task("fine"), task("refused"), task("fine")])
        .await
        .unwrap_err();
    let why = err.chain().to_string();
    assert!(why.contains("refused by a trigger"), "{why}");
    // The row before the refused one was undone.
    assert_rows_and_counts(&f, &raw, 4).await;
}

/// The file holds `n` tasks, all available, and its kept counts say so.
async fn assert_rows_and_counts(f: &Fixture, raw: &rusqlite::Connection, n: i64) {
    let rows: i64 = raw
        .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, n, "rows in the file");
    let stats = f.backend.stats().await.unwrap();
    assert_eq!(
        stats[0].count(TaskState::Available),
        n.unsigned_abs(),
        "kept counts"
    );
}

/// A file written before schema version 6 (no `trace` column) migrates when
/// opened: its tasks read back with no trace context, new tasks keep theirs.
#[tokio::test]
async fn a_version_5_file_migrates_to_trace_contexts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let old = {
        let b = EmbeddedBackend::open(&path).unwrap();
        b.enqueue(task("old")).await.unwrap().id
    };
    {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(
            "ALTER TABLE tasks DROP COLUMN trace; ALTER TABLE tasks DROP COLUMN worker;
             ALTER TABLE tasks DROP COLUMN started_at; ALTER TABLE tasks DROP COLUMN history;
             PRAGMA user_version = 5",
        )
        .unwrap();
    }
    let b = EmbeddedBackend::open(&path).unwrap();
    assert_eq!(user_version(&path), SCHEMA_NOW);
    assert_eq!(b.get(old).await.unwrap().unwrap().trace, None);
    let ctx = conveyor_core::TraceContext::new(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        Some("k=v".into()),
    )
    .unwrap();
    let new = b.enqueue(task("new").trace(ctx.clone())).await.unwrap().id;
    let got = b
        .reserve(ReserveParams::new(&queues(&["default"]), 10, LEASE))
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    for r in got {
        let want = (r.lease.id == new).then(|| ctx.clone());
        assert_eq!(r.trace, want);
    }
    assert_eq!(b.get(new).await.unwrap().unwrap().trace, Some(ctx));
}

/// A file written before schema version 8 (no attempt columns) migrates when
/// opened: its tasks read back with no history, new attempts are kept.
#[tokio::test]
async fn a_version_6_file_migrates_to_attempt_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let old = {
        let b = EmbeddedBackend::open(&path).unwrap();
        b.enqueue(task("old")).await.unwrap().id
    };
    {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(
            "ALTER TABLE tasks DROP COLUMN worker; ALTER TABLE tasks DROP COLUMN started_at;
             ALTER TABLE tasks DROP COLUMN history; PRAGMA user_version = 6",
        )
        .unwrap();
    }
    let b = EmbeddedBackend::open(&path).unwrap();
    assert_eq!(user_version(&path), SCHEMA_NOW);
    assert!(b.get(old).await.unwrap().unwrap().history.is_empty());
    let q = queues(&["default"]);
    let params = conveyor_core::ReserveParams::new(&q, 1, LEASE).worker("w");
    let got = b.reserve(params).await.unwrap();
    let history = b.get(got[0].lease.id).await.unwrap().unwrap().history;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].worker.as_deref(), Some("w"));
}

/// A file written before schema version 9 (with the index over running
/// tasks per handler) migrates when opened: the index goes, and a limited
/// handler's tasks already running still count against its limit.
#[tokio::test]
async fn a_version_8_file_migrates_to_counting_running_tasks_from_the_kept_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let b = EmbeddedBackend::open(&path).unwrap();
        b.set_limits("lim", conveyor_core::HandlerLimits::none().concurrency(2))
            .await
            .unwrap();
        b.enqueue_many((0..5).map(|_| task("lim")).collect())
            .await
            .unwrap();
        let got = b
            .reserve(ReserveParams::new(&queues(&["default"]), 1, LEASE))
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
    }
    {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(
            "CREATE INDEX tasks_running_handler ON tasks (handler) WHERE state IN (2);
             PRAGMA user_version = 8",
        )
        .unwrap();
    }
    let b = EmbeddedBackend::open(&path).unwrap();
    assert_eq!(user_version(&path), SCHEMA_NOW);
    let raw = rusqlite::Connection::open(&path).unwrap();
    let index: i64 = raw
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'tasks_running_handler'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(index, 0, "the index is dropped");
    let got = b
        .reserve(ReserveParams::new(&queues(&["default"]), 10, LEASE))
        .await
        .unwrap();
    assert_eq!(
        got.len(),
        1,
        "one running before the migration: one more fits"
    );
}

/// Reserves the next task of the default queue and completes it.
async fn complete_next(b: &EmbeddedBackend) {
    let got = b
        .reserve(ReserveParams::new(&queues(&["default"]), 1, LEASE))
        .await
        .unwrap();
    let done = conveyor_core::Finish::complete(got[0].lease.clone());
    b.finish(vec![done]).await.unwrap().pop().unwrap().unwrap();
}

/// A file written before schema version 10 (no keep or expiry) migrates
/// when opened: its finished tasks have no expiry and go by the retention
/// `prune` is given; a task enqueued after keeps its own.
#[tokio::test]
async fn a_version_9_file_migrates_to_tasks_expiring_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let old = {
        let b = EmbeddedBackend::open(&path).unwrap();
        let id = b.enqueue(task("old")).await.unwrap().id;
        complete_next(&b).await;
        id
    };
    {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(
            "DROP INDEX tasks_expiring; ALTER TABLE tasks DROP COLUMN keep_ms;
             ALTER TABLE tasks DROP COLUMN expires_at; PRAGMA user_version = 9",
        )
        .unwrap();
    }
    let b = EmbeddedBackend::open(&path).unwrap();
    assert_eq!(user_version(&path), SCHEMA_NOW);
    let rec = b.get(old).await.unwrap().unwrap();
    assert_eq!((rec.keep, rec.expires_at), (None, None));
    let kept = std::time::Duration::from_secs(3600);
    let new = b.enqueue(task("new").keep(kept)).await.unwrap().id;
    complete_next(&b).await;
    let rec = b.get(new).await.unwrap().unwrap();
    assert_eq!(rec.keep, Some(kept));
    assert_eq!(rec.expires_at, rec.finished_at.map(|at| at.plus(kept)));
    // A prune that keeps nothing without an expiry takes the old task only.
    let none = conveyor_core::Retention {
        finished: std::time::Duration::ZERO,
        dead: std::time::Duration::ZERO,
    };
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(b.prune(none).await.unwrap(), 1);
    assert!(b.get(old).await.unwrap().is_none());
    assert!(b.get(new).await.unwrap().is_some());
}

/// A file of schema version 11 (each workflow's declaration in its row)
/// migrates when opened: the declaration moves to `workflow_specs`, and a
/// workflow submitted before goes on to its end.
#[tokio::test]
async fn a_version_11_file_migrates_workflow_declarations_out_of_their_rows() {
    use conveyor_core::workflow::{WorkflowSpec, WorkflowState};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let id = {
        let b = EmbeddedBackend::open(&path).unwrap();
        let json = |h: &str| conveyor_core::NewTask::new(h, b"[]".to_vec());
        let spec = WorkflowSpec::chain([json("first"), json("second")]);
        conveyor_core::Workflows::submit(&b, spec).await.unwrap().id
    };
    {
        // As version 11 wrote it: the declaration in the row, no table.
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(
            "UPDATE workflows SET spec = (SELECT spec FROM workflow_specs
                 WHERE workflow_specs.id = workflows.id);
             DROP TABLE workflow_specs; PRAGMA user_version = 11",
        )
        .unwrap();
    }
    let b = EmbeddedBackend::open(&path).unwrap();
    assert_eq!(user_version(&path), SCHEMA_NOW);
    {
        let raw = rusqlite::Connection::open(&path).unwrap();
        let (moved, left): (i64, i64) = raw
            .query_row(
                "SELECT (SELECT count(*) FROM workflow_specs),
                        (SELECT length(spec) FROM workflows WHERE id = ?1)",
                [id.0 as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((moved, left), (1, 0), "moved out, the row's copy emptied");
    }
    complete_next(&b).await;
    complete_next(&b).await;
    let w = b.workflow(id).await.unwrap().unwrap();
    assert_eq!(w.state, WorkflowState::Succeeded);
}

/// Reservations that land in one write transaction (the group-commit path)
/// see one another's running tasks: a limited handler's running count is
/// the kept count plus what the transaction moved and has not written yet.
#[tokio::test]
async fn concurrent_reservations_in_one_transaction_respect_a_concurrency_limit() {
    for round in 0..20 {
        let f = Fixture::new();
        f.backend
            .set_limits("lim", conveyor_core::HandlerLimits::none().concurrency(3))
            .await
            .unwrap();
        f.backend
            .enqueue_many((0..40).map(|_| task("lim")).collect())
            .await
            .unwrap();
        let q = queues(&["default"]);
        let r = || f.backend.reserve(ReserveParams::new(&q, 2, LEASE));
        // Polled together: all eight are queued before the first is answered.
        let (a, b, c, d, e, g, h, i) = tokio::join!(r(), r(), r(), r(), r(), r(), r(), r());
        let got: usize = [a, b, c, d, e, g, h, i]
            .into_iter()
            .map(|r| r.unwrap().len())
            .sum();
        assert_eq!(got, 3, "round {round}: at most the limit runs");
    }
}

/// The schema version written in the file at `path`.
fn user_version(path: &std::path::Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}
