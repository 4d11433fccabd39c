//! Inspection at scale: `conveyor-bench inspect [--backend URL] [--tasks N] [--quick]`.
//!
//! Fills a store with N tasks (1,000,000 by default; 100,000 with
//! `--quick`) in the shape a busy system has (97% completed, 1% dead, 1%
//! available, 0.5% scheduled, 0.5% running; 4 queues, 10 handlers; one task
//! in 10,000 holds the word "needle"), then times the dashboard's own pages,
//! called in process through `conveyor serve`'s router (no network):
//!
//! - the overview (`/`: counts per queue and state, oldest ready task);
//! - filtered task pages: a rare state (dead tasks of one queue and one
//!   handler), a common one (completed tasks of one queue and one handler),
//!   and the newest available tasks;
//! - a search for "needle" among the completed tasks, and its count (which
//!   the page fetches after it is shown);
//! - a task's detail page.
//!
//! Each is asked 100 times; p50 and p95 are printed (target p95 ≤ 50 ms).
//! Beside the overview runs its baseline: counting every task per queue and
//! state with one `GROUP BY` straight on the store (what the overview cost
//! before the stores kept counts).
//!
//! With no `--backend`, the embedded store and the PostgreSQL server at
//! `CONVEYOR_POSTGRES_URL` (default: the local one) are both measured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use conveyor::durable::{Backend, Finish, FinishAction, NewTask};
use conveyor::TaskId;
use conveyor_serve::ServeOptions;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::namespace::Subject;
use crate::report::Report;
use conveyor::durable::ReserveParams;

/// The path of a route's `r`-th request.
type Route = Box<dyn Fn(usize) -> String>;

/// Times each route is asked.
const ROUNDS: usize = 100;
/// Times the baseline count is run (it reads every task).
const BASELINE_ROUNDS: usize = 10;
const QUEUES: usize = 4;
const HANDLERS: usize = 10;

/// Runs the suite.
pub async fn run(report: &mut Report, quick: bool, url: Option<&str>, tasks: Option<usize>) {
    let n = tasks.unwrap_or(if quick { 100_000 } else { 1_000_000 });
    let postgres = std::env::var("CONVEYOR_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let urls: Vec<Option<String>> = match url {
        Some(u) => vec![Some(u.to_string())],
        None => vec![None, Some(postgres)],
    };
    for url in urls {
        let subject = Subject::new(url.as_deref(), "inspect");
        let backend = subject.open().await;
        let kind = backend.kind();
        let bench = format!("inspect/{kind}");
        eprintln!("  filling {kind} with {n} tasks…");
        let started = Instant::now();
        let sample = fill(&*backend, n).await;
        report.add(
            &bench,
            "fill (enqueue, run, settle)",
            started.elapsed().as_secs_f64(),
            "s",
        );
        measure(report, &bench, &subject, backend, sample).await;
        subject.close().await;
    }
}

/// Enqueues `n` tasks and moves them into their states; returns a few ids
/// to read back.
async fn fill(b: &dyn Backend, n: usize) -> Vec<TaskId> {
    const BATCH: usize = 5_000;
    let queue = |i: usize| format!("q{}", i % QUEUES);
    let payload = |i: usize| {
        let tag = if i % 10_000 == 7 { "needle" } else { "hay" };
        format!("{{\"user\":{i},\"tag\":\"{tag}\",\"note\":\"an ordinary task\"}}").into_bytes()
    };
    let scheduled = n / 200;
    let mut sample = Vec::new();
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        let batch: Vec<NewTask> = (i..end)
            .map(|k| {
                let t = NewTask::new(format!("h{}", k % HANDLERS), payload(k)).queue(queue(k));
                if k < scheduled {
                    t.delay(Duration::from_secs(86_400))
                } else {
                    t
                }
            })
            .collect();
        let done = b.enqueue_many(batch).await.expect("enqueue");
        sample.extend(done.iter().step_by(997).map(|e| e.id));
        i = end;
    }
    // Run all but the last 1.5% (1% stays available, 0.5% stays running);
    // one in a hundred dies.
    let queues: Vec<String> = (0..QUEUES).map(queue).collect();
    let to_settle = n - scheduled - n * 3 / 200;
    let mut settled = 0;
    let mut k = 0usize;
    while settled < to_settle {
        let want = 1_000.min(to_settle - settled);
        let got = b
            .reserve(ReserveParams::new(
                &queues,
                want,
                Duration::from_secs(3_600),
            ))
            .await
            .expect("reserve");
        if got.is_empty() {
            break;
        }
        let reports = got
            .into_iter()
            .map(|r| {
                k += 1;
                let action = if k.is_multiple_of(100) {
                    FinishAction::DeadLetter {
                        error: format!("boom: upstream said no to {k}"),
                    }
                } else {
                    FinishAction::Complete { result: None }
                };
                Finish::new(r.lease, action)
            })
            .collect::<Vec<_>>();
        settled += reports.len();
        b.finish(reports).await.expect("finish");
    }
    // Half a percent stays running (leases held for an hour).
    b.reserve(ReserveParams::new(
        &queues,
        n / 200,
        Duration::from_secs(3_600),
    ))
    .await
    .expect("reserve");
    sample
}

async fn measure(
    report: &mut Report,
    bench: &str,
    subject: &Subject,
    backend: Arc<dyn Backend>,
    sample: Vec<TaskId>,
) {
    let app = conveyor_serve::router(backend, ServeOptions::new());
    let get = |path: String| {
        let app = app.clone();
        async move {
            let request = Request::get(&path).body(Body::empty()).expect("request");
            let started = Instant::now();
            let response = app.oneshot(request).await.expect("response");
            let status = response.status();
            let body = response.into_body().collect().await.expect("body");
            let took = started.elapsed();
            assert_eq!(status, StatusCode::OK, "{path}: {:?}", body.to_bytes());
            took
        }
    };
    let routes: Vec<(&str, Route)> = vec![
        ("overview", Box::new(|_| "/".to_string())),
        (
            "page: dead, one queue + handler",
            Box::new(|r| format!("/tasks?state=dead&queue=q{}&handler=h{}", r % QUEUES, r % 7)),
        ),
        (
            "page: completed, one queue + handler",
            Box::new(|r| {
                format!(
                    "/tasks?state=completed&queue=q{}&handler=h{}",
                    r % QUEUES,
                    r % HANDLERS
                )
            }),
        ),
        (
            "page: available, newest first",
            Box::new(|r| format!("/tasks?state=available&queue=q{}&order=newest", r % QUEUES)),
        ),
        (
            "search: completed, 'needle'",
            Box::new(|_| "/tasks?state=completed&search=needle".to_string()),
        ),
        (
            "its count (after the page)",
            Box::new(|_| "/live/count?state=completed&search=needle".to_string()),
        ),
        (
            "task detail",
            Box::new(move |r| format!("/tasks/{}", sample[r % sample.len()].0)),
        ),
    ];
    let mut overview_p50 = 0.0;
    for (name, path) in &routes {
        // One untimed call warms caches and prepared statements.
        get(path(0)).await;
        let mut took = Vec::with_capacity(ROUNDS);
        for r in 0..ROUNDS {
            took.push(get(path(r)).await);
        }
        let (p50, p95) = percentiles(took);
        if *name == "overview" {
            overview_p50 = p50;
        }
        report.add(bench, &format!("{name} p50"), p50, "ms");
        report.add(bench, &format!("{name} p95"), p95, "ms");
    }
    match count_every_task(subject).await {
        Some(took) => {
            let (p50, _) = percentiles(took);
            report.add_vs(
                bench,
                "baseline: count every task p50",
                p50,
                "ms",
                "overview p50",
                p50 / overview_p50.max(1e-9),
            );
        }
        None => report.note(format!("{bench}: no baseline count for this store")),
    }
}

/// The overview's cost before kept counts: one `GROUP BY` over every task.
async fn count_every_task(subject: &Subject) -> Option<Vec<Duration>> {
    const COUNT: &str = "SELECT queue, state, count(*) FROM {t} GROUP BY queue, state";
    let mut took = Vec::new();
    if let Some(path) = subject.file() {
        let conn = rusqlite::Connection::open(path).ok()?;
        let sql = COUNT.replace("{t}", "tasks");
        for _ in 0..BASELINE_ROUNDS {
            let started = Instant::now();
            let mut stmt = conn.prepare_cached(&sql).ok()?;
            let rows = stmt.query_map([], |r| r.get::<_, i64>(2)).ok()?;
            let total: i64 = rows.filter_map(Result::ok).sum();
            took.push(started.elapsed());
            assert!(total > 0);
        }
        return Some(took);
    }
    if let Some((base, schema)) = subject.postgres() {
        use conveyor_postgres::tokio_postgres;
        let (client, conn) = tokio_postgres::connect(base, tokio_postgres::NoTls)
            .await
            .ok()?;
        tokio::spawn(conn);
        let sql = COUNT.replace("{t}", &format!("\"{schema}\".tasks"));
        for _ in 0..BASELINE_ROUNDS {
            let started = Instant::now();
            let rows = client.query(&sql, &[]).await.ok()?;
            took.push(started.elapsed());
            assert!(!rows.is_empty());
        }
        return Some(took);
    }
    None
}

/// p50 and p95 in milliseconds.
fn percentiles(mut took: Vec<Duration>) -> (f64, f64) {
    took.sort();
    let at = |q: f64| {
        let i = ((took.len() as f64 - 1.0) * q).round() as usize;
        took[i.min(took.len() - 1)].as_secs_f64() * 1e3
    };
    (at(0.50), at(0.95))
}
