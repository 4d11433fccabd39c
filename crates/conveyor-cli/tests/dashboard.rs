//! The dashboard in a real browser: headless Chromium (Debian's, through
//! its ChromeDriver) against `conveyor serve` over an embedded store that a
//! real `conveyor worker` is working on, with tasks in every state. The
//! overview's counts match the store, a filter narrows the list, clicking
//! "Retry" on a dead task makes it run, the overview updates itself, and
//! pausing a queue stops its reservations until it is resumed. A name far
//! longer than the API allows (written to the store by another client)
//! does not widen any page. Screenshots are kept under
//! `target/tmp/dashboard/` for a reviewer.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Env;
use conveyor::durable::{Backend, NewTask};
use conveyor::{TaskId, TaskState};
use conveyor_testkit::browser::ChromeDriver;
use conveyor_testkit::process::Proc;
use fantoccini::{Client, ClientBuilder, Locator};

/// Where the screenshots go.
fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).expect("the screenshot folder");
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("a screenshot");
    let path = shots().join(name);
    std::fs::write(&path, png).expect("write the screenshot");
    eprintln!("screenshot: {}", path.display());
}

/// A child killed when dropped, so a failing test leaves no process behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `check` holds, reading the store (or panics after a minute).
async fn until<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "waited a minute for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Counts by queue and state, as the store holds them.
async fn counts(b: &Arc<dyn Backend>) -> HashMap<(String, TaskState), u64> {
    let mut out = HashMap::new();
    for q in b.stats().await.expect("stats") {
        for s in TaskState::ALL {
            out.insert((q.queue.clone(), s), q.count(s));
        }
    }
    out
}

async fn count(b: &Arc<dyn Backend>, queue: &str, state: TaskState) -> u64 {
    counts(b)
        .await
        .get(&(queue.to_string(), state))
        .copied()
        .unwrap_or(0)
}

/// The text of the overview's cell for `queue` in `state`.
async fn cell(browser: &Client, queue: &str, state: TaskState) -> String {
    let css = format!(
        "tr[data-queue=\"{queue}\"] td[data-state=\"{}\"]",
        state.as_str()
    );
    text(browser, &css).await
}

/// The live parts are replaced every refresh, so an element found just
/// before a replacement is gone when used: find it again and retry.
async fn retrying<T, F, Fut>(what: &str, mut act: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
{
    let mut tries = 0;
    loop {
        match act().await {
            Ok(v) => return v,
            Err(e) if tries < 20 => {
                tries += 1;
                eprintln!("{what}: {e}; again");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// The text of the element `css` selects.
async fn text(browser: &Client, css: &str) -> String {
    retrying(css, || async {
        browser.find(Locator::Css(css)).await?.text().await
    })
    .await
}

/// Clicks the element `css` selects.
async fn click(browser: &Client, css: &str) {
    retrying(css, || async {
        browser.find(Locator::Css(css)).await?.click().await
    })
    .await
}

async fn rows(browser: &Client) -> usize {
    retrying("the rows", || async {
        let rows = browser
            .find_all(Locator::Css("table#tasks tbody tr[data-id]"))
            .await?;
        Ok(rows.len())
    })
    .await
}

/// Waits until the browser shows a page whose address has `part` (a
/// submitted form or a click navigates, and the next command may come
/// before the new page is there).
async fn arrived(browser: &Client, part: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let url = browser.current_url().await.expect("the address");
        let ready = browser
            .execute("return document.readyState", vec![])
            .await
            .expect("the document's state");
        if url.as_str().contains(part) && ready == "complete" {
            return;
        }
        assert!(Instant::now() < deadline, "never arrived at {part}: {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_sees_the_store_filters_and_retries_a_dead_task() {
    let env = Env::new();
    let fixed = env.path("fixed");
    let config = format!(
        "[worker]\nqueues = [\"work\", \"other\"]\nslots = 4\npoll = \"20ms\"\n\
         [handlers.ok]\nprogram = \"true\"\n\
         [handlers.fixable]\nprogram = \"test\"\nargs = [\"-f\", \"{}\"]\nretries = 0\n\
         [handlers.flaky]\nprogram = \"false\"\nretries = 3\nbackoff = \"1h\"\n\
         [handlers.slow]\nprogram = \"sleep\"\nargs = [\"3600\"]\n",
        fixed.display()
    );
    let cfg = env.config(&config).to_string_lossy().into_owned();
    let b = env.backend().await;

    // Tasks in every state: `work` for the worker, `mail` that no one takes.
    let task = |handler: &str, queue: &str| NewTask::new(handler, b"{}".to_vec()).queue(queue);
    let mut tasks = vec![task("ok", "work"), task("ok", "work"), task("ok", "work")];
    tasks.extend([
        task("fixable", "work"),
        task("flaky", "work"),
        task("slow", "work"),
    ]);
    tasks.extend((0..3).map(|_| task("send", "mail")));
    tasks.push(task("notify", "mail"));
    tasks.push(task("send", "mail").delay(Duration::from_secs(3600)));
    tasks.push(task("send", "mail"));
    let ids: Vec<TaskId> = b
        .enqueue_many(tasks)
        .await
        .expect("enqueue")
        .iter()
        .map(|e| e.id)
        .collect();
    let dead = ids[3];
    assert_eq!(
        b.cancel(ids[11]).await.expect("cancel"),
        TaskState::Cancelled
    );

    let _worker = Proc::spawn(env.cmd(&["worker", "--config", &cfg])).expect("worker");
    until("every state to be reached", || async {
        let c = counts(&b).await;
        let n = |s| c.get(&("work".to_string(), s)).copied().unwrap_or(0);
        n(TaskState::Completed) == 3
            && n(TaskState::Dead) == 1
            && n(TaskState::Retrying) == 1
            && n(TaskState::Running) == 1
    })
    .await;

    let (serve, addr) = common::spawn_with_address(
        env.cmd(&["serve", "--listen", "127.0.0.1:0"]),
        "API at http://",
    );
    let _serve = Killed(serve);
    // The WebDriver client speaks plain HTTP to a loopback driver, but its
    // TLS stack wants a provider chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let driver = ChromeDriver::start().expect("chromedriver");
    let browser = ClientBuilder::rustls()
        .expect("a WebDriver client")
        .capabilities(ChromeDriver::headless_chromium(1400, 1000))
        .connect(&driver.url())
        .await
        .expect("a Chromium session");
    let base = format!("http://{addr}");

    // The overview: every cell agrees with the store.
    browser.goto(&format!("{base}/")).await.expect("overview");
    let store = counts(&b).await;
    for ((queue, state), n) in &store {
        assert_eq!(
            cell(&browser, queue, *state).await,
            n.to_string(),
            "{queue} {state}"
        );
    }
    assert!(store[&("mail".to_string(), TaskState::Scheduled)] == 1);
    assert!(store[&("mail".to_string(), TaskState::Cancelled)] == 1);
    let alive = text(&browser, "#workers-alive").await;
    assert_eq!(alive, "1", "the worker is alive");
    screenshot(&browser, "overview.png").await;

    // A filter narrows the list: mail's available tasks, then notify's.
    browser.goto(&format!("{base}/tasks")).await.expect("tasks");
    let form = browser
        .form(Locator::Id("filters"))
        .await
        .expect("the filter form");
    form.set_by_name("state", "available").await.expect("state");
    form.set_by_name("queue", "mail").await.expect("queue");
    form.submit().await.expect("show");
    arrived(&browser, "state=available&queue=mail").await;
    assert_eq!(rows(&browser).await, 4, "mail's four available tasks");
    let matching = text(&browser, "#matching").await;
    assert!(
        matching.starts_with("4 available tasks in mail"),
        "{matching}"
    );
    let form = browser
        .form(Locator::Id("filters"))
        .await
        .expect("the filter form");
    form.set_by_name("handler", "notify")
        .await
        .expect("handler");
    form.submit().await.expect("show");
    arrived(&browser, "handler=notify").await;
    assert_eq!(rows(&browser).await, 1, "one notify task");
    screenshot(&browser, "tasks-filtered.png").await;

    // Retry the dead task once its handler can succeed: it runs and completes.
    std::fs::write(&fixed, b"").expect("fix the handler");
    browser
        .goto(&format!("{base}/tasks?state=dead"))
        .await
        .expect("dead letters");
    assert_eq!(rows(&browser).await, 1);
    screenshot(&browser, "dead-letters.png").await;
    browser
        .find(Locator::Css(&format!(
            "tr[data-id=\"{}\"] button.retry",
            dead.0
        )))
        .await
        .expect("the retry button")
        .click()
        .await
        .expect("click retry");
    let notice = browser
        .wait()
        .for_element(Locator::Css("p.notice"))
        .await
        .expect("a notice")
        .text()
        .await
        .expect("text");
    assert_eq!(notice, format!("Task {} will run again.", dead.0));
    until("the retried task to complete", || async {
        let record = b.get(dead).await.expect("get").expect("the task");
        record.state == TaskState::Completed
    })
    .await;

    // The overview keeps itself up to date: a task finishing while it is
    // open shows up without a reload.
    browser.goto(&format!("{base}/")).await.expect("overview");
    let before = count(&b, "work", TaskState::Completed).await;
    assert_eq!(
        cell(&browser, "work", TaskState::Completed).await,
        before.to_string()
    );
    b.enqueue(task("ok", "work")).await.expect("one more");
    let after = (before + 1).to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while cell(&browser, "work", TaskState::Completed).await != after {
        assert!(
            Instant::now() < deadline,
            "the overview did not update itself"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let detail = format!("{base}/tasks/{}", dead.0);
    browser.goto(&detail).await.expect("the task");
    let state = browser
        .find(Locator::Id("task-state"))
        .await
        .expect("its state")
        .text()
        .await
        .expect("text");
    assert_eq!(state, "completed");
    screenshot(&browser, "task.png").await;

    // Pausing a queue stops reservations: a task enqueued to `work` after
    // the pause waits, while one enqueued to `other` after it (the worker
    // scans `work` first) is taken and finishes.
    browser.goto(&format!("{base}/")).await.expect("overview");
    click(&browser, "tr[data-queue=\"work\"] button.pause").await;
    browser
        .wait()
        .for_element(Locator::Css("tr[data-queue=\"work\"].paused"))
        .await
        .expect("work shows paused");
    assert_eq!(b.paused_queues().await.expect("paused"), ["work"]);
    let held = b.enqueue(task("ok", "work")).await.expect("enqueue").id;
    let passed = b.enqueue(task("ok", "other")).await.expect("enqueue").id;
    until("the other queue's task to complete", || async {
        let record = b.get(passed).await.expect("get").expect("the task");
        record.state == TaskState::Completed
    })
    .await;
    let record = b.get(held).await.expect("get").expect("the task");
    assert_eq!(
        record.state,
        TaskState::Available,
        "the paused queue's task waits"
    );
    screenshot(&browser, "paused.png").await;
    click(&browser, "tr[data-queue=\"work\"] button.resume").await;
    until("the resumed queue's task to complete", || async {
        let record = b.get(held).await.expect("get").expect("the task");
        record.state == TaskState::Completed
    })
    .await;

    browser.close().await.expect("close the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_very_long_name_does_not_widen_a_page() {
    let env = Env::new();
    let b = env.backend().await;
    // The longest names a task may have (conveyor_core::MAX_NAME_CHARS),
    // with no space to break them at.
    let handler = "h".repeat(conveyor::durable::MAX_NAME_CHARS);
    let queue = "q".repeat(conveyor::durable::MAX_NAME_CHARS);
    let id = b
        .enqueue(NewTask::new(handler.clone(), b"{}".to_vec()).queue(queue.clone()))
        .await
        .expect("enqueue")
        .id;
    let (serve, addr) = common::spawn_with_address(
        env.cmd(&["serve", "--listen", "127.0.0.1:0"]),
        "API at http://",
    );
    let _serve = Killed(serve);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let driver = ChromeDriver::start().expect("chromedriver");
    let browser = ClientBuilder::rustls()
        .expect("a WebDriver client")
        .capabilities(ChromeDriver::headless_chromium(1400, 1000))
        .connect(&driver.url())
        .await
        .expect("a Chromium session");
    let base = format!("http://{addr}");
    for (name, path) in [
        ("overview", "/".to_string()),
        ("tasks", "/tasks?state=available".to_string()),
        ("task", format!("/tasks/{}", id.0)),
    ] {
        browser
            .goto(&format!("{base}{path}"))
            .await
            .expect("the page");
        arrived(&browser, &path).await;
        let width = browser
            .execute(
                "return [document.documentElement.scrollWidth, window.innerWidth]",
                vec![],
            )
            .await
            .expect("the widths");
        let (page, window) = (
            width[0].as_u64().expect("a width"),
            width[1].as_u64().expect("a width"),
        );
        screenshot(&browser, &format!("long-name-{name}.png")).await;
        assert!(
            page <= window,
            "{path}: the page is {page} px wide in a {window} px window"
        );
    }
    browser.close().await.expect("close the session");
}
