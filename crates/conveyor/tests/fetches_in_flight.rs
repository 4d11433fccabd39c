//! A source that lets the runner have two fetches out at once: slots freed
//! while one fetch is out are asked for by a second, never more than the
//! slots in all, and an answer's tasks wait for those of fetches sent
//! before it. A source that splits its fetches is asked for even shares of
//! the slots, and beside a fetch out only once a full share is free.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conveyor::source::{
    Delivery, Retries, Routes, Runner, RunnerHandle, RunnerReport, Settlement, Source,
};
use conveyor::{async_trait, Error, Handler, TaskError, TaskId};
use parking_lot::Mutex;
use tokio::sync::{Notify, Semaphore};

/// Fetch `k` (from 0) answers at most two tasks, ids `100k` and `100k + 1`;
/// every fetch after the first waits for its gate.
struct Gated {
    /// What `Source::fetches_split` answers.
    split: bool,
    calls: AtomicUsize,
    out: AtomicUsize,
    most_out: AtomicUsize,
    gates: Vec<Notify>,
    answered: Vec<Notify>,
    /// `max` of each fetch, in call order.
    asks: Mutex<Vec<usize>>,
    settled: Mutex<Vec<u64>>,
    more: Notify,
}

impl Gated {
    fn new(fetches: usize, split: bool) -> Self {
        Self {
            split,
            calls: AtomicUsize::new(0),
            out: AtomicUsize::new(0),
            most_out: AtomicUsize::new(0),
            gates: (0..fetches).map(|_| Notify::new()).collect(),
            answered: (0..fetches).map(|_| Notify::new()).collect(),
            asks: Mutex::new(Vec::new()),
            settled: Mutex::new(Vec::new()),
            more: Notify::new(),
        }
    }
}

struct Src(Arc<Gated>);

#[async_trait]
impl Source for Src {
    type Payload = Vec<u8>;
    type Receipt = u64;

    fn retries(&self) -> Retries {
        Retries::BySource
    }

    fn fetches_in_flight(&self) -> usize {
        2
    }

    fn fetches_split(&self) -> bool {
        self.0.split
    }

    async fn fetch(&self, max: usize) -> Result<Vec<Delivery<Vec<u8>, u64>>, Error> {
        let g = &self.0;
        let k = g.calls.fetch_add(1, Ordering::SeqCst);
        g.asks.lock().push(max);
        let out = g.out.fetch_add(1, Ordering::SeqCst) + 1;
        g.most_out.fetch_max(out, Ordering::SeqCst);
        g.more.notify_waiters();
        if k >= g.gates.len() {
            // Past the script: nothing more to hand out.
            g.out.fetch_sub(1, Ordering::SeqCst);
            return Ok(Vec::new());
        }
        if k > 0 {
            g.gates[k].notified().await;
        }
        g.out.fetch_sub(1, Ordering::SeqCst);
        let n = max.min(2) as u64;
        let tasks = (0..n)
            .map(|i| {
                let id = 100 * k as u64 + i;
                Delivery {
                    id: TaskId(id),
                    handler: "note".into(),
                    payload: id.to_string().into_bytes(),
                    queue: Arc::from("q"),
                    attempt: 1,
                    max_attempts: Some(1),
                    timeout: None,
                    receipt: id,
                    ready_at: None,
                    trace: None,
                }
            })
            .collect();
        g.answered[k].notify_one();
        Ok(tasks)
    }

    async fn wait_for_work(&self, timeout: Duration) -> bool {
        tokio::time::sleep(timeout).await;
        true
    }

    async fn settle(&self, batch: Vec<Settlement<u64>>) -> Result<Vec<Result<(), Error>>, Error> {
        let n = batch.len();
        self.0
            .settled
            .lock()
            .extend(batch.iter().map(|s| s.receipt));
        self.0.more.notify_waiters();
        Ok((0..n).map(|_| Ok(())).collect())
    }
}

/// A runner of `slots` slots, started on a source of three scripted fetches
/// (split or not), whose handler notes each task it starts in `started`;
/// fetch 0's tasks (ids below 100) run until `first_go` lets them end.
struct Started {
    g: Arc<Gated>,
    started: Arc<Mutex<Vec<u64>>>,
    first_go: Arc<Semaphore>,
    handle: RunnerHandle,
    run: tokio::task::JoinHandle<Result<RunnerReport, Error>>,
}

fn start(split: bool, slots: usize) -> Started {
    let g = Arc::new(Gated::new(3, split));
    let started = Arc::new(Mutex::new(Vec::new()));
    let first_go = Arc::new(Semaphore::new(0));
    let (s, go) = (started.clone(), first_go.clone());
    let note = Handler::io("note", move |id: String, _ctx| {
        let (s, go) = (s.clone(), go.clone());
        async move {
            let id = id.parse::<u64>().unwrap_or(u64::MAX);
            s.lock().push(id);
            if id < 100 {
                let _ = go.acquire().await.map(|p| p.forget());
            }
            Ok::<_, TaskError>(())
        }
    });
    let mut routes = Routes::new();
    routes.add(
        note,
        |p: &Vec<u8>| String::from_utf8(p.clone()).map_err(|e| e.to_string()),
        |_: &()| Ok(None),
    );
    let runner = Runner::new(Src(g.clone()), routes)
        .slots(slots)
        .poll_interval(Duration::from_millis(10));
    let handle = runner.handle();
    let run = tokio::spawn(runner.run_until(std::future::pending()));
    Started {
        g,
        started,
        first_go,
        handle,
        run,
    }
}

/// Waits until every task of `want` has settled, checks that those and no
/// others started, with never more than two fetches out, and stops the
/// runner, which drains.
async fn end(s: Started, want: &[u64]) {
    until(&s.g, || s.g.settled.lock().len() == want.len()).await;
    let mut all = s.started.lock().clone();
    all.sort_unstable();
    assert_eq!(all, want);
    assert_eq!(s.g.most_out.load(Ordering::SeqCst), 2);
    s.handle.stop();
    let report = s
        .run
        .await
        .expect("the runner task ended")
        .expect("the runner ran");
    assert!(report.drained);
    assert_eq!(report.stats.completed, want.len() as u64);
}

/// Waits until `cond` holds, re-checking whenever the source moves.
async fn until(g: &Gated, cond: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let moved = g.more.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if cond() {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), moved).await;
        }
    })
    .await
    .expect("the condition came true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_freed_while_a_fetch_is_out_are_asked_for_beside_it() {
    let s = start(false, 4);
    let (g, started, first_go) = (s.g.clone(), s.started.clone(), s.first_go.clone());

    // Fetch 0 asks for all 4 slots and gets 2 tasks, which run; fetch 1
    // asks for the 2 slots left and waits.
    until(&g, || {
        g.out.load(Ordering::SeqCst) == 1 && started.lock().len() == 2
    })
    .await;
    assert_eq!(*g.asks.lock(), vec![4, 2]);
    // Once fetch 0's tasks end, the slots they free are asked for by fetch
    // 2, beside fetch 1 (one or both: it goes as soon as one is free).
    first_go.add_permits(2);
    until(&g, || g.out.load(Ordering::SeqCst) == 2).await;
    assert_eq!(g.calls.load(Ordering::SeqCst), 3);
    let third = g.asks.lock()[2];
    assert!(
        third == 1 || third == 2,
        "never more than the slots: {third}"
    );

    // Fetch 2 answers first; its tasks wait for fetch 1's.
    g.gates[2].notify_one();
    g.answered[2].notified().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut so_far = started.lock().clone();
    so_far.sort_unstable();
    assert_eq!(so_far, [0, 1], "fetch 2's tasks wait for fetch 1");
    g.gates[1].notify_one();
    let mut want = vec![0, 1, 100, 101, 200, 201];
    want.truncate(4 + third);
    end(s, &want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_source_is_asked_for_shares_and_beside_a_fetch_only_for_a_full_one() {
    let s = start(true, 4);
    let (g, started, first_go) = (s.g.clone(), s.started.clone(), s.first_go.clone());

    // 4 slots, two fetches out: fetch 0 asks for a share of 2 (not all 4)
    // and its 2 tasks run; fetch 1 asks for the other share and waits.
    until(&g, || {
        g.out.load(Ordering::SeqCst) == 1 && started.lock().len() == 2
    })
    .await;
    assert_eq!(*g.asks.lock(), vec![2, 2]);

    // One slot frees beside fetch 1: not a share, so nothing is asked. The
    // settlement is stored after its slot was given back; the fetcher has
    // seen that slot free long before the pause ends.
    first_go.add_permits(1);
    until(&g, || g.settled.lock().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        g.calls.load(Ordering::SeqCst),
        2,
        "one free slot beside a fetch out is not asked for"
    );

    // The second frees a full share: fetch 2 asks for it, beside fetch 1.
    first_go.add_permits(1);
    until(&g, || g.out.load(Ordering::SeqCst) == 2).await;
    assert_eq!(*g.asks.lock(), vec![2, 2, 2]);

    g.gates[2].notify_one();
    g.gates[1].notify_one();
    end(s, &[0, 1, 100, 101, 200, 201]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_odd_number_of_slots_still_keeps_two_split_fetches_out() {
    let s = start(true, 5);
    let (g, started) = (s.g.clone(), s.started.clone());
    // 5 slots: fetch 0 asks for a share of 3 (and gets 2 tasks, which run);
    // fetch 1 goes out beside it for the 2 slots left, the share rounded
    // down, and waits. The slot fetch 0 did not fill is 1 free slot: not
    // asked for beside fetch 1.
    until(&g, || {
        g.out.load(Ordering::SeqCst) == 1 && started.lock().len() == 2
    })
    .await;
    assert_eq!(*g.asks.lock(), vec![3, 2]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(g.calls.load(Ordering::SeqCst), 2);

    // Fetch 0's tasks end: fetch 2 goes out beside fetch 1 once 2 slots
    // are free (3 when both had ended by the time it was sent).
    s.first_go.add_permits(2);
    until(&g, || g.out.load(Ordering::SeqCst) == 2).await;
    let third = g.asks.lock()[2];
    assert!(
        third == 2 || third == 3,
        "a share, rounded down or up: {third}"
    );
    g.gates[1].notify_one();
    g.gates[2].notify_one();
    end(s, &[0, 1, 100, 101, 200, 201]).await;
}
