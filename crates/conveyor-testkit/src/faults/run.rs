//! One fault case's run: a worker on tasks of its own, what it ran and when,
//! and the promises every case is held to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use conveyor::durable::{WorkerProbe, WorkerReport, WorkerStopper};
use conveyor::{Handler, TaskError, Worker};
use conveyor_core::workflow::{WorkflowId, WorkflowSpec, WorkflowState};
use conveyor_core::{Backend, Error, NewTask, TaskId, TaskState};
use tokio::task::JoinHandle;

use super::{FaultTarget, RESUME_WITHIN, STOP_SLACK};

/// The handler every case runs.
pub(crate) const HANDLER: &str = "fault-work";

/// The handler of a chord's body (`Run::start_chord`): it notes the
/// header results it was given.
pub(crate) const BODY_HANDLER: &str = "fault-body";

/// A handler only the newer workers of a rolling deploy have.
pub(crate) const NEW_HANDLER: &str = "fault-new";

/// Tasks each case enqueues.
pub(crate) const TASKS: u64 = 400;

/// How long each task runs.
const TASK_TIME: Duration = Duration::from_millis(15);

/// The worker's slots.
pub(crate) const SLOTS: usize = 8;

/// The worker's grace on stop.
pub(crate) const GRACE: Duration = Duration::from_secs(3);

/// How long the whole run may take before the case calls it wedged.
const WEDGED_AFTER: Duration = Duration::from_secs(90);

/// What the handler saw.
#[derive(Default)]
struct Seen {
    /// When each task's runs started.
    runs: HashMap<u64, Vec<Instant>>,
    /// When each run started.
    starts: Vec<Instant>,
    /// The header results each run of a chord's body was given.
    bodies: Vec<Vec<u64>>,
}

/// A worker running a case's tasks.
pub(crate) struct Run {
    pub(crate) target: FaultTarget,
    pub(crate) case: &'static str,
    /// A connection of the test's own, straight to the server (no proxy):
    /// it enqueues and reads the tasks, and is never the worker's.
    observer: Arc<dyn Backend>,
    seen: Arc<Mutex<Seen>>,
    ids: Vec<TaskId>,
    /// The chord the tasks are the header of (`Run::start_chord`).
    chord: Option<WorkflowId>,
    /// The running worker's probe (it holds the worker's connection: gone
    /// once the worker stops, as the process of a worker that exits).
    probe: Option<WorkerProbe>,
    stopper: WorkerStopper,
    worker: Option<Running>,
    /// Tasks in flight when the fault began, and when it began.
    in_flight_at_fault: Option<usize>,
    /// The claims seen as the current fault began.
    fault_claims: usize,
    fault_at: Option<Instant>,
    /// When the server or network came back.
    recovered_at: Option<Instant>,
    /// How long after recovery the first task started.
    resumed_after: Option<Duration>,
    /// How soon after recovery work must resume ([`RESUME_WITHIN`] unless
    /// the case says otherwise: [`Run::resume_within`]).
    resume_within: Duration,
    /// How long the stop took.
    stopped_in: Option<Duration>,
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Opens `url` with the target's scheme (and its record keeper's, through
/// the registry that opens a backend with the store its URL names).
pub(super) async fn open(target: &FaultTarget, url: &str) -> Arc<dyn Backend> {
    let mut schemes = conveyor::durable::Schemes::empty().with(target.scheme);
    if let Some(keeper) = target.keeper {
        schemes.register(keeper);
    }
    schemes
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("{}: open {url}: {}", target.name, e.chain()))
}

type Running = JoinHandle<Result<WorkerReport, Error>>;

/// Starts a worker on `backend` whose handler notes what it runs in `seen`.
fn spawn_worker(
    target: &FaultTarget,
    backend: Arc<dyn Backend>,
    seen: Arc<Mutex<Seen>>,
    newer: bool,
) -> (WorkerProbe, WorkerStopper, Running) {
    let work = |name: &'static str| {
        let seen = seen.clone();
        Handler::io(name, move |n: u64, _ctx| {
            let s = seen.clone();
            async move {
                {
                    let mut seen = lock(&s);
                    let now = Instant::now();
                    seen.runs.entry(n).or_default().push(now);
                    seen.starts.push(now);
                }
                tokio::time::sleep(TASK_TIME).await;
                Ok::<_, TaskError>(n)
            }
        })
    };
    let body = {
        let seen = seen.clone();
        Handler::io(BODY_HANDLER, move |args: (Vec<u64>,), _ctx| {
            let s = seen.clone();
            async move {
                let total = args.0.iter().sum::<u64>();
                lock(&s).bodies.push(args.0);
                Ok::<_, TaskError>(total)
            }
        })
    };
    let mut builder = Worker::builder(backend)
        .handler(work(HANDLER))
        .handler(body);
    if newer {
        builder = builder.handler(work(NEW_HANDLER));
    }
    let worker = builder
        .slots(SLOTS)
        .lease(target.lease)
        .grace(GRACE)
        // The poll interval and maintenance schedule are the defaults a
        // user gets: resuming is measured as users would see it.
        .build()
        .unwrap_or_else(|e| panic!("{}: worker: {e}", target.name));
    let probe = worker.probe();
    let stopper = worker.stopper();
    let running = tokio::spawn(worker.run_until(std::future::pending()));
    (probe, stopper, running)
}

impl Run {
    /// Enqueues the case's tasks through `direct` (the store's own URL) and
    /// starts a worker on them that connects with `url` (maybe through a
    /// proxy).
    pub(crate) async fn start(
        target: FaultTarget,
        case: &'static str,
        direct: &str,
        url: &str,
    ) -> Run {
        Self::start_with(target, case, direct, url, 0).await
    }

    /// [`Run::start`], with every `new_every`-th task (0: none) of the
    /// handler only newer workers have, and a worker without it.
    pub(crate) async fn start_with(
        target: FaultTarget,
        case: &'static str,
        direct: &str,
        url: &str,
        new_every: u64,
    ) -> Run {
        Self::start_tasks(target, case, direct, url, new_every, TASKS).await
    }

    /// [`Run::start_with`], with `count` tasks rather than [`TASKS`].
    pub(crate) async fn start_tasks(
        target: FaultTarget,
        case: &'static str,
        direct: &str,
        url: &str,
        new_every: u64,
        count: u64,
    ) -> Run {
        let observer = open(&target, direct).await;
        let tasks: Vec<NewTask> = (0..count)
            .map(|n| {
                let h = if new_every > 0 && n % new_every == 0 {
                    NEW_HANDLER
                } else {
                    HANDLER
                };
                NewTask::new(h, n.to_string().into_bytes()).max_attempts(100)
            })
            .collect();
        let ids = observer
            .enqueue_many(tasks)
            .await
            .unwrap_or_else(|e| panic!("{}: enqueue: {}", target.name, e.chain()))
            .into_iter()
            .map(|e| e.id)
            .collect();
        Self::begin(target, case, observer, ids, None, url).await
    }

    /// [`Run::start`] with the tasks as the header of a chord whose body
    /// sums their results (`BODY_HANDLER`).
    pub(crate) async fn start_chord(
        target: FaultTarget,
        case: &'static str,
        direct: &str,
        url: &str,
    ) -> Run {
        let observer = open(&target, direct).await;
        let header =
            (0..TASKS).map(|n| NewTask::new(HANDLER, n.to_string().into_bytes()).max_attempts(100));
        let body = NewTask::new(BODY_HANDLER, b"[]".to_vec()).max_attempts(100);
        let submitted = observer
            .submit_workflow(WorkflowSpec::chord(header, body))
            .await
            .unwrap_or_else(|e| panic!("{}: submit: {}", target.name, e.chain()));
        let ids = submitted.started.iter().map(|(_, id)| *id).collect();
        Self::begin(target, case, observer, ids, Some(submitted.id), url).await
    }

    /// Starts a worker on `url` for the tasks `ids` (the header of `chord`,
    /// if any), stored through `observer`.
    async fn begin(
        target: FaultTarget,
        case: &'static str,
        observer: Arc<dyn Backend>,
        ids: Vec<TaskId>,
        chord: Option<WorkflowId>,
        url: &str,
    ) -> Run {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let backend = open(&target, url).await;
        let (probe, stopper, worker) = spawn_worker(&target, backend, seen.clone(), false);
        Run {
            target,
            case,
            observer,
            seen,
            ids,
            chord,
            probe: Some(probe),
            stopper,
            worker: Some(worker),
            in_flight_at_fault: None,
            fault_claims: 0,
            fault_at: None,
            recovered_at: None,
            resumed_after: None,
            resume_within: RESUME_WITHIN,
            stopped_in: None,
        }
    }

    /// Waits until the chord (`Run::start_chord`) ended, and checks that it
    /// succeeded and that its body ran once, with every header's result in
    /// header order.
    pub(crate) async fn chord_done(&self) {
        let Some(id) = self.chord else {
            panic!("{} {}: no chord", self.target.name, self.case);
        };
        let deadline = Instant::now() + WEDGED_AFTER;
        let w = loop {
            let w = self
                .observer
                .workflow(id)
                .await
                .unwrap_or_else(|e| panic!("{}: read the chord: {}", self.target.name, e.chain()))
                .unwrap_or_else(|| panic!("{} {}: the chord is gone", self.target.name, self.case));
            if w.state != WorkflowState::Running {
                break w;
            }
            assert!(
                Instant::now() < deadline,
                "{} {}: the chord did not end (wedged): {:?}",
                self.target.name,
                self.case,
                w.nodes
                    .iter()
                    .filter(|n| !n.state.is_final())
                    .take(5)
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(
            w.state,
            WorkflowState::Succeeded,
            "{} {}",
            self.target.name,
            self.case
        );
        let bodies = lock(&self.seen).bodies.clone();
        assert_eq!(
            bodies.len(),
            1,
            "{} {}: the body ran {} times",
            self.target.name,
            self.case,
            bodies.len()
        );
        let every: Vec<u64> = (0..TASKS).collect();
        assert_eq!(
            bodies[0], every,
            "{} {}: the body's header results",
            self.target.name, self.case
        );
    }

    /// Starts another worker on the same tasks (the last one has stopped),
    /// on a connection of its own to `url`.
    pub(crate) async fn new_worker(&mut self, url: &str) {
        assert!(self.worker.is_none(), "the last worker still runs");
        let backend = open(&self.target, url).await;
        let (probe, stopper, worker) =
            spawn_worker(&self.target, backend, self.seen.clone(), false);
        self.probe = Some(probe);
        self.stopper = stopper;
        self.worker = Some(worker);
    }

    /// Starts a newer worker beside the running one, with the handler the
    /// first lacks too, on a connection of its own to `url`; returns its
    /// stopper and run, for the case to stop.
    pub(crate) async fn newer_worker(&self, url: &str) -> (WorkerStopper, Running) {
        let backend = open(&self.target, url).await;
        let (_, stopper, worker) = spawn_worker(&self.target, backend, self.seen.clone(), true);
        (stopper, worker)
    }

    /// Checks that every task completed on its first attempt (where the
    /// store keeps attempts): nothing was failed or spent for lack of a
    /// handler.
    pub(crate) async fn first_attempts_only(&self) {
        for id in &self.ids {
            if let Ok(Some(r)) = self.observer.get(*id).await {
                assert_eq!(
                    r.attempts, 1,
                    "{} {}: task {id} ({}) took {} attempts; its history: {:?}",
                    self.target.name, self.case, r.handler, r.attempts, r.history
                );
            }
        }
    }

    /// The running worker's counts (default once it stopped).
    fn stats(&self) -> conveyor::durable::WorkerStats {
        self.probe
            .as_ref()
            .map(WorkerProbe::stats)
            .unwrap_or_default()
    }

    /// Tasks run so far (counting reruns).
    fn runs(&self) -> usize {
        lock(&self.seen).starts.len()
    }

    /// Holds the case to resume within `within` of recovery instead of
    /// [`RESUME_WITHIN`] (a failover: [`FAILOVER_RESUME_WITHIN`]).
    ///
    /// [`FAILOVER_RESUME_WITHIN`]: super::FAILOVER_RESUME_WITHIN
    pub(crate) fn resume_within(&mut self, within: Duration) {
        self.resume_within = within;
    }

    /// Waits until `n` tasks have started (mid-run: some done, most waiting).
    pub(crate) async fn started(&self, n: usize) {
        let deadline = Instant::now() + WEDGED_AFTER;
        while self.runs() < n {
            assert!(
                Instant::now() < deadline,
                "{} {}: only {} of {n} tasks started before the fault",
                self.target.name,
                self.case,
                self.runs()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The claims the worker holds in the store now: tasks running or
    /// waiting to start, settled but not stored yet, and asked for by
    /// fetches out.
    fn claims(&self) -> usize {
        let stats = self.stats();
        stats.in_flight + stats.settling + stats.fetching
    }

    /// Notes the claims as a fault begins (a case with several faults
    /// counts each one's); [`Run::fault_applied`] looks again once it took
    /// effect.
    pub(crate) fn fault_begins(&mut self) {
        self.fault_claims = self.claims();
        self.fault_at.get_or_insert_with(Instant::now);
    }

    /// Notes the claims once the fault took effect, and counts this fault's:
    /// the more of the two looks (a reservation answered between the look
    /// before and the fault holds claims the first look missed; once the
    /// store is unreachable, no claim is added, and none is given up until
    /// it is back).
    pub(crate) fn fault_applied(&mut self) {
        let mut claims = self.fault_claims.max(self.claims());
        if self.target.prefetch {
            claims = claims.max(SLOTS);
        }
        self.in_flight_at_fault = Some(self.in_flight_at_fault.unwrap_or(0) + claims);
    }

    /// Notes that the server or network is back as of `at`, and waits for
    /// the first task started after it.
    pub(crate) async fn recovered(&mut self, at: Instant) {
        self.recovered_at = Some(at);
        let deadline = at + WEDGED_AFTER;
        loop {
            let first = lock(&self.seen).starts.iter().find(|s| **s >= at).copied();
            if let Some(first) = first {
                self.resumed_after = Some(first.duration_since(at));
                return;
            }
            // A store that heals by itself (a cluster electing a new
            // leader) may let the worker finish everything before the
            // case's check of the promotion returns: resumed at once.
            let finished_after_fault = {
                let seen = lock(&self.seen);
                let after_fault = self
                    .fault_at
                    .is_some_and(|f| seen.starts.iter().any(|s| *s >= f));
                after_fault && seen.runs.len() == self.ids.len()
            };
            if finished_after_fault {
                self.resumed_after = Some(Duration::ZERO);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} {}: no task started within {WEDGED_AFTER:?} of recovery (wedged); worker {:?}",
                self.target.name,
                self.case,
                self.stats()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits until every task ran and the store says each one completed.
    pub(crate) async fn all_done(&self) {
        let deadline = Instant::now() + WEDGED_AFTER;
        while lock(&self.seen).runs.len() < self.ids.len() {
            assert!(
                Instant::now() < deadline,
                "{} {}: {} of {} tasks ever ran (wedged or lost); worker {:?}",
                self.target.name,
                self.case,
                lock(&self.seen).runs.len(),
                self.ids.len(),
                self.stats()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut open: Vec<TaskId> = self.ids.clone();
        while !open.is_empty() {
            let mut still = Vec::new();
            for id in open {
                match self.observer.get(id).await {
                    Ok(Some(r)) if r.state == TaskState::Completed => {}
                    Ok(Some(r)) if r.state.is_finished() => panic!(
                        "{} {}: task {id} ended {:?} ({:?}): lost",
                        self.target.name, self.case, r.state, r.error
                    ),
                    Ok(None) => panic!(
                        "{} {}: task {id} is gone: lost",
                        self.target.name, self.case
                    ),
                    Ok(Some(_)) | Err(_) => still.push(id),
                }
            }
            open = still;
            if !open.is_empty() {
                assert!(
                    Instant::now() < deadline,
                    "{} {}: {} tasks ran but never completed in the store, e.g. {:?}; worker {:?}",
                    self.target.name,
                    self.case,
                    open.len(),
                    &open[..open.len().min(5)],
                    self.stats()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Tells the worker to stop and waits for it, timing the stop.
    pub(crate) async fn stop(&mut self) -> WorkerReport {
        let began = Instant::now();
        self.stopper.stop();
        let Some(worker) = self.worker.take() else {
            panic!("stopped twice");
        };
        let limit = GRACE + STOP_SLACK;
        let report = match tokio::time::timeout(limit + Duration::from_secs(30), worker).await {
            Ok(joined) => joined
                .unwrap_or_else(|e| {
                    panic!("{} {}: worker panicked: {e}", self.target.name, self.case)
                })
                .unwrap_or_else(|e| {
                    panic!("{} {}: worker: {}", self.target.name, self.case, e.chain())
                }),
            Err(_) => panic!(
                "{} {}: the worker did not stop within {:?} of being told to",
                self.target.name,
                self.case,
                limit + Duration::from_secs(30)
            ),
        };
        let took = began.elapsed();
        self.probe = None;
        self.stopped_in = Some(self.stopped_in.map_or(took, |t| t.max(took)));
        assert!(
            took <= limit,
            "{} {}: the worker took {took:?} to stop, over its grace + {STOP_SLACK:?}",
            self.target.name,
            self.case
        );
        report
    }

    /// Checks the promises, prints the case's `FAULT` line, and returns the
    /// duplicates.
    pub(crate) fn verdict(&self) -> u64 {
        let seen = lock(&self.seen);
        let dups: u64 = seen
            .runs
            .values()
            .map(|n| n.len().saturating_sub(1) as u64)
            .sum();
        let in_flight = self.in_flight_at_fault.unwrap_or(0) as u64;
        let resume = self
            .resumed_after
            .map(|d| format!("{:.2}", d.as_secs_f64()));
        let stop = self.stopped_in.map(|d| format!("{:.2}", d.as_secs_f64()));
        // From the fault to the store's recovery (a restart, a promotion).
        let back = self
            .recovered_at
            .zip(self.fault_at)
            .map(|(r, f)| format!("{:.2}", r.duration_since(f).as_secs_f64()));
        eprintln!(
            "FAULT backend={} fault={} lost=0 duplicates={dups} in_flight={in_flight} resume_s={} stop_s={} back_s={}",
            self.target.name,
            self.case,
            resume.as_deref().unwrap_or("-"),
            stop.as_deref().unwrap_or("-"),
            back.as_deref().unwrap_or("-"),
        );
        if dups > in_flight {
            // When each rerun task's runs started, from the fault on.
            let since = |t: &Instant| match self.fault_at {
                Some(f) if *t >= f => format!("+{:.2}s", t.duration_since(f).as_secs_f64()),
                Some(f) => format!("-{:.2}s", f.duration_since(*t).as_secs_f64()),
                None => "?".into(),
            };
            let reruns: Vec<String> = seen
                .runs
                .iter()
                .filter(|(_, r)| r.len() > 1)
                .map(|(n, r)| format!("{n}: {}", r.iter().map(since).collect::<Vec<_>>().join(" ")))
                .collect();
            let back = self
                .recovered_at
                .zip(self.fault_at)
                .map(|(r, f)| format!("{:.2}s", r.duration_since(f).as_secs_f64()));
            panic!(
                "{} {}: {dups} reruns, but only {in_flight} tasks were in flight at the fault \
                 (back at +{}); runs per rerun task from the fault: {}",
                self.target.name,
                self.case,
                back.as_deref().unwrap_or("?"),
                reruns.join("; ")
            );
        }
        if let Some(r) = self.resumed_after {
            let within = self.resume_within;
            assert!(
                r <= within,
                "{} {}: work resumed {r:?} after recovery, over {within:?}",
                self.target.name,
                self.case
            );
        }
        dups
    }
}
