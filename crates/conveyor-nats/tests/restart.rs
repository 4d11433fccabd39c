//! The backend survives a NATS restart: the test runs its own
//! `nats-server -js` (store in a temporary directory) on a free loopback
//! port, kills it with SIGKILL mid-work, starts it again on the same port
//! and directory, and shows that calls fail cleanly (as transient backend
//! errors) meanwhile, then work again with every enqueued task still there:
//! leases taken before the crash are still honoured, the rest of the work
//! is reserved and finished, and idle workers are woken again.
//!
//! Every call against a server that is down, or that stopped answering
//! (SIGSTOP: the connection stays open, nothing comes back), returns a
//! transient error within its bound (a request waits 1 s at most), so no
//! caller waits on the server for longer.
//!
//! Then the same with real workers (conveyor's `Worker`, two of them with
//! 20 slots each, thousands of tasks): the server is killed mid-run and
//! brought back on its store; nothing is lost, duplicates stay within the
//! tasks in flight, work resumes within 3 s of the server being back, and
//! a worker stopped mid-outage with its fetch waiting exits within its
//! grace + 2 s. And a worker whose fetch waits on a server that stopped
//! answering (SIGSTOP: the connection stays open, nothing comes back) exits
//! within its grace + 2 s too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conveyor::durable::{WorkerProbe, WorkerReport, WorkerStopper};
use conveyor::{Handler, TaskError, Worker};
use conveyor_core::parts::*;
use conveyor_core::{
    async_trait, Backend, Capabilities, Enqueued, Error, Finish, FinishAction, Lease, NewTask,
    ReserveParams, Reserved, SystemClock, TaskState,
};
use conveyor_nats::{NatsBackend, NatsOptions};
use conveyor_testkit::nats_server::TempNats;
use tokio::sync::watch;

fn queue() -> Vec<String> {
    vec![conveyor_core::DEFAULT_QUEUE.to_string()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (Debian package nats-server)"
)]
async fn survives_a_nats_restart() {
    let mut server = TempNats::start();
    let b = NatsBackend::connect_with(&server.url(), "restart", Arc::new(SystemClock))
        .await
        .expect("connect");
    let lease = Duration::from_secs(300);

    let tasks: Vec<NewTask> = (0..100)
        .map(|i| {
            let t = NewTask::new(format!("h{i}"), vec![i as u8]);
            match i % 4 {
                0 => t.unique_key(format!("u{i}")),
                1 => t.priority(3),
                2 => t.delay(Duration::from_secs(3600)),
                _ => t,
            }
        })
        .collect();
    let ids: Vec<_> = b
        .enqueue_many(tasks)
        .await
        .expect("enqueue")
        .into_iter()
        .map(|e| e.id)
        .collect();
    let held = b
        .reserve(ReserveParams::new(&queue(), 10, lease))
        .await
        .expect("reserve");
    assert_eq!(held.len(), 10);
    let done: Vec<_> = held[..5]
        .iter()
        .map(|r| {
            Finish::new(
                r.lease.clone(),
                FinishAction::Complete {
                    result: Some(b"ok".to_vec()),
                },
            )
        })
        .collect();
    for r in b.finish(done).await.expect("finish") {
        r.expect("applies");
    }
    let mut before = Vec::new();
    for id in &ids {
        before.push(b.get(*id).await.expect("get").expect("task"));
    }

    server.kill();
    let failed = tokio::time::timeout(Duration::from_secs(60), b.stats())
        .await
        .expect("a call against a dead server returns");
    match failed {
        Err(Error::Backend(e)) => assert!(e.is_transient(), "{e:?} is transient"),
        other => panic!("store errors while the server is down: {other:?}"),
    }
    let failed = tokio::time::timeout(
        Duration::from_secs(60),
        b.reserve(ReserveParams::new(&queue(), 1, lease)),
    )
    .await
    .expect("a call against a dead server returns");
    assert!(matches!(failed, Err(Error::Backend(_))), "{failed:?}");

    assert_eq!(b.reconnects(), Some(0));
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match b.stats().await {
            Ok(_) if b.reconnects() >= Some(1) => break,
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => {
                assert!(Instant::now() < deadline, "no reconnect after 60 s: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    // Every task is there as it was.
    for rec in &before {
        let now = b.get(rec.id).await.expect("get").expect("task kept");
        assert_eq!(&now, rec);
    }
    // Leases taken before the crash are honoured, and the rest of the work
    // proceeds: each ready task exactly once.
    let report = b
        .finish(
            held[5..]
                .iter()
                .map(|r| Finish::complete(r.lease.clone()))
                .collect(),
        )
        .await
        .expect("finish after restart");
    assert!(report.iter().all(|r| r.is_ok()), "{report:?}");
    let mut reserved = 0;
    loop {
        let got = b
            .reserve(ReserveParams::new(&queue(), 50, lease))
            .await
            .expect("reserve");
        if got.is_empty() {
            break;
        }
        reserved += got.len();
        let out = b
            .finish(
                got.iter()
                    .map(|r| Finish::complete(r.lease.clone()))
                    .collect(),
            )
            .await
            .expect("finish");
        assert!(out.iter().all(|r| r.is_ok()));
    }
    assert_eq!(reserved, 75 - 10, "every ready task, once");
    let stats = b.stats().await.expect("stats");
    assert_eq!(stats[0].count(TaskState::Completed), 75);
    assert_eq!(stats[0].count(TaskState::Scheduled), 25);

    // The wake-up subscription came back with the connection.
    let waiter = b.clone();
    let woke = tokio::spawn(async move {
        waiter
            .wait_for_work(&queue(), Duration::from_secs(600))
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !woke.is_finished() {
        assert!(Instant::now() < deadline, "no wake-up after the restart");
        b.enqueue(NewTask::new("late", Vec::new()))
            .await
            .expect("enqueue");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(woke.await.expect("waiter"));
}

/// A NATS backend that counts the reserves it has begun, so a test can
/// wait until a worker's fetch is out (a signal, not a sleep).
struct Watched {
    inner: NatsBackend,
    reserves: watch::Sender<u64>,
}

impl Watched {
    fn new(inner: NatsBackend) -> Arc<Watched> {
        Arc::new(Watched {
            inner,
            reserves: watch::Sender::new(0),
        })
    }

    /// Waits until a reserve begun after this call is out.
    async fn fetch_out(&self) {
        let mut rx = self.reserves.subscribe();
        let seen = *rx.borrow_and_update();
        rx.wait_for(|n| *n > seen).await.expect("the backend lives");
    }
}

#[async_trait]
impl Backend for Watched {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, Error> {
        self.inner.enqueue_many(tasks).await
    }
    async fn reserve(&self, params: ReserveParams<'_>) -> Result<Vec<Reserved>, Error> {
        self.reserves.send_modify(|n| *n += 1);
        self.inner.reserve(params).await
    }
    async fn renew(&self, leases: &[Lease], lease: Duration) -> Result<Vec<bool>, Error> {
        self.inner.renew(leases, lease).await
    }
    async fn finish(&self, reports: Vec<Finish>) -> Result<Vec<Result<(), Error>>, Error> {
        self.inner.finish(reports).await
    }
    async fn wait_for_work(&self, queues: &[String], timeout: Duration) -> bool {
        self.inner.wait_for_work(queues, timeout).await
    }
    fn reconnects(&self) -> Option<u64> {
        self.inner.reconnects()
    }
    fn maintenance(&self) -> Result<&dyn Maintenance, Error> {
        self.inner.maintenance()
    }
}

/// Every start of a task, by its number, and their count (to wait on).
#[derive(Clone)]
struct Starts {
    by_task: Arc<Mutex<HashMap<u64, u32>>>,
    count: Arc<watch::Sender<u64>>,
}

impl Starts {
    fn new() -> Starts {
        Starts {
            by_task: Arc::new(Mutex::new(HashMap::new())),
            count: Arc::new(watch::Sender::new(0)),
        }
    }

    fn handler(&self) -> Handler<u64, u64> {
        let starts = self.clone();
        Handler::io("work", move |i: u64, _ctx| {
            *starts.by_task.lock().expect("starts").entry(i).or_default() += 1;
            starts.count.send_modify(|n| *n += 1);
            async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                Ok::<_, TaskError>(i)
            }
        })
    }

    fn count(&self) -> u64 {
        *self.count.borrow()
    }

    /// Waits until more than `n` starts, at most `limit`; false if not.
    async fn beyond(&self, n: u64, limit: Duration) -> bool {
        let mut rx = self.count.subscribe();
        let passed = tokio::time::timeout(limit, rx.wait_for(|c| *c > n))
            .await
            .is_ok();
        passed
    }
}

const GRACE: Duration = Duration::from_secs(1);

/// A worker running in the background.
struct Running {
    stopper: WorkerStopper,
    probe: WorkerProbe,
    run: tokio::task::JoinHandle<Result<WorkerReport, Error>>,
}

fn start_worker(backend: Arc<dyn Backend>, starts: &Starts, slots: usize) -> Running {
    let worker = Worker::builder(backend)
        .handler(starts.handler())
        .slots(slots)
        // Longer than the outage plus the worker's pause before it
        // retries a settlement: a lease that runs out while its settlement
        // waits lets the task run again (a duplicate beyond the fault's).
        .lease(Duration::from_secs(15))
        .grace(GRACE)
        .poll_interval(Duration::from_millis(50))
        .maintenance(Duration::from_millis(250), Duration::from_secs(600))
        .build()
        .expect("a valid worker");
    Running {
        stopper: worker.stopper(),
        probe: worker.probe(),
        run: tokio::spawn(worker.run_until(std::future::pending())),
    }
}

impl Running {
    /// Tasks whose claim the worker holds and that started or may start:
    /// fetched and not settled in the store yet.
    fn claimed(&self) -> u64 {
        let stats = self.probe.stats();
        (stats.in_flight + stats.settling) as u64
    }

    /// Stops the worker and asserts it exits within its grace + 2 s.
    async fn stop_within_grace(self, when: &str) {
        let began = Instant::now();
        self.stopper.stop();
        let limit = GRACE + Duration::from_secs(2);
        let report = tokio::time::timeout(limit, self.run)
            .await
            .unwrap_or_else(|_| panic!("{when}: the worker did not exit within {limit:?}"));
        report.expect("the worker task").expect("the worker's run");
        println!("{when}: the worker exited in {:?}", began.elapsed());
    }
}

async fn connect(server: &TempNats, prefix: &str) -> NatsBackend {
    let options = NatsOptions {
        prefix: prefix.to_string(),
        // Deliveries lost with a connection come back soon.
        ack_wait: Duration::from_secs(2),
        ..NatsOptions::default()
    };
    NatsBackend::connect_options(&server.url(), options, Arc::new(SystemClock))
        .await
        .expect("connect")
}

/// Counts of the namespace's tasks by state, read when the server answers.
async fn completed(b: &NatsBackend) -> Option<u64> {
    let stats = b.stats().await.ok()?;
    Some(stats.iter().map(|s| s.count(TaskState::Completed)).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (Debian package nats-server)"
)]
async fn workers_resume_after_a_restart_and_stop_mid_outage() {
    const TASKS: u64 = 3_000;
    let mut server = TempNats::start();
    let producer = connect(&server, "workers").await;
    for batch in (0..TASKS).collect::<Vec<_>>().chunks(500) {
        let tasks = batch
            .iter()
            .map(|i| NewTask::new("work", serde_json::to_vec(i).expect("json")))
            .collect();
        producer.enqueue_many(tasks).await.expect("enqueue");
    }
    let starts = Starts::new();
    let a = start_worker(Arc::new(connect(&server, "workers").await), &starts, 20);
    let b_backend = Watched::new(connect(&server, "workers").await);
    let b = start_worker(b_backend.clone(), &starts, 20);

    // Mid-run: a sixth of the tasks started, most still to come. The
    // server then stays down for several seconds: long enough for the
    // client's reconnect attempts to back off (async-nats's default went up
    // to 4 s between two attempts).
    assert!(
        starts.beyond(TASKS / 6, Duration::from_secs(120)).await,
        "the workers started too few tasks"
    );
    server.kill();
    // What may run twice: the tasks the workers held at the fault.
    let in_flight = a.claimed() + b.claimed();
    // Worker B is stopped while the server is down and its fetch waits.
    b_backend.fetch_out().await;
    b.stop_within_grace("mid-outage, a fetch out").await;
    // The outage goes on before the server comes back.
    let before = starts.count();
    let _ = starts.beyond(before, Duration::from_secs(6)).await;
    tokio::task::block_in_place(|| server.restart());
    let back = Instant::now();
    let at_restart = starts.count();
    assert!(
        starts.beyond(at_restart, Duration::from_secs(3)).await,
        "no task started within 3 s of the server being back"
    );
    println!(
        "work resumed {:?} after the server was back",
        back.elapsed()
    );

    // Nothing lost: every task completes.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if completed(&producer).await == Some(TASKS) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every task completed: {:?} of {TASKS}",
            completed(&producer).await
        );
        // Woken by the next start, or looked at again after a while.
        let _ = starts
            .beyond(starts.count(), Duration::from_millis(500))
            .await;
    }
    a.stop_within_grace("server up").await;
    let by_task = starts.by_task.lock().expect("starts").clone();
    assert_eq!(by_task.len() as u64, TASKS, "every task ran");
    let duplicates: u64 = by_task.values().map(|n| u64::from(*n) - 1).sum();
    println!("duplicates: {duplicates}, tasks in flight at the fault: {in_flight}");
    assert!(
        duplicates <= in_flight,
        "{duplicates} duplicates, more than the {in_flight} tasks in flight at the fault"
    );
    let _ = producer.destroy().await;
}

/// The pid of the private server listening on `url`'s port.
fn server_pid(url: &str) -> u32 {
    let port = url.rsplit(':').next().expect("a port");
    let me = std::process::id();
    conveyor_testkit::process::children_of(me)
        .into_iter()
        .find(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.windows(2)
                .any(|w| w[0] == b"-p" && w[1] == port.as_bytes())
        })
        .expect("the private nats-server is a child of this test")
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (Debian package nats-server)"
)]
async fn a_worker_stops_while_its_fetch_waits_on_a_silent_server() {
    let server = TempNats::start();
    let producer = connect(&server, "silent").await;
    let tasks = (0..200u64)
        .map(|i| NewTask::new("work", serde_json::to_vec(&i).expect("json")))
        .collect();
    producer.enqueue_many(tasks).await.expect("enqueue");
    let starts = Starts::new();
    let backend = Watched::new(connect(&server, "silent").await);
    let w = start_worker(backend.clone(), &starts, 4);
    assert!(
        starts.beyond(20, Duration::from_secs(60)).await,
        "the worker started too few tasks"
    );
    // The server stops answering; the connection stays open.
    let pid = server_pid(&server.url());
    signal(pid, "STOP");
    backend.fetch_out().await;
    w.stop_within_grace("a fetch waiting on a silent server")
        .await;
    signal(pid, "CONT");
}

/// Every call of the worker's path, and an enqueue, against `b`: each must
/// fail with a transient error within `limit`.
async fn every_call_returns_within(b: &NatsBackend, leases: &[Lease], limit: Duration, when: &str) {
    let q = queue();
    let lease = Duration::from_secs(60);
    let check = |what: &str, began: Instant, r: Result<(), Error>| {
        let took = began.elapsed();
        match r {
            Err(e) => assert!(e.is_transient(), "{when}: {what}: {e:?} is transient"),
            Ok(()) => panic!("{when}: {what} succeeded against a server that does not answer"),
        }
        assert!(
            took <= limit,
            "{when}: {what} took {took:?}, over {limit:?}"
        );
        println!("{when}: {what} returned in {took:?}");
    };
    let t = Instant::now();
    check(
        "reserve",
        t,
        b.reserve(ReserveParams::new(&q, 10, lease))
            .await
            .map(|_| ()),
    );
    let t = Instant::now();
    let r = b.renew(leases, lease).await.map(|_| ());
    check("renew", t, r);
    let t = Instant::now();
    let reports = leases.iter().map(|l| Finish::complete(l.clone())).collect();
    let r = b.finish(reports).await.map(|_| ());
    check("finish", t, r);
    let t = Instant::now();
    check("recover_expired", t, b.recover_expired().await.map(|_| ()));
    let t = Instant::now();
    let r = b
        .enqueue(NewTask::new("late", Vec::new()))
        .await
        .map(|_| ());
    check("enqueue", t, r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (Debian package nats-server)"
)]
async fn calls_return_in_time_against_a_silent_or_dead_server() {
    let mut server = TempNats::start();
    let b = connect(&server, "bounds").await;
    // A private server: the shared one must never be stopped.
    b.enqueue_many((0..4).map(|i| NewTask::new("h", vec![i])).collect())
        .await
        .expect("enqueue");
    let held = b
        .reserve(ReserveParams::new(&queue(), 4, Duration::from_secs(60)))
        .await
        .expect("reserve");
    let leases: Vec<Lease> = held.iter().map(|r| r.lease.clone()).collect();

    // Silent: one request's bound (1 s), with room for a loaded machine.
    let pid = server_pid(&server.url());
    signal(pid, "STOP");
    // (An enqueue's create is two requests when the first fails.)
    every_call_returns_within(&b, &leases[..2], Duration::from_millis(2500), "silent").await;
    signal(pid, "CONT");
    // Answering again: the same connection works.
    let deadline = Instant::now() + Duration::from_secs(10);
    while b
        .reserve(ReserveParams::new(&queue(), 1, Duration::from_secs(60)))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "no answer after SIGCONT");
    }

    // Dead: the connection is lost, so calls end without waiting for it.
    // (What a restart then brings back is the other tests' business.)
    server.kill();
    every_call_returns_within(&b, &leases[2..], Duration::from_millis(1500), "dead").await;
}
