//! Migrations: applied once, idempotent, safe when many processes start at
//! once; a configurable schema; bad rows become errors, not panics.

mod common;

use conveyor_core::parts::*;
use std::sync::Arc;

use conveyor_core::{Backend, Error, ListParams, NewTask, ReserveParams, SystemClock, TaskState};
use conveyor_postgres::{PostgresBackend, SCHEMA_VERSION};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrating_again_changes_nothing() {
    let scoped = common::Scoped::new(Arc::new(SystemClock)).await;
    let b = &scoped.backend;
    let again = b.migrate().await.expect("migrate again");
    assert_eq!(again.from, SCHEMA_VERSION);
    assert_eq!(again.to, SCHEMA_VERSION);
    assert!(!again.changed());
    // A second backend on the same schema finds it ready and shares its tasks.
    let other = PostgresBackend::connect_with(&common::url(), b.schema(), Arc::new(SystemClock))
        .await
        .expect("connect");
    let id = b
        .enqueue(NewTask::new("t", Vec::new()))
        .await
        .expect("enqueue")
        .id;
    assert!(other.get(id).await.expect("get").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrators_apply_each_version_once() {
    let url = common::url();
    let guard = common::SchemaGuard::fresh();
    let schema = guard.0.clone();
    let mut joins = Vec::new();
    for _ in 0..6 {
        let url = url.clone();
        let schema = schema.clone();
        joins.push(tokio::spawn(async move {
            PostgresBackend::builder(&url)
                .schema(&schema)
                .pool_size(1)
                .connect()
                .await
        }));
    }
    let mut applied = 0;
    for j in joins {
        let backend = j.await.expect("join").expect("connect and migrate");
        applied += usize::from(backend.migrate().await.expect("migrate").changed());
    }
    assert_eq!(
        applied, 0,
        "every migrator after the connects finds nothing to do"
    );
    let client = common::client().await;
    let rows = client
        .query(
            &format!("SELECT version FROM \"{schema}\".migrations ORDER BY version"),
            &[],
        )
        .await
        .expect("read migrations");
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    // Every migration once, in order, up to the current one. (Not simply
    // 1..=SCHEMA_VERSION: version 7 is written beside version 8 and the two
    // meet when merged.)
    assert_eq!(versions.first(), Some(&1));
    assert_eq!(versions.last(), Some(&SCHEMA_VERSION));
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_without_migrating_leaves_the_schema_alone() {
    let guard = common::SchemaGuard::fresh();
    let schema = guard.0.clone();
    let b = PostgresBackend::builder(&common::url())
        .schema(&schema)
        .migrate(false)
        .connect()
        .await
        .expect("connect");
    let err = b.get(conveyor_core::TaskId(1)).await;
    assert!(
        matches!(err, Err(Error::Backend(_))),
        "no table yet: {err:?}"
    );
    let done = b.migrate().await.expect("migrate");
    assert_eq!((done.from, done.to), (0, SCHEMA_VERSION));
    assert!(b
        .get(conveyor_core::TaskId(1))
        .await
        .expect("get")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_and_urls_are_configuration_errors() {
    let bad_schema = PostgresBackend::connect_with(
        &common::url(),
        "no-dashes; DROP TABLE x",
        Arc::new(SystemClock),
    )
    .await;
    assert!(matches!(bad_schema, Err(Error::InvalidConfig(_))));
    let bad_url = PostgresBackend::connect("postgres://[nonsense").await;
    assert!(matches!(bad_url, Err(Error::InvalidConfig(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_state_codes_are_errors_not_panics() {
    let scoped = common::Scoped::new(Arc::new(SystemClock)).await;
    let b = &scoped.backend;
    let id = b
        .enqueue(NewTask::new("t", Vec::new()))
        .await
        .expect("enqueue")
        .id;
    let client = common::client().await;
    client
        .execute(
            &format!("UPDATE \"{}\".tasks SET state = 42", b.schema()),
            &[],
        )
        .await
        .expect("corrupt the row");
    let got = b.get(id).await;
    match got {
        Err(Error::Backend(e)) => {
            assert!(e.message().contains("unknown state code 42"), "{e}");
            assert_eq!(e.kind(), conveyor_core::BackendErrorKind::Data);
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert!(matches!(b.stats().await, Err(Error::Backend(_))));
    assert!(matches!(b.cancel(id).await, Err(Error::Backend(_))));
    // States it knows still work.
    assert!(b
        .list(&ListParams::new(TaskState::Available).limit(10))
        .await
        .expect("list")
        .is_empty());
}

/// Runs `sql` on `schema` (taking it back to an older version), then
/// connects a backend to it, which migrates it to the current version.
async fn migrated_from(schema: &str, sql: &str, what: &str) -> PostgresBackend {
    common::client().await.batch_execute(sql).await.expect(what);
    let again = PostgresBackend::connect_with(&common::url(), schema, Arc::new(SystemClock))
        .await
        .expect("connect and migrate");
    assert_eq!(
        again.schema_version().await.expect("version"),
        Some(SCHEMA_VERSION)
    );
    again
}

/// A schema at version 5 (tasks without a `trace` column) migrates to 7: its
/// tasks read back with no trace context, new ones keep theirs, and the
/// kept counts count the tasks it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_5_schema_gains_trace_contexts() {
    let scoped = common::Scoped::new(Arc::new(SystemClock)).await;
    let b = &scoped.backend;
    let old = b
        .enqueue(NewTask::new("old", Vec::new()))
        .await
        .expect("enqueue")
        .id;
    let schema = b.schema().to_string();
    let again = migrated_from(
        &schema,
        &format!(
            "ALTER TABLE \"{schema}\".tasks DROP COLUMN trace, DROP COLUMN worker,
                 DROP COLUMN started_at, DROP COLUMN history;
             DROP TABLE \"{schema}\".task_counts;
             DROP FUNCTION \"{schema}\".count_inserted() CASCADE;
             DROP FUNCTION \"{schema}\".count_updated() CASCADE;
             DROP FUNCTION \"{schema}\".count_deleted() CASCADE;
             DELETE FROM \"{schema}\".migrations WHERE version >= 6;"
        ),
        "back to version 5",
    )
    .await;
    // Migration 7 counted the task already there.
    let stats = again.stats().await.expect("stats");
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].count(TaskState::Available), 1);
    assert_eq!(
        again.get(old).await.expect("get").expect("old task").trace,
        None
    );
    let ctx = conveyor_core::TraceContext::new(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        None,
    )
    .expect("valid");
    let new = again
        .enqueue(NewTask::new("new", Vec::new()).trace(ctx.clone()))
        .await
        .expect("enqueue")
        .id;
    assert_eq!(
        again.get(new).await.expect("get").expect("new task").trace,
        Some(ctx)
    );
}

/// A schema at version 6 (no kept counts, no attempt columns) migrates to 8:
/// its tasks read back with no history, new attempts are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_6_schema_gains_attempt_history() {
    let scoped = common::Scoped::new(Arc::new(SystemClock)).await;
    let b = &scoped.backend;
    let old = b
        .enqueue(NewTask::new("old", Vec::new()))
        .await
        .expect("enqueue")
        .id;
    let schema = b.schema().to_string();
    let again = migrated_from(
        &schema,
        &format!(
            "ALTER TABLE \"{schema}\".tasks DROP COLUMN worker, DROP COLUMN started_at,
                 DROP COLUMN history;
             DROP TABLE \"{schema}\".task_counts;
             DROP FUNCTION \"{schema}\".count_inserted() CASCADE;
             DROP FUNCTION \"{schema}\".count_updated() CASCADE;
             DROP FUNCTION \"{schema}\".count_deleted() CASCADE;
             DELETE FROM \"{schema}\".migrations WHERE version > 6;"
        ),
        "back to version 6",
    )
    .await;
    assert!(again
        .get(old)
        .await
        .expect("get")
        .expect("old task")
        .history
        .is_empty());
    let queues = vec!["default".to_string()];
    let params = conveyor_core::ReserveParams::new(&queues, 1, std::time::Duration::from_secs(30))
        .worker("w");
    let got = again.reserve(params).await.expect("reserve");
    let history = again
        .get(got[0].lease.id)
        .await
        .expect("get")
        .expect("task")
        .history;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].worker.as_deref(), Some("w"));
}

/// A schema at version 8 (with the index that counted a handler's running
/// tasks) migrates to 9: the index is gone, and the tasks it held still count
/// against their handler's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_8_schema_drops_the_running_handler_index() {
    let scoped = common::Scoped::new(Arc::new(SystemClock)).await;
    let b = &scoped.backend;
    b.enqueue_many(vec![
        NewTask::new("lim", Vec::new()),
        NewTask::new("lim", Vec::new()),
    ])
    .await
    .expect("enqueue");
    let queues = vec!["default".to_string()];
    let lease = std::time::Duration::from_secs(30);
    assert_eq!(
        b.reserve(ReserveParams::new(&queues, 1, lease))
            .await
            .expect("reserve")
            .len(),
        1
    );
    let schema = b.schema().to_string();
    let again = migrated_from(
        &schema,
        &format!(
            "CREATE INDEX tasks_running_handler ON \"{schema}\".tasks (handler)
                 WHERE lease_until IS NOT NULL;
             DELETE FROM \"{schema}\".migrations WHERE version > 8;"
        ),
        "back to version 8",
    )
    .await;
    let left: i64 = common::client()
        .await
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = $1
             AND indexname = 'tasks_running_handler'",
            &[&schema],
        )
        .await
        .expect("read the indexes")
        .get(0);
    assert_eq!(left, 0, "the index is dropped");
    again
        .set_limits("lim", conveyor_core::HandlerLimits::none().concurrency(1))
        .await
        .expect("set the limit");
    assert!(
        again
            .reserve(ReserveParams::new(&queues, 1, lease))
            .await
            .expect("reserve")
            .is_empty(),
        "the task running since before the migration holds the one slot"
    );
}

/// A schema at version 9 (no keep or expiry columns) migrates to 10: its
/// finished tasks have no expiry and go by the retention `prune` is given;
/// a task enqueued after keeps its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_9_schema_gains_tasks_expiring_one_by_one() {
    let scoped = common::Scoped::new(Arc::new(SystemClock)).await;
    let b = &scoped.backend;
    let queues = vec!["default".to_string()];
    let lease = std::time::Duration::from_secs(30);
    let finish_one = |b: &PostgresBackend| {
        let b = b.clone();
        let queues = queues.clone();
        async move {
            let got = b
                .reserve(conveyor_core::ReserveParams::new(&queues, 1, lease))
                .await
                .expect("reserve");
            let done = conveyor_core::Finish::complete(got[0].lease.clone());
            let mut out = b.finish(vec![done]).await.expect("finish");
            out.pop().expect("one answer").expect("applied");
        }
    };
    let old = b
        .enqueue(NewTask::new("old", Vec::new()))
        .await
        .expect("enqueue")
        .id;
    finish_one(b).await;
    let schema = b.schema().to_string();
    let again = migrated_from(
        &schema,
        &format!(
            "DROP INDEX \"{schema}\".tasks_expiring;
             ALTER TABLE \"{schema}\".tasks DROP COLUMN keep_ms, DROP COLUMN expires_at;
             DELETE FROM \"{schema}\".migrations WHERE version > 9;"
        ),
        "back to version 9",
    )
    .await;
    let rec = again.get(old).await.expect("get").expect("old task");
    assert_eq!((rec.keep, rec.expires_at), (None, None));
    let kept = std::time::Duration::from_secs(3600);
    let new = again
        .enqueue(NewTask::new("new", Vec::new()).keep(kept))
        .await
        .expect("enqueue")
        .id;
    finish_one(&again).await;
    let rec = again.get(new).await.expect("get").expect("new task");
    assert_eq!(rec.keep, Some(kept));
    assert_eq!(rec.expires_at, rec.finished_at.map(|at| at.plus(kept)));
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let none = conveyor_core::Retention {
        finished: std::time::Duration::ZERO,
        dead: std::time::Duration::ZERO,
    };
    assert_eq!(again.prune(none).await.expect("prune"), 1);
    assert!(again.get(old).await.expect("get").is_none());
    assert!(again.get(new).await.expect("get").is_some());
}

/// A schema at version 10 (no workflows) migrates to 11: its tasks stay
/// outside any workflow, and a chain submitted after runs step by step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_10_schema_gains_workflows() {
    let scoped = common::Scoped::new(Arc::new(SystemClock)).await;
    let b = &scoped.backend;
    let old = b
        .enqueue(NewTask::new("old", Vec::new()))
        .await
        .expect("enqueue")
        .id;
    let schema = b.schema().to_string();
    let again = migrated_from(
        &schema,
        &format!(
            "DROP TABLE \"{schema}\".workflow_expansions, \"{schema}\".workflow_settles,
                        \"{schema}\".workflow_nodes, \"{schema}\".workflows;
             ALTER TABLE \"{schema}\".tasks DROP COLUMN workflow;
             DELETE FROM \"{schema}\".migrations WHERE version > 10;"
        ),
        "back to version 10",
    )
    .await;
    assert!(again.get(old).await.expect("get").is_some());
    let dyn_b: Arc<dyn conveyor_core::Backend> = Arc::new(again.clone());
    let spec = conveyor_core::workflow::WorkflowSpec::chain([
        NewTask::new("a", b"[1]".to_vec()),
        NewTask::new("b", b"[]".to_vec()),
    ]);
    let id = dyn_b.submit_workflow(spec).await.expect("submit").id;
    let queues = vec!["default".to_string()];
    let lease = std::time::Duration::from_secs(30);
    for (handler, result) in [("old", "0"), ("a", "2"), ("b", "3")] {
        let got = again
            .reserve(conveyor_core::ReserveParams::new(&queues, 1, lease))
            .await
            .expect("reserve");
        assert_eq!(got.len(), 1, "{handler} is ready");
        assert_eq!(got[0].handler, handler);
        let done = conveyor_core::Finish::new(
            got[0].lease.clone(),
            conveyor_core::FinishAction::Complete {
                result: Some(result.as_bytes().to_vec()),
            },
        );
        let mut out = again.finish(vec![done]).await.expect("finish");
        out.pop().expect("one answer").expect("applied");
    }
    let w = dyn_b.workflow(id).await.expect("read").expect("exists");
    assert_eq!(w.state, conveyor_core::workflow::WorkflowState::Succeeded);
}

/// A schema at version 11 (workflows, no expansions) with a workflow
/// running: migrating adds `workflow_expansions`, and that very workflow
/// then expands and runs to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_11_schema_gains_expansions() {
    let scoped = common::Scoped::new(Arc::new(SystemClock)).await;
    let b = &scoped.backend;
    let dyn_b: Arc<dyn conveyor_core::Backend> = Arc::new(b.clone());
    let spec = conveyor_core::workflow::WorkflowSpec::chain([
        NewTask::new("list", b"[]".to_vec()),
        NewTask::new("sum", b"[]".to_vec()),
    ]);
    let id = dyn_b.submit_workflow(spec).await.expect("submit").id;
    let schema = b.schema().to_string();
    let again = migrated_from(
        &schema,
        &format!(
            "DROP TABLE \"{schema}\".workflow_expansions;
             DELETE FROM \"{schema}\".migrations WHERE version > 11;"
        ),
        "back to version 11",
    )
    .await;
    let queues = vec!["default".to_string()];
    let lease = std::time::Duration::from_secs(30);
    let fan_out = br#"{"$expand": {"group": [{"handler": "one"}, {"handler": "one"}]}}"#;
    for (handler, n, result) in [
        ("list", 1, &fan_out[..]),
        ("one", 2, &b"1"[..]),
        ("sum", 1, &b"2"[..]),
    ] {
        let got = again
            .reserve(conveyor_core::ReserveParams::new(&queues, n, lease))
            .await
            .expect("reserve");
        assert_eq!(got.len(), n, "{handler} is ready");
        for r in got {
            assert_eq!(r.handler, handler);
            if handler == "sum" {
                assert_eq!(r.payload, b"[[1,1]]");
            }
            let done = conveyor_core::Finish::new(
                r.lease.clone(),
                conveyor_core::FinishAction::Complete {
                    result: Some(result.to_vec()),
                },
            );
            let mut out = again.finish(vec![done]).await.expect("finish");
            out.pop().expect("one answer").expect("applied");
        }
    }
    let w = dyn_b.workflow(id).await.expect("read").expect("exists");
    assert_eq!(w.state, conveyor_core::workflow::WorkflowState::Succeeded);
    assert_eq!(w.nodes.len(), 4);
}
