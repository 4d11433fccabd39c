//! The dashboard's pages in process, against a real backend that a real
//! worker has run tasks on: what they show matches the store, filters
//! narrow, buttons act and come back with a notice, live parts stream,
//! the token sends a browser to log in once, read-only shows no button,
//! a task's page lists every attempt.
//! (A real browser drives it in the CLI's `dashboard` test.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::{app, location, page, send};
use conveyor::durable::{
    Backend, Finish, FinishAction, MemoryBackend, NewTask, ReserveParams, Retention, Worker,
};
use conveyor::{Handler, RetryPolicy, TaskError, TaskId, TaskState};
use conveyor_serve::ServeOptions;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// The overview's cell of `queue` in `state`: its count.
fn cell(html: &str, queue: &str, state: &str) -> u64 {
    let row = html
        .split(&format!("<tr data-queue=\"{queue}\">"))
        .nth(1)
        .unwrap_or_else(|| panic!("no row for {queue}: {html}"));
    let row = &row[..row.find("</tr>").expect("row end")];
    let cell = row
        .split(&format!("data-state=\"{state}\">"))
        .nth(1)
        .expect("cell");
    let text: String = cell[..cell.find("</td>").expect("cell end")]
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    text.parse().expect("a count")
}

/// Rows of a tasks page: their ids.
fn rows(html: &str) -> Vec<u64> {
    html.split("<tr data-id=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next()?.parse().ok())
        .collect()
}

/// mail: three `send` and one `notify` waiting, one scheduled in an hour;
/// work: two completed, one dead, by a real worker that then stopped.
async fn store() -> (Arc<dyn Backend>, TaskId) {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let mut tasks: Vec<NewTask> = (0..3)
        .map(|i| NewTask::new("send", format!("{{\"to\": {i}}}").into_bytes()).queue("mail"))
        .collect();
    tasks.push(NewTask::new("notify", b"{}".to_vec()).queue("mail"));
    tasks.push(
        NewTask::new("send", b"{}".to_vec())
            .queue("mail")
            .delay(Duration::from_secs(3600)),
    );
    tasks.push(NewTask::new("double", b"20".to_vec()).queue("work"));
    tasks.push(NewTask::new("double", b"21".to_vec()).queue("work"));
    tasks.push(NewTask::new("fails", b"{\"why\": 1}".to_vec()).queue("work"));
    let ids = backend.enqueue_many(tasks).await.expect("enqueue");
    let dead = ids[7].id;

    let double = Handler::io(
        "double",
        |n: i64, _ctx| async move { Ok::<_, TaskError>(n * 2) },
    );
    let fails = Handler::io("fails", |_: Value, _ctx| async move {
        Err::<Value, _>(TaskError::new("no such mailbox"))
    })
    .retry(RetryPolicy::attempts(1));
    let worker = Worker::builder(backend.clone())
        .queues(["work"])
        .handler(double)
        .handler(fails)
        .handler_retention(
            "fails",
            Retention {
                finished: Duration::from_secs(600),
                dead: Duration::from_secs(3600),
            },
        )
        .poll_interval(Duration::from_millis(10))
        .build()
        .expect("worker");
    let stopper = worker.stopper();
    let run = tokio::spawn(worker.run_until(std::future::pending()));
    for _ in 0..2_000 {
        let stats = backend.stats().await.expect("stats");
        let work = stats.iter().find(|q| q.queue == "work");
        if work.is_some_and(|q| q.count(TaskState::Completed) == 2 && q.count(TaskState::Dead) == 1)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stopper.stop();
    run.await.expect("join").expect("worker");
    (backend, dead)
}

#[tokio::test]
async fn pages_show_the_store_and_buttons_act() {
    let (backend, dead) = store().await;
    let app = conveyor_serve::router(backend.clone(), ServeOptions::new());

    let overview = page(&app, "/").await;
    for (queue, state, n) in [
        ("mail", "available", 4),
        ("mail", "scheduled", 1),
        ("mail", "dead", 0),
        ("work", "completed", 2),
        ("work", "dead", 1),
        ("work", "available", 0),
    ] {
        assert_eq!(cell(&overview, queue, state), n, "{queue} {state}");
    }
    assert!(overview.contains("<svg"), "the charts are drawn");
    assert!(overview.contains("data-live=\"/live/overview\""));
    assert!(
        overview.contains("0</b> workers alive"),
        "the worker stopped"
    );

    // Filters narrow the list; the count matches.
    let mail = page(&app, "/tasks?state=available&queue=mail").await;
    assert_eq!(rows(&mail).len(), 4, "{mail}");
    assert!(mail.contains("<b>4</b> available tasks in mail"), "{mail}");
    let notify = page(&app, "/tasks?state=available&queue=mail&handler=notify").await;
    assert_eq!(rows(&notify).len(), 1);
    let newest = page(&app, "/tasks?state=available&queue=mail&order=newest").await;
    let oldest = rows(&mail);
    let mut reversed = rows(&newest);
    reversed.reverse();
    assert_eq!(oldest, reversed, "newest first is the reverse");
    let scheduled = page(&app, "/tasks?state=scheduled").await;
    assert_eq!(rows(&scheduled).len(), 1);
    assert!(
        scheduled.contains("due in 59m") || scheduled.contains("due in 1h"),
        "{scheduled}"
    );
    // An empty form field is no filter.
    let every = page(&app, "/tasks?state=available&queue=&handler=&order=").await;
    assert_eq!(rows(&every).len(), 4);

    // The dead task: its error, its page, and retrying it.
    let dead_page = page(&app, "/tasks?state=dead").await;
    assert_eq!(rows(&dead_page), vec![dead.0]);
    assert!(dead_page.contains("no such mailbox"));
    assert!(dead_page.contains("Retry all matching"));
    let detail = page(&app, &format!("/tasks/{}", dead.0)).await;
    assert!(detail.contains("dead after 1 attempt<"), "{detail}");
    // Its handler's retention for a dead task, stamped as it died.
    assert!(
        detail.contains("kept until then (its own keep, or its handler&#39;s retention)"),
        "{detail}"
    );
    assert!(
        detail.contains("in 59m") || detail.contains("in 1h"),
        "{detail}"
    );
    // Its one attempt, run by the worker (its id is host:pid:random).
    assert!(detail.contains("id=\"attempts\""), "{detail}");
    assert!(
        detail.contains("attempt 1 dead-lettered: no such mailbox"),
        "{detail}"
    );
    assert!(
        detail.contains(&format!(":{}:", std::process::id())),
        "the worker that ran it: {detail}"
    );
    assert!(!detail.contains("keeps no attempt history"));
    assert!(
        detail.contains("&#34;why&#34;: 1"),
        "params, pretty: {detail}"
    );
    assert!(detail.contains("id=\"retry\""));
    let back = format!("back=%2Ftasks%2F{}", dead.0);
    let (status, headers, _) = send(
        &app,
        "POST",
        &format!("/actions/tasks/{}/retry", dead.0),
        Some(&back),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let to = location(&headers).to_string();
    assert!(
        to.starts_with(&format!("/tasks/{}?notice=", dead.0)),
        "{to}"
    );
    let again = page(&app, &to).await;
    assert!(again.contains("will run again"), "{again}");
    let record = backend.get(dead).await.expect("get").expect("task");
    assert_eq!(record.state, TaskState::Available);

    // Cancel a waiting task from the list.
    let first = rows(&mail)[0];
    let (status, headers, _) = send(
        &app,
        "POST",
        &format!("/actions/tasks/{first}/cancel"),
        Some("back=%2Ftasks%3Fstate%3Davailable"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(location(&headers).starts_with("/tasks?state=available&notice="));
    let record = backend
        .get(TaskId(first))
        .await
        .expect("get")
        .expect("task");
    assert_eq!(record.state, TaskState::Cancelled);

    // A redirect never leaves the server.
    let (_, headers, _) = send(
        &app,
        "POST",
        "/actions/dead/purge",
        Some("queue=nothing&back=%2F%2Fevil.example"),
        &[],
    )
    .await;
    assert!(location(&headers).starts_with("/?notice="), "{headers:?}");

    let workers = page(&app, "/workers").await;
    assert!(workers.contains("Gone in the last day (1)"), "{workers}");
    assert!(workers.contains("<td>stopped</td>"));

    // Pause and resume a queue from the overview; a paused queue with no
    // task is listed too.
    assert!(overview.contains("action=\"/actions/queues/mail/pause\""));
    for queue in ["mail", "empty"] {
        let (status, headers, _) = send(
            &app,
            "POST",
            &format!("/actions/queues/{queue}/pause"),
            Some("back=%2F"),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(page(&app, location(&headers))
            .await
            .contains("Queue paused."));
    }
    assert_eq!(
        backend.paused_queues().await.expect("paused"),
        ["empty", "mail"]
    );
    let overview = page(&app, "/").await;
    assert!(overview.contains("<tr data-queue=\"mail\" class=\"paused\">"));
    assert!(overview.contains("<tr data-queue=\"empty\" class=\"paused\">"));
    assert!(overview.contains("action=\"/actions/queues/mail/resume\""));
    let (_, headers, _) = send(
        &app,
        "POST",
        "/actions/queues/mail/resume",
        Some("back=%2F"),
        &[],
    )
    .await;
    assert!(page(&app, location(&headers))
        .await
        .contains("Queue resumed."));
    assert_eq!(backend.paused_queues().await.expect("paused"), ["empty"]);
}

/// The task page lists every attempt — its number, worker, start, end,
/// duration and outcome with its error — and, while the task runs, which
/// worker holds it; the API's task says the same.
#[tokio::test]
async fn a_task_page_lists_every_attempt_and_the_running_worker() {
    let (app, backend) = app(ServeOptions::new());
    let id = backend
        .enqueue(NewTask::new("flaky", b"{}".to_vec()))
        .await
        .expect("enqueue")
        .id;
    let queues = vec!["default".to_string()];
    let lease = Duration::from_secs(30);
    let reserve = |worker: &'static str| {
        let backend = backend.clone();
        let queues = queues.clone();
        async move {
            let params = ReserveParams::new(&queues, 1, lease).worker(worker);
            backend.reserve(params).await.expect("reserve")[0]
                .lease
                .clone()
        }
    };
    let first = reserve("worker-a").await;
    let failed = FinishAction::Retry {
        delay: Duration::ZERO,
        error: "connection reset\nat line 2".into(),
    };
    let out = backend
        .finish(vec![Finish::new(first, failed)])
        .await
        .expect("finish");
    assert!(out[0].is_ok());
    let _second = reserve("worker-b").await;

    let detail = page(&app, &format!("/tasks/{}", id.0)).await;
    assert!(
        detail.contains("<a href=\"/workers\" id=\"running-worker\">worker-b</a>"),
        "the worker holding it: {detail}"
    );
    let table = detail
        .split("id=\"attempts\"")
        .nth(1)
        .expect("the attempts table");
    let rows: Vec<&str> = table.split("<tr class=\"attempt\">").skip(1).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(rows[0].contains("<td>1</td><td><code>worker-a</code></td>"));
    assert!(rows[0].contains("class=\"outcome failed\">failed</span>"));
    assert!(
        rows[0].contains("<pre class=\"error\">connection reset\nat line 2</pre>"),
        "the whole error: {}",
        rows[0]
    );
    assert!(rows[0].contains(" ms</td>"), "a duration: {}", rows[0]);
    assert!(rows[1].contains("<td>2</td><td><code>worker-b</code></td>"));
    assert!(rows[1].contains("class=\"outcome running\">running</span>"));
    assert!(
        detail.contains("attempt 1 failed: connection reset<"),
        "{detail}"
    );
    assert!(
        detail.contains("attempt 2 started on worker-b<"),
        "{detail}"
    );

    let (status, task) =
        common::call(&app, "GET", &format!("/api/v1/tasks/{}", id.0), None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let history = task["history"].as_array().expect("a history");
    assert_eq!(history.len(), 2, "{task}");
    assert_eq!(history[0]["worker"], "worker-a");
    assert_eq!(history[0]["outcome"], "failed");
    assert_eq!(history[0]["error"], "connection reset\nat line 2");
    assert!(history[0]["ended_at"].is_string());
    assert_eq!(history[1]["outcome"], "running");
    assert!(history[1]["ended_at"].is_null());
}

#[tokio::test]
async fn retry_all_matching_and_purge_take_every_matching_dead_task() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    // 2,500 dead tasks: more than one batch of the bulk action.
    let tasks = (0..2_500)
        .map(|i| {
            let handler = if i % 5 == 0 { "b" } else { "a" };
            NewTask::new(handler, b"{}".to_vec())
                .queue("q")
                .max_attempts(1)
        })
        .collect();
    backend.enqueue_many(tasks).await.expect("enqueue");
    let mut reserved = backend
        .reserve(ReserveParams::new(
            &["q".to_string()],
            3_000,
            Duration::from_secs(60),
        ))
        .await
        .expect("reserve");
    assert_eq!(reserved.len(), 2_500);
    let reports = reserved
        .drain(..)
        .map(|r| {
            let error = "broken".to_string();
            Finish::new(r.lease, FinishAction::DeadLetter { error })
        })
        .collect();
    for result in backend.finish(reports).await.expect("finish") {
        result.expect("settled");
    }
    let app = conveyor_serve::router(backend.clone(), ServeOptions::new());
    let (status, headers, _) = send(
        &app,
        "POST",
        "/actions/dead/retry",
        Some("queue=q&handler=b&back=%2Ftasks%3Fstate%3Ddead"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let to = location(&headers).to_string();
    assert!(page(&app, &to)
        .await
        .contains("500 dead tasks will run again"));
    let stats = backend.stats().await.expect("stats");
    assert_eq!(stats[0].count(TaskState::Dead), 2_000);
    assert_eq!(stats[0].count(TaskState::Available), 500);
    let (_, headers, _) = send(
        &app,
        "POST",
        "/actions/dead/purge",
        Some("queue=q&back=%2F"),
        &[],
    )
    .await;
    assert!(page(&app, location(&headers))
        .await
        .contains("2000 dead tasks deleted"));
}

#[tokio::test]
async fn the_live_parts_stream_as_server_sent_events() {
    let (backend, _) = store().await;
    let options = ServeOptions::new().refresh_every(Duration::from_millis(100));
    let app = conveyor_serve::router(backend, options);
    for (path, marker) in [
        ("/live/overview", "<tr data-queue=\"mail\">"),
        ("/live/workers", "Gone in the last day (1)"),
    ] {
        let request = Request::get(path).body(Body::empty()).expect("request");
        let response = app.clone().oneshot(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream",
            "{path}"
        );
        let mut body = response.into_body();
        let mut text = String::new();
        while !text.contains("\n\n") {
            let frame = body.frame().await.expect("a frame").expect("data");
            if let Some(data) = frame.data_ref() {
                text.push_str(&String::from_utf8_lossy(data));
            }
        }
        assert!(text.starts_with("data: "), "{text}");
        assert!(text.contains(marker), "{path}: {text}");
    }
}

#[tokio::test]
async fn with_a_token_a_browser_logs_in_once() {
    let (app, _) = app(ServeOptions::new().token("s3cret"));
    let (status, headers, _) = send(&app, "GET", "/tasks?state=dead", None, &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        location(&headers),
        "/login?next=%2Ftasks%3Fstate%3Ddead",
        "a page sends the browser to log in"
    );
    let (status, _, _) = send(&app, "GET", "/api/v1/stats", None, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the API still says 401");
    for open in ["/login", "/assets/dashboard.css", "/health"] {
        let (status, _, _) = send(&app, "GET", open, None, &[]).await;
        assert_eq!(status, StatusCode::OK, "{open} is open");
    }
    let (status, _, html) = send(
        &app,
        "POST",
        "/login",
        Some("token=wrong&next=%2Ftasks"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("That is not the token"));
    let (status, headers, _) = send(
        &app,
        "POST",
        "/login",
        Some("token=s3cret&next=%2Ftasks%3Fstate%3Ddead"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location(&headers), "/tasks?state=dead");
    let cookie = headers[header::SET_COOKIE].to_str().expect("cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let pair = cookie.split(';').next().expect("name=value").to_string();
    for path in ["/", "/tasks?state=dead", "/api/v1/stats"] {
        let (status, _, _) = send(&app, "GET", path, None, &[("cookie", &pair)]).await;
        assert_eq!(status, StatusCode::OK, "{path} with the cookie");
    }
    // A login posted from another site is refused like any action.
    let (status, _, _) = send(
        &app,
        "POST",
        "/login",
        Some("token=s3cret"),
        &[("sec-fetch-site", "cross-site")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn read_only_shows_no_button_and_refuses_actions() {
    let (backend, dead) = store().await;
    let app = conveyor_serve::router(backend.clone(), ServeOptions::new().read_only(true));
    let overview = page(&app, "/").await;
    assert!(overview.contains("read-only"));
    let list = page(&app, "/tasks?state=dead").await;
    assert!(
        !list.contains("<button type=\"submit\" class=\"retry\""),
        "{list}"
    );
    assert!(!list.contains("Retry all matching"));
    let detail = page(&app, &format!("/tasks/{}", dead.0)).await;
    assert!(!detail.contains("id=\"retry\""));
    assert!(!overview.contains("/actions/queues/"), "no pause button");
    let (status, _, _) = send(
        &app,
        "POST",
        &format!("/actions/tasks/{}/retry", dead.0),
        Some("back=%2F"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let record = backend.get(dead).await.expect("get").expect("task");
    assert_eq!(record.state, TaskState::Dead, "nothing moved");
}

#[tokio::test]
async fn bad_input_and_missing_parts_get_a_page_that_says_why() {
    let (app, _) = app(ServeOptions::new());
    for (path, status, says) in [
        (
            "/tasks?state=nope",
            StatusCode::BAD_REQUEST,
            "not a task state",
        ),
        ("/tasks?order=up", StatusCode::BAD_REQUEST, "not an order"),
        ("/tasks?after=x", StatusCode::BAD_REQUEST, "not a task id"),
        ("/tasks/12345", StatusCode::NOT_FOUND, "no task 12345"),
        ("/tasks/abc", StatusCode::BAD_REQUEST, "not a task id"),
        ("/assets/nothing.js", StatusCode::NOT_FOUND, "no such asset"),
    ] {
        let (got, _, html) = send(&app, "GET", path, None, &[]).await;
        assert_eq!(got, status, "{path}");
        assert!(html.contains(says), "{path}: {html}");
    }
    let core_only: Arc<dyn Backend> =
        Arc::new(conveyor_testkit::Scoped::core_only(MemoryBackend::new()));
    let app = conveyor_serve::router(core_only, ServeOptions::new());
    let overview = page(&app, "/").await;
    assert!(overview.contains("No counts:"), "{overview}");
    assert!(overview.contains("✗ inspection"), "{overview}");
    let (status, _, html) = send(&app, "GET", "/tasks?state=dead", None, &[]).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert!(html.contains("memory"), "names the backend: {html}");
    let workers = page(&app, "/workers").await;
    assert!(workers.contains("No worker registry"));
}

/// A search's count comes after the page: follows the page's `data-fill`.
async fn filled_count(app: &Router, html: &str) -> String {
    let link = html
        .split("data-fill=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a count to fetch")
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    page(app, &link).await
}

#[tokio::test]
async fn a_search_narrows_the_list_and_its_count_and_pages_past_its_budget() {
    let (backend, _) = store().await;
    let app = conveyor_serve::router(backend.clone(), ServeOptions::new());
    // Text in params, ignoring ASCII case: {"to": 1} among the mail tasks.
    let html = page(
        &app,
        "/tasks?state=available&queue=mail&search=%22TO%22%3A+1",
    )
    .await;
    assert_eq!(rows(&html).len(), 1, "{html}");
    let count = filled_count(&app, &html).await;
    assert!(count.contains("<b>1</b> available task in mail"), "{count}");
    let kept = html
        .split("name=\"search\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the search box");
    assert!(
        kept.contains("TO") && kept.ends_with(": 1"),
        "the box keeps the text: {kept}"
    );
    // Text in an error, with the retry of every match carrying the search.
    let html = page(&app, "/tasks?state=dead&search=MAILBOX").await;
    assert_eq!(rows(&html).len(), 1, "{html}");
    assert!(html.contains("name=\"search\" value=\"MAILBOX\""), "{html}");
    let html = page(&app, "/tasks?state=dead&search=nothing+like+it").await;
    assert!(rows(&html).is_empty());
    let count = filled_count(&app, &html).await;
    assert!(count.contains("<b>0</b> dead tasks"), "{count}");

    // More candidates than a page may read: the page stops short, says so,
    // and its next page goes on from there.
    let many: Vec<NewTask> = (0..12_000)
        .map(|i| {
            let tag = if i == 11_000 { "needle" } else { "hay" };
            NewTask::new("bulk", format!("{{\"tag\": \"{tag}\"}}").into_bytes()).queue("big")
        })
        .collect();
    backend.enqueue_many(many).await.expect("enqueue");
    let html = page(&app, "/tasks?state=available&queue=big&search=needle").await;
    assert!(rows(&html).is_empty(), "the match is past the budget");
    assert!(html.contains("id=\"stopped-early\""), "{html}");
    let count = filled_count(&app, &html).await;
    assert!(count.contains("<b>1</b> available task in big"), "{count}");
    let next = html
        .split("href=\"")
        .filter_map(|s| s.split('"').next())
        .find(|href| href.contains("after="))
        .expect("a next page")
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    let html = page(&app, &next).await;
    assert_eq!(rows(&html).len(), 1, "{html}");
    // Without a search the count comes with the page, and a handler's is
    // exact too.
    let html = page(&app, "/tasks?state=available&queue=big&handler=bulk").await;
    assert!(
        html.contains("<b>12000</b> available tasks in big of bulk"),
        "{html}"
    );
}

/// A workflow's page draws its graph on the server: a box per node coloured
/// by its state and linked to its task, an edge per dependency; a wide
/// chord's column is cut with a box saying how many more; the open form
/// redirects; cancel acts; a backend without workflows says so.
#[tokio::test]
async fn a_workflow_page_draws_its_graph_coloured_by_state() {
    use conveyor::durable::workflow::{NodeSpec, WhenEnded, WorkflowSpec};
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let app = conveyor_serve::router(backend.clone(), ServeOptions::new());
    let spec = WorkflowSpec::chord(
        (0..3).map(|i| NewTask::new("fetch", format!("[{i}]").into_bytes())),
        NewTask::new("sum", b"[]".to_vec()),
    )
    .on(
        WhenEnded::Failure,
        NodeSpec::new("alarm", NewTask::new("alarm", b"[]".to_vec())),
    );
    let id = backend.submit_workflow(spec).await.expect("submit").id;
    // One header completes, one fails for good; one is left running.
    let queues = vec!["default".to_string()];
    let got = backend
        .reserve(ReserveParams::new(&queues, 2, Duration::from_secs(30)))
        .await
        .expect("reserve");
    let reports = vec![
        Finish::new(
            got[0].lease.clone(),
            FinishAction::Complete {
                result: Some(b"1".to_vec()),
            },
        ),
        Finish::new(
            got[1].lease.clone(),
            FinishAction::DeadLetter {
                error: "no route".into(),
            },
        ),
    ];
    backend.finish(reports).await.expect("finish");

    let html = page(&app, &format!("/workflows/{id}")).await;
    assert!(html.contains("<svg id=\"graph\""), "{html}");
    assert!(html.contains("id=\"workflow-state\">running<"), "{html}");
    for class in [
        "node succeeded",
        "node failed",
        "node running",
        "node skipped",
        "node waiting",
    ] {
        assert!(html.contains(class), "{class}: {html}");
    }
    assert_eq!(
        html.matches("class=\"edge\"").count(),
        3,
        "one edge per dependency"
    );
    assert!(
        html.contains(&format!("href=\"/tasks/{}\"", got[0].lease.id)),
        "{html}"
    );
    assert!(
        html.contains("id=\"cancel\""),
        "a running workflow can be cancelled"
    );

    let (status, headers, _) = send(&app, "GET", &format!("/workflows?id={id}"), None, &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location(&headers), format!("/workflows/{id}"));
    let (status, headers, _) = send(
        &app,
        "POST",
        &format!("/actions/workflows/{id}/cancel"),
        Some(""),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "cancel redirects back");
    assert_eq!(location(&headers), format!("/workflows/{id}"));
    let html = page(&app, &format!("/workflows/{id}")).await;
    assert!(html.contains("id=\"workflow-state\">cancelled<"), "{html}");
    assert!(!html.contains("id=\"cancel\""));
    assert!(
        html.contains("id=\"retry\""),
        "a cancelled workflow can be retried"
    );

    // 100 header tasks: the column shows 40 and says how many more.
    let wide = WorkflowSpec::chord(
        (0..100).map(|i| NewTask::new("fetch", format!("[{i}]").into_bytes())),
        NewTask::new("sum", b"[]".to_vec()),
    );
    let wide = backend.submit_workflow(wide).await.expect("submit").id;
    let html = page(&app, &format!("/workflows/{wide}")).await;
    assert!(html.contains("+ 60 more"), "{html}");

    let (status, _, html) = send(&app, "GET", "/workflows/424242", None, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{html}");
    let list = page(&app, "/workflows").await;
    assert!(list.contains("id=\"workflow-id\""), "{list}");
    // Newest first, each linked, its state shown.
    let (at_wide, at_id) = (
        list.find(&format!("href=\"/workflows/{wide}\"")),
        list.find(&format!("href=\"/workflows/{id}\"")),
    );
    assert!(
        at_wide.is_some() && at_id.is_some() && at_wide < at_id,
        "{list}"
    );
    let cancelled = page(&app, "/workflows?state=cancelled").await;
    assert!(cancelled.contains(&format!("href=\"/workflows/{id}\"")));
    assert!(!cancelled.contains(&format!("href=\"/workflows/{wide}\"")));
    let older = page(&app, &format!("/workflows?before={wide}")).await;
    assert!(!older.contains(&format!("href=\"/workflows/{wide}\"")));
    let (status, headers, _) = send(
        &app,
        "POST",
        &format!("/actions/workflows/{id}/retry"),
        Some(""),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "retry redirects back");
    assert_eq!(location(&headers), format!("/workflows/{id}"));
    let html = page(&app, &format!("/workflows/{id}")).await;
    assert!(html.contains("id=\"workflow-state\">running<"), "{html}");
    assert!(
        !html.contains("id=\"retry\""),
        "a running one is not retried"
    );
    let (status, _, _) = send(&app, "GET", "/workflows?state=done", None, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let core_only: Arc<dyn Backend> =
        Arc::new(conveyor_testkit::Scoped::core_only(MemoryBackend::new()));
    let bare = conveyor_serve::router(core_only, ServeOptions::new());
    assert!(page(&bare, "/workflows")
        .await
        .contains("keeps no workflows"));
}
