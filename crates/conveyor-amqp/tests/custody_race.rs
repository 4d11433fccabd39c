//! Custody moves against reports, made deterministic with the backend's
//! pause points (`test-hooks`) instead of sleeps: a report that arrives while
//! a renewal rolls the task's custody generation (or while the delivery
//! moves into custody) waits for it and settles what it left, and a renewal
//! that arrives during a report finds the task settled. Every case ends with
//! the result stored and no copy of the task left anywhere — and at no point
//! is the task left with no copy while unsettled. Also: a delivery moves
//! into custody `hold` after it was taken, with no renewal needed; and a
//! report cut off by a dropped connection fails transiently and keeps its
//! claim, so the retry applies it.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use conveyor_amqp::{AmqpBackend, AmqpOptions, Hook, Point};
use conveyor_core::{Backend, Error, Finish, FinishAction, NewTask, Reserved, TaskState};
use tokio::sync::{mpsc, oneshot};

const HOLD: Duration = Duration::from_secs(1);
/// How late after `hold` the move to custody may be (docs/amqp.md).
const SLACK: Duration = Duration::from_secs(1);
/// A point that never comes fails the test after this (it does not
/// synchronise anything).
const NEVER: Duration = Duration::from_secs(30);
/// The lease `reserve_n` takes (its custody copies' TTL): far longer than
/// each test, so no copy expires on its own while one runs.
const LEASE: Duration = Duration::from_secs(30);
const RESULT: &[u8] = b"{\"answer\":42}";

/// The pause points a test sees: every point reached, in order, with the
/// arrivals it asked to hold waiting until it releases them.
struct Points {
    seen: tokio::sync::Mutex<mpsc::UnboundedReceiver<Point>>,
    gates: Arc<Mutex<Gates>>,
}

#[derive(Default)]
struct Gates {
    /// One entry per arrival still to hold.
    hold: Vec<Point>,
    /// Arrivals held, oldest first.
    held: Vec<(Point, oneshot::Sender<()>)>,
}

impl Points {
    fn install(b: &AmqpBackend) -> Points {
        let (tx, rx) = mpsc::unbounded_channel();
        let gates = Arc::new(Mutex::new(Gates::default()));
        let shared = gates.clone();
        let hook: Hook = Arc::new(move |p: Point| {
            let mut g = shared.lock().expect("the gates");
            let wait = g.hold.iter().position(|h| *h == p).map(|i| {
                g.hold.remove(i);
                let (go, wait) = oneshot::channel();
                g.held.push((p, go));
                wait
            });
            drop(g);
            let _ = tx.send(p);
            Box::pin(async move {
                if let Some(wait) = wait {
                    let _ = wait.await;
                }
            })
        });
        assert!(b.set_hook(hook));
        Points {
            seen: tokio::sync::Mutex::new(rx),
            gates,
        }
    }

    /// Holds the next arrival at `p` until released.
    fn hold(&self, p: Point) {
        self.gates.lock().expect("the gates").hold.push(p);
    }

    /// Lets the oldest arrival held at `p` go on; false when none waits.
    fn release(&self, p: Point) -> bool {
        let mut g = self.gates.lock().expect("the gates");
        match g.held.iter().position(|(h, _)| *h == p) {
            Some(i) => {
                let (_, go) = g.held.remove(i);
                let _ = go.send(());
                true
            }
            None => false,
        }
    }

    /// Waits for the next arrival at one of `wanted` (others pass by).
    async fn next_of(&self, wanted: &[Point]) -> Point {
        let mut seen = self.seen.lock().await;
        loop {
            match tokio::time::timeout(NEVER, seen.recv()).await {
                Ok(Some(p)) if wanted.contains(&p) => return p,
                Ok(Some(_)) => {}
                Ok(None) => panic!("the hook is gone"),
                Err(_) => panic!("none of {wanted:?} was reached within {NEVER:?}"),
            }
        }
    }
}

fn copied(r: &Reserved, generation: u64) -> Point {
    Point::Copied {
        task: r.lease.id,
        generation,
    }
}

fn contended(r: &Reserved) -> Point {
    Point::Contended { task: r.lease.id }
}

/// A backend with `hold=1s` and a result store, its pause points, and one
/// task reserved.
async fn one_task() -> (AmqpBackend, Points, Reserved) {
    let b = backend_keeping(AmqpOptions::default().hold(HOLD)).await;
    let points = Points::install(&b);
    let id = b
        .enqueue(NewTask::new("long", b"{}".to_vec()))
        .await
        .expect("enqueue")
        .id;
    let got = reserve_n(&b, 1, NEVER).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].lease.id, id);
    let r = got.into_iter().next().expect("one task");
    (b, points, r)
}

/// [`one_task`], moved into custody generation 1 (at `hold`, by itself).
async fn one_task_in_custody() -> (AmqpBackend, Points, Reserved) {
    let (b, points, r) = one_task().await;
    points
        .next_of(&[Point::InCustody { task: r.lease.id }])
        .await;
    assert_eq!(copies(&b, &r, 1).await, 1, "generation 1 holds the copy");
    (b, points, r)
}

/// Messages in custody generation `generation` of `r`'s claim (0 when the
/// queue is gone).
async fn copies(b: &AmqpBackend, r: &Reserved, generation: u64) -> u32 {
    let name = format!(
        "{}.custody.{}.{}.{generation}",
        b.prefix(),
        r.lease.id.0,
        r.lease.token
    );
    let conn = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
        .await
        .expect("connect to count");
    let channel = conn.create_channel().await.expect("channel");
    let declared = channel
        .queue_declare(
            name.as_str().into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await;
    let n = match declared {
        Ok(q) => q.message_count(),
        Err(e) if e.to_string().contains("NOT_FOUND") => 0,
        Err(e) => panic!("queue.declare {name}: {e}"),
    };
    let _ = conn.close(200, "".into()).await;
    n
}

/// Every copy of `r` in its custody generations up to `upto`.
async fn all_copies(b: &AmqpBackend, r: &Reserved, upto: u64) -> u32 {
    let mut n = 0;
    for g in 1..=upto {
        n += copies(b, r, g).await;
    }
    n
}

fn complete(r: &Reserved) -> Finish {
    Finish::new(
        r.lease.clone(),
        FinishAction::Complete {
            result: Some(RESULT.to_vec()),
        },
    )
}

async fn report(b: &AmqpBackend, f: Finish) -> Result<(), Error> {
    b.finish(vec![f])
        .await
        .expect("finish")
        .pop()
        .expect("one result")
}

async fn renew(b: &AmqpBackend, r: &Reserved) -> bool {
    b.renew(std::slice::from_ref(&r.lease), LEASE)
        .await
        .expect("renew")[0]
}

/// The report was applied and nothing of the task is left: its record is
/// completed with the result, no custody generation up to `upto` holds a
/// copy, its work and dead queues are empty, and its claim is gone.
async fn settled_and_gone(b: &AmqpBackend, r: &Reserved, upto: u64) {
    let record = b
        .result_store()
        .expect("a result store")
        .get(r.lease.id)
        .await
        .expect("read the record")
        .expect("a record");
    assert_eq!(record.state, TaskState::Completed);
    assert_eq!(record.result.as_deref(), Some(RESULT));
    assert_eq!(all_copies(b, r, upto).await, 0, "no custody copy is left");
    assert_eq!(b.depth("default").await.expect("depth"), (0, 0));
    assert!(!renew(b, r).await, "the settled claim is not held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_during_a_renewal_settles_the_generation_the_renewal_made() {
    let (b, points, r) = one_task_in_custody().await;
    // Hold the renewal once it wrote generation 2 and before it deletes 1;
    // and the report too, should it get that far before the renewal ends.
    points.hold(copied(&r, 2));
    points.hold(copied(&r, 2));
    let renewing = tokio::spawn({
        let (b, r) = (b.clone(), r.clone());
        async move { renew(&b, &r).await }
    });
    points.next_of(&[copied(&r, 2)]).await;
    assert_eq!(all_copies(&b, &r, 2).await, 2, "mid-renewal: both copies");
    let reporting = tokio::spawn({
        let (b, r) = (b.clone(), r.clone());
        async move { report(&b, complete(&r)).await }
    });
    // The report either waits for the renewal or (the race) rolls the same
    // generation beside it.
    let met = points.next_of(&[contended(&r), copied(&r, 2)]).await;
    assert!(points.release(copied(&r, 2)), "the renewal was held");
    assert!(renewing.await.unwrap(), "the renewal kept the claim");
    points.release(copied(&r, 2));
    let reported = reporting.await.unwrap();
    assert!(reported.is_ok(), "the report is applied: {reported:?}");
    assert_eq!(met, contended(&r), "the report waited for the renewal");
    settled_and_gone(&b, &r, 4).await;
    cleanup(&b, &["default"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_during_a_report_finds_the_task_settled() {
    let (b, points, r) = one_task_in_custody().await;
    // Hold the report once its own renewal wrote generation 2.
    points.hold(copied(&r, 2));
    let reporting = tokio::spawn({
        let (b, r) = (b.clone(), r.clone());
        async move { report(&b, complete(&r)).await }
    });
    points.next_of(&[copied(&r, 2)]).await;
    assert!(all_copies(&b, &r, 2).await >= 1, "never no copy");
    let renewing = tokio::spawn({
        let (b, r) = (b.clone(), r.clone());
        async move { renew(&b, &r).await }
    });
    points.next_of(&[contended(&r)]).await;
    assert!(points.release(copied(&r, 2)));
    let reported = reporting.await.unwrap();
    assert!(reported.is_ok(), "the report is applied: {reported:?}");
    assert!(
        !renewing.await.unwrap(),
        "the renewal finds the task settled"
    );
    settled_and_gone(&b, &r, 3).await;
    cleanup(&b, &["default"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_during_the_move_to_custody_settles_from_custody() {
    let (b, points, r) = one_task().await;
    // Hold the move once the copy and the ack are sent, before the commit.
    points.hold(copied(&r, 1));
    points.next_of(&[copied(&r, 1)]).await;
    let reporting = tokio::spawn({
        let (b, r) = (b.clone(), r.clone());
        async move { report(&b, complete(&r)).await }
    });
    points.next_of(&[contended(&r)]).await;
    assert!(points.release(copied(&r, 1)));
    let reported = reporting.await.unwrap();
    assert!(reported.is_ok(), "the report is applied: {reported:?}");
    settled_and_gone(&b, &r, 3).await;
    cleanup(&b, &["default"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_moves_to_custody_at_hold_without_a_renewal() {
    let b = backend_keeping(AmqpOptions::default().hold(HOLD)).await;
    let points = Points::install(&b);
    b.enqueue(NewTask::new("long", b"{}".to_vec()))
        .await
        .unwrap();
    let asked = Instant::now();
    let r = reserve_n(&b, 1, NEVER).await.pop().expect("a task");
    let taken = Instant::now();
    // No renewal at all (a worker renews every third of its lease: 10 s).
    let moved = tokio::time::timeout(
        HOLD + SLACK,
        points.next_of(&[Point::InCustody { task: r.lease.id }]),
    )
    .await;
    let after = taken.elapsed();
    assert!(
        moved.is_ok(),
        "in custody by hold + {SLACK:?} (waited {after:?})"
    );
    let held = asked.elapsed();
    assert!(held >= HOLD, "held for hold first ({held:?})");
    assert_eq!(copies(&b, &r, 1).await, 1, "generation 1 holds the copy");
    assert_eq!(b.depth("default").await.unwrap(), (0, 0));
    assert!(renew(&b, &r).await, "the claim is the custody copy now");
    report(&b, complete(&r)).await.unwrap();
    settled_and_gone(&b, &r, 3).await;
    cleanup(&b, &["default"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_cut_off_by_a_dropped_connection_stays_held_for_its_retry() {
    let (b, points, r) = one_task_in_custody().await;
    // Hold the report once its renewal wrote generation 2, and drop the
    // connection under it.
    points.hold(copied(&r, 2));
    let reporting = tokio::spawn({
        let (b, r) = (b.clone(), r.clone());
        async move { report(&b, complete(&r)).await }
    });
    points.next_of(&[copied(&r, 2)]).await;
    b.close().await;
    assert!(points.release(copied(&r, 2)));
    let e = reporting
        .await
        .unwrap()
        .expect_err("the connection was gone");
    assert!(
        e.is_transient(),
        "a dropped connection is transient, not a lost claim: {e:?}"
    );
    assert!(all_copies(&b, &r, 2).await >= 1, "the task keeps its copy");
    // Tried again (the worker retries transient errors), it applies once.
    report(&b, complete(&r))
        .await
        .expect("the retry is applied");
    settled_and_gone(&b, &r, 4).await;
    cleanup(&b, &["default"]).await;
}
