//! The runner against a source written here: what it fetches, how many at
//! once, what it settles, and a task id delivered again while its first
//! attempt still runs.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor::durable::FinishAction;
use conveyor::source::{Delivery, Retries, Routes, Runner, Settlement, Source};
use conveyor::{async_trait, Error, Handler, TaskError, TaskId};
use parking_lot::Mutex;
use tokio::sync::Notify;

/// Hands out what the test pushes; records every settlement.
#[derive(Default)]
struct Scripted {
    queue: Mutex<VecDeque<Delivery<Vec<u8>, u64>>>,
    settled: Mutex<Vec<Settlement<u64>>>,
    changed: Notify,
    most_fetched: AtomicUsize,
    retries: Option<Retries>,
}

impl Scripted {
    fn push(&self, id: u64, receipt: u64, payload: &str) {
        self.queue.lock().push_back(Delivery {
            id: TaskId(id),
            handler: "echo".into(),
            payload: payload.as_bytes().to_vec(),
            queue: Arc::from("q"),
            attempt: 1,
            max_attempts: Some(3),
            timeout: None,
            receipt,
            ready_at: Some(std::time::SystemTime::now()),
            trace: None,
        });
        self.changed.notify_waiters();
    }

    async fn settled_count(&self, n: usize) -> Vec<Settlement<u64>> {
        for _ in 0..2_000 {
            if self.settled.lock().len() >= n {
                return self.settled.lock().clone();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("only {:?} settled", self.settled.lock());
    }
}

/// The runner owns its source: the test keeps the other end.
struct Src(Arc<Scripted>);

#[async_trait]
impl Source for Src {
    type Payload = Vec<u8>;
    type Receipt = u64;

    fn retries(&self) -> Retries {
        self.0.retries.unwrap_or(Retries::BySource)
    }

    async fn fetch(&self, max: usize) -> Result<Vec<Delivery<Vec<u8>, u64>>, Error> {
        self.0.most_fetched.fetch_max(max, Ordering::SeqCst);
        let mut q = self.0.queue.lock();
        let n = max.min(q.len());
        Ok(q.drain(..n).collect())
    }

    async fn wait_for_work(&self, timeout: Duration) -> bool {
        let _ = tokio::time::timeout(timeout, self.0.changed.notified()).await;
        true
    }

    async fn settle(&self, batch: Vec<Settlement<u64>>) -> Result<Vec<Result<(), Error>>, Error> {
        let n = batch.len();
        self.0.settled.lock().extend(batch);
        Ok((0..n).map(|_| Ok(())).collect())
    }
}

fn echo_routes(handler: Handler<String, String>) -> Routes<Vec<u8>> {
    let mut routes = Routes::new();
    routes.add(
        handler,
        |p: &Vec<u8>| String::from_utf8(p.clone()).map_err(|e| e.to_string()),
        |out: &String| Ok(Some(out.as_bytes().to_vec())),
    );
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_up_to_its_slots_and_settles_every_task() {
    let source = Arc::new(Scripted::default());
    for i in 0..100 {
        source.push(i, 1000 + i, &format!("t{i}"));
    }
    let echo = Handler::io("echo", |s: String, _ctx| async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok::<_, TaskError>(s.to_uppercase())
    });
    let runner = Runner::new(Src(source.clone()), echo_routes(echo))
        .slots(4)
        .poll_interval(Duration::from_millis(10));
    let handle = runner.handle();
    let run = tokio::spawn(runner.run_until(std::future::pending()));
    let settled = source.settled_count(100).await;
    handle.stop();
    let report = run.await.unwrap().unwrap();
    assert!(report.drained);
    assert_eq!(report.stats.completed, 100);
    assert!(
        source.most_fetched.load(Ordering::SeqCst) <= 4,
        "never more than the slots"
    );
    for s in &settled {
        assert_eq!(
            s.receipt,
            1000 + s.id.0,
            "each settlement carries its delivery's receipt"
        );
        let want = format!("T{}", s.id.0).into_bytes();
        assert_eq!(s.action, FinishAction::Complete { result: Some(want) });
    }
}

/// A delivery of an id whose earlier attempt still runs cancels that
/// attempt; the new one starts only once the old one is over, and both are
/// settled, each with its own receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_delivered_again_never_runs_twice_at_once() {
    let source = Arc::new(Scripted::default());
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (r, m) = (running.clone(), most.clone());
    let started = Arc::new(Notify::new());
    let s = started.clone();
    let slow = Handler::io("echo", move |p: String, ctx: conveyor::TaskContext| {
        let (r, m, s) = (r.clone(), m.clone(), s.clone());
        async move {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            s.notify_one();
            if p == "first" {
                // Runs until cancelled.
                ctx.cancelled().await;
            } else {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            r.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, TaskError>(p)
        }
    });
    let runner = Runner::new(Src(source.clone()), echo_routes(slow))
        .slots(4)
        .poll_interval(Duration::from_millis(5));
    let handle = runner.handle();
    let run = tokio::spawn(runner.run_until(std::future::pending()));
    source.push(7, 1, "first");
    started.notified().await;
    source.push(7, 2, "second");
    let settled = source.settled_count(2).await;
    handle.stop();
    run.await.unwrap().unwrap();
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "never two attempts of one id at once"
    );
    assert_eq!(settled[0].receipt, 1);
    assert!(
        matches!(settled[0].action, FinishAction::Retry { .. }),
        "the old attempt was cancelled: {:?}",
        settled[0].action
    );
    assert_eq!(settled[1].receipt, 2);
    assert_eq!(
        settled[1].action,
        FinishAction::Complete {
            result: Some(b"second".to_vec())
        },
        "the new attempt ran, not cancelled by the old one's cancellation"
    );
}

/// In-place retries (a stream): the runner retries with the handler's policy
/// and settles only the final outcome, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_retries_settle_once() {
    let source = Arc::new(Scripted {
        retries: Some(Retries::InPlace),
        ..Default::default()
    });
    let tries = Arc::new(AtomicUsize::new(0));
    let t = tries.clone();
    let flaky = Handler::io("echo", move |p: String, _ctx| {
        let t = t.clone();
        async move {
            if t.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(TaskError::new("flaky"))
            } else {
                Ok(p)
            }
        }
    })
    .retry(
        conveyor::RetryPolicy::attempts(5)
            .backoff(Duration::from_millis(1), Duration::from_millis(2)),
    );
    let runner = Runner::new(Src(source.clone()), echo_routes(flaky))
        .poll_interval(Duration::from_millis(5));
    let handle = runner.handle();
    let run = tokio::spawn(runner.run_until(std::future::pending()));
    let mut d = Delivery {
        id: TaskId(1),
        handler: "echo".into(),
        payload: b"x".to_vec(),
        queue: Arc::from("q"),
        attempt: 1,
        max_attempts: None,
        timeout: None,
        receipt: 9,
        ready_at: None,
        trace: None,
    };
    d.attempt = 1;
    source.queue.lock().push_back(d);
    source.changed.notify_waiters();
    let settled = source.settled_count(1).await;
    handle.stop();
    run.await.unwrap().unwrap();
    assert_eq!(tries.load(Ordering::SeqCst), 3);
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].attempts, 3);
    assert_eq!(
        settled[0].action,
        FinishAction::Complete {
            result: Some(b"x".to_vec())
        }
    );
}

/// A settle call that fails for good (bad data) is narrowed down: the batch's
/// items are settled one by one, so only the bad one is dropped; a failure
/// that may pass is retried as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_that_fails_for_good_holds_back_no_other() {
    /// Refuses any batch holding receipt 13 (bad data); fails the first
    /// call of all as an outage.
    struct Picky {
        inner: Arc<Scripted>,
        calls: AtomicUsize,
    }
    #[async_trait]
    impl Source for Picky {
        type Payload = Vec<u8>;
        type Receipt = u64;
        async fn fetch(&self, max: usize) -> Result<Vec<Delivery<Vec<u8>, u64>>, Error> {
            Src(self.inner.clone()).fetch(max).await
        }
        async fn wait_for_work(&self, timeout: Duration) -> bool {
            Src(self.inner.clone()).wait_for_work(timeout).await
        }
        async fn settle(
            &self,
            batch: Vec<Settlement<u64>>,
        ) -> Result<Vec<Result<(), Error>>, Error> {
            use conveyor::{BackendErrorKind, Error as E};
            if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(E::backend(
                    BackendErrorKind::Unavailable,
                    "down for a moment",
                ));
            }
            if batch.iter().any(|s| s.receipt == 13) {
                return Err(E::backend(BackendErrorKind::Data, "receipt 13 is corrupt"));
            }
            Src(self.inner.clone()).settle(batch).await
        }
    }
    let scripted = Arc::new(Scripted::default());
    // Held back until every task is fetched, so they settle in one batch.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    let echo = Handler::io("echo", move |s: String, _ctx| {
        let g = g.clone();
        async move {
            g.acquire()
                .await
                .map_err(|e| TaskError::new(e.to_string()))?
                .forget();
            Ok::<_, TaskError>(s)
        }
    });
    let source = Picky {
        inner: scripted.clone(),
        calls: AtomicUsize::new(0),
    };
    let runner = Runner::new(source, echo_routes(echo))
        .slots(8)
        .poll_interval(Duration::from_millis(5));
    let handle = runner.handle();
    let run = tokio::spawn(runner.run_until(std::future::pending()));
    for i in 10..16 {
        scripted.push(i, i, "x");
    }
    while handle.stats().in_flight < 6 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    gate.add_permits(6);
    let settled = scripted.settled_count(5).await;
    handle.stop();
    let report = run.await.unwrap().unwrap();
    let mut receipts: Vec<u64> = settled.iter().map(|s| s.receipt).collect();
    receipts.sort();
    assert_eq!(receipts, vec![10, 11, 12, 14, 15], "all but the bad one");
    assert!(report.stats.backend_errors >= 3, "{:?}", report.stats);
}

/// Keeps the runner's `Control`, to cancel tasks from an observer.
struct Cancelling(Arc<Scripted>, Arc<Mutex<Option<conveyor::source::Control>>>);

#[async_trait]
impl Source for Cancelling {
    type Payload = Vec<u8>;
    type Receipt = u64;

    fn attach(&self, control: conveyor::source::Control) {
        *self.1.lock() = Some(control);
    }

    async fn fetch(&self, max: usize) -> Result<Vec<Delivery<Vec<u8>, u64>>, Error> {
        Src(self.0.clone()).fetch(max).await
    }

    async fn wait_for_work(&self, timeout: Duration) -> bool {
        Src(self.0.clone()).wait_for_work(timeout).await
    }

    async fn settle(&self, batch: Vec<Settlement<u64>>) -> Result<Vec<Result<(), Error>>, Error> {
        Src(self.0.clone()).settle(batch).await
    }
}

/// An observer may call back into the runner: one that cancels every task
/// it sees start (through the source's `Control`) gets each one cancelled
/// and settled, and the runner goes on — the event is handed out after the
/// runner lets go of the task, never while it holds it (it would wait on
/// itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_that_calls_back_into_the_runner_does_not_stall_it() {
    use conveyor::events::{Event, TaskEventKind};

    let source = Arc::new(Scripted::default());
    let control = Arc::new(Mutex::new(None::<conveyor::source::Control>));
    let slow = Handler::io("echo", |s: String, _ctx| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<_, TaskError>(s)
    });
    let runner = Runner::new(
        Cancelling(source.clone(), control.clone()),
        echo_routes(slow),
    )
    .slots(4)
    .poll_interval(Duration::from_millis(10));
    let cancelled = Arc::new(AtomicUsize::new(0));
    let (c, n) = (control.clone(), cancelled.clone());
    let _observer = runner.events().observe(move |event| {
        if let Event::Task(t) = event {
            if t.kind == TaskEventKind::Started {
                let control = c.lock().clone();
                if control.is_some_and(|c| c.cancel(t.id)) {
                    n.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    });
    let handle = runner.handle();
    let run = tokio::spawn(runner.run_until(std::future::pending()));
    for i in 0..8 {
        source.push(i, 100 + i, "x");
    }
    let settled = source.settled_count(8).await;
    handle.stop();
    run.await.unwrap().unwrap();
    assert_eq!(cancelled.load(Ordering::SeqCst), 8);
    assert!(
        settled
            .iter()
            .all(|s| s.outcome == Some(conveyor::OutcomeKind::Cancelled)),
        "{settled:?}"
    );
}

/// Per-item answers of a settle call: a timeout is tried again until the
/// source takes it (never dropped); a completion refused for good (a result
/// over the store's limit) becomes a failed attempt carrying the refusal;
/// a stale one is counted. The callback hears each only after the source
/// answered, with what it did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_item_of_a_settle_call_is_retried_rewritten_or_counted_by_its_answer() {
    use conveyor::source::{Settled, Stored};
    use conveyor::{BackendErrorKind, NextStep};

    /// Receipt 20 times out twice, 21's result is too large, 22 is stale.
    struct Answers {
        inner: Arc<Scripted>,
        timeouts: AtomicUsize,
    }
    #[async_trait]
    impl Source for Answers {
        type Payload = Vec<u8>;
        type Receipt = u64;
        async fn fetch(&self, max: usize) -> Result<Vec<Delivery<Vec<u8>, u64>>, Error> {
            Src(self.inner.clone()).fetch(max).await
        }
        async fn wait_for_work(&self, timeout: Duration) -> bool {
            Src(self.inner.clone()).wait_for_work(timeout).await
        }
        async fn settle(
            &self,
            batch: Vec<Settlement<u64>>,
        ) -> Result<Vec<Result<(), Error>>, Error> {
            let mut answers = Vec::new();
            for s in batch {
                let answer = match (s.receipt, &s.action) {
                    (20, _) if self.timeouts.fetch_add(1, Ordering::SeqCst) < 2 => Err(
                        Error::backend(BackendErrorKind::Timeout, "no answer in 5 s"),
                    ),
                    (21, FinishAction::Complete { result }) => Err(Error::InvalidConfig(format!(
                        "the result is {} bytes, over the store's limit of 4 bytes",
                        result.as_ref().map_or(0, Vec::len)
                    ))),
                    (22, _) => Err(Error::StaleLease(s.id)),
                    _ => {
                        self.inner.settled.lock().push(s);
                        Ok(())
                    }
                };
                answers.push(answer);
            }
            Ok(answers)
        }
    }
    let scripted = Arc::new(Scripted::default());
    let heard = Arc::new(Mutex::new(Vec::<Settled>::new()));
    let into = heard.clone();
    let echo = Handler::io(
        "echo",
        |s: String, _ctx| async move { Ok::<_, TaskError>(s) },
    );
    let source = Answers {
        inner: scripted.clone(),
        timeouts: AtomicUsize::new(0),
    };
    let runner = Runner::new(source, echo_routes(echo))
        .slots(8)
        .poll_interval(Duration::from_millis(5))
        .on_task_complete(100, move |s| into.lock().push(s));
    let handle = runner.handle();
    let run = tokio::spawn(runner.run_until(std::future::pending()));
    for i in 20..24 {
        scripted.push(i, i, "a result");
    }
    let settled = scripted.settled_count(3).await;
    while heard.lock().len() < 4 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    handle.stop();
    let report = run.await.unwrap().unwrap();
    let by = |r: u64| {
        settled
            .iter()
            .find(|s| s.receipt == r)
            .map(|s| s.action.clone())
    };
    assert_eq!(
        by(20),
        Some(FinishAction::Complete {
            result: Some(b"a result".to_vec())
        }),
        "timed out twice, then taken"
    );
    match by(21) {
        Some(FinishAction::Retry { delay, error }) => {
            assert!(delay > Duration::ZERO);
            assert!(
                error.contains("refused") && error.contains("8 bytes, over the store's limit of 4"),
                "{error}"
            );
        }
        other => panic!("a refused completion is a failed attempt, got {other:?}"),
    }
    assert_eq!(by(22), None, "stale: not taken");
    assert!(by(23).is_some());
    let heard = heard.lock();
    let of = |id: u64| heard.iter().find(|s| s.id == TaskId(id)).expect("heard");
    assert_eq!(of(20).stored, Stored::Taken);
    assert_eq!(of(20).step, NextStep::Done);
    assert_eq!(of(21).stored, Stored::Taken);
    assert!(matches!(of(21).step, NextStep::Retry { .. }));
    assert!(of(21).error.as_deref().unwrap_or("").contains("limit"));
    assert_eq!(
        of(22).stored,
        Stored::Stale,
        "a fenced-off success is not told as one"
    );
    assert_eq!(report.stats.completed, 2, "{:?}", report.stats);
    assert_eq!(report.stats.retried, 1, "{:?}", report.stats);
    assert_eq!(report.stats.stale, 1, "{:?}", report.stats);
}

/// A source that stops answering (a black-holed store: fetch, settle and
/// renew hang) does not hold up a stop: the runner returns within its grace
/// and the wrap-up, abandoning the calls out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_stops_answering_does_not_hold_up_a_stop() {
    struct Hangs {
        inner: Arc<Scripted>,
        answering: std::sync::atomic::AtomicBool,
    }
    #[async_trait]
    impl Source for Hangs {
        type Payload = Vec<u8>;
        type Receipt = u64;
        async fn fetch(&self, max: usize) -> Result<Vec<Delivery<Vec<u8>, u64>>, Error> {
            if !self.answering.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            Src(self.inner.clone()).fetch(max).await
        }
        fn lease(&self) -> Option<Duration> {
            Some(Duration::from_millis(300))
        }
        async fn renew(&self, receipts: &[u64]) -> Result<Vec<bool>, Error> {
            if !self.answering.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            Ok(vec![true; receipts.len()])
        }
        async fn settle(
            &self,
            batch: Vec<Settlement<u64>>,
        ) -> Result<Vec<Result<(), Error>>, Error> {
            if !self.answering.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            Src(self.inner.clone()).settle(batch).await
        }
    }
    let scripted = Arc::new(Scripted::default());
    for i in 0..4 {
        scripted.push(i, i, "x");
    }
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    let echo = Handler::io("echo", move |s: String, _ctx| {
        let g = g.clone();
        async move {
            let _ = g.acquire().await;
            Ok::<_, TaskError>(s)
        }
    });
    let source = Hangs {
        inner: scripted.clone(),
        answering: std::sync::atomic::AtomicBool::new(true),
    };
    let grace = Duration::from_millis(500);
    let runner = Runner::new(source, echo_routes(echo))
        .slots(8)
        .grace(grace)
        .poll_interval(Duration::from_millis(5));
    // The runner owns the source; the test keeps a handle on it.
    let source = runner.source().clone();
    let handle = runner.handle();
    let run = tokio::spawn(runner.run_until(std::future::pending()));
    while handle.stats().in_flight < 4 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The store stops answering: a fetch is out (4 slots free), the
    // running tasks' settlements will hang, and so will renewals.
    source.answering.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    gate.add_permits(4);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let began = std::time::Instant::now();
    handle.stop();
    let report = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the runner stopped")
        .unwrap()
        .unwrap();
    let took = began.elapsed();
    assert!(
        took <= grace + conveyor::source::WRAP_UP + Duration::from_millis(300),
        "the stop took {took:?}"
    );
    assert_eq!(
        report.stats.completed, 0,
        "nothing was stored: {:?}",
        report.stats
    );
}

/// While the store fails to take a settlement, its claim is renewed with
/// the running tasks', so a store that answers late does not cost the task
/// its lease (and a rerun elsewhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_waiting_for_the_store_keeps_its_claim() {
    use conveyor::BackendErrorKind;
    struct Late {
        inner: Arc<Scripted>,
        failing: std::sync::atomic::AtomicBool,
        renewed: Mutex<Vec<u64>>,
    }
    #[async_trait]
    impl Source for Late {
        type Payload = Vec<u8>;
        type Receipt = u64;
        async fn fetch(&self, max: usize) -> Result<Vec<Delivery<Vec<u8>, u64>>, Error> {
            Src(self.inner.clone()).fetch(max).await
        }
        async fn wait_for_work(&self, timeout: Duration) -> bool {
            Src(self.inner.clone()).wait_for_work(timeout).await
        }
        fn lease(&self) -> Option<Duration> {
            Some(Duration::from_millis(150))
        }
        async fn renew(&self, receipts: &[u64]) -> Result<Vec<bool>, Error> {
            self.renewed.lock().extend_from_slice(receipts);
            Ok(vec![true; receipts.len()])
        }
        async fn settle(
            &self,
            batch: Vec<Settlement<u64>>,
        ) -> Result<Vec<Result<(), Error>>, Error> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(Error::backend(BackendErrorKind::Unavailable, "down"));
            }
            Src(self.inner.clone()).settle(batch).await
        }
    }
    let scripted = Arc::new(Scripted::default());
    let source = Late {
        inner: scripted.clone(),
        failing: std::sync::atomic::AtomicBool::new(true),
        renewed: Mutex::new(Vec::new()),
    };
    let echo = Handler::io(
        "echo",
        |s: String, _ctx| async move { Ok::<_, TaskError>(s) },
    );
    let runner = Runner::new(source, echo_routes(echo))
        .slots(4)
        .poll_interval(Duration::from_millis(5));
    let source = runner.source().clone();
    let handle = runner.handle();
    let run = tokio::spawn(runner.run_until(std::future::pending()));
    scripted.push(1, 41, "a");
    scripted.push(2, 42, "b");
    // Settled at once, then the store fails for several leases.
    while handle.stats().settling < 2 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    source.renewed.lock().clear();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let renewed = source.renewed.lock().clone();
    assert!(
        renewed.contains(&41) && renewed.contains(&42),
        "the waiting settlements' claims were renewed: {renewed:?}"
    );
    source.failing.store(false, Ordering::SeqCst);
    let settled = scripted.settled_count(2).await;
    assert_eq!(settled.len(), 2);
    handle.stop();
    run.await.unwrap().unwrap();
}
