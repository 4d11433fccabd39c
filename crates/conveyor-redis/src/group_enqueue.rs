//! Group enqueue: concurrent `enqueue_many` calls share one script call.
//!
//! Every call has a fixed cost — a round trip, and on the server the call
//! itself and (sent as a script) the whole prelude of shared Lua functions —
//! so a call that enqueues one task costs several times what one task adds to
//! a batch. Callers hand their tasks to the
//! backend's [`GROUPERS`] tasks (the *groupers*); a free grouper sends
//! whatever has arrived while the calls out were under way — up to
//! [`MAX_GROUP`] tasks and [`MAX_GROUP_BYTES`] of params — as one `enqueue` call and gives each caller its own
//! slice of the reply. A caller that finds
//! no other call under way calls the script itself (no hand-off); 32 callers
//! share round trips and preludes.
//!
//! The script applies each caller's request on its own, as if it came
//! alone: every task was validated before the call, so a request fails only
//! when the store itself is damaged (a key of the wrong type, written by
//! something else), and then only that caller gets the error — the others in
//! its group are not touched. Redis does not roll a script back, so the
//! failed request's tasks before the damaged key may be stored; their ids
//! are never handed out again (they are taken before anything is written).
//! When the call itself fails (connection lost), every caller in the group
//! gets the error. A caller that stops waiting (its future dropped) does not
//! take its tasks back: they are enqueued, as when a direct call is dropped
//! after it was sent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use conveyor_core::{BackendErrorKind, Clock, Enqueued, Error, NewTask};
use redis::Value;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::calls::{Call, ScriptMode};
use crate::reply::{self, bad, redis_error};
use crate::scripts::Op;

/// Most tasks one grouped call carries; a single request larger than this
/// goes alone.
pub(crate) const MAX_GROUP: usize = 1_000;

/// Most bytes of params one grouped call carries: callers' large values are
/// not joined into one call past the server's query buffer (1 GiB by
/// default); a single request larger than this goes alone.
pub(crate) const MAX_GROUP_BYTES: usize = 64 << 20;

/// The bytes of params of `tasks`.
fn bytes(tasks: &[NewTask]) -> usize {
    tasks.iter().map(|t| t.payload.len()).sum()
}

/// Groupers per backend: calls out at once on the shared connection, so the
/// server always has a group's script to run while other groups' round
/// trips, and the callers answered last, are under way. Measured with 32
/// single-task callers (`enqueue-rounds`, alternated against apalis-redis):
/// two groupers left the server idle between groups (0.81–0.88× apalis),
/// eight kept it busy (0.92–0.98×) at slightly smaller groups; more than
/// eight made the groups smaller without more throughput.
const GROUPERS: usize = 8;

/// One caller's tasks and where its ids go.
struct Request {
    tasks: Vec<NewTask>,
    reply: oneshot::Sender<Result<Vec<Enqueued>, Error>>,
}

/// The callers' side of the grouper. Dropping it (with the backend) ends the
/// groupers once they have sent what they hold.
pub(crate) struct GroupEnqueue {
    tx: mpsc::UnboundedSender<Request>,
    /// Calls under way, direct or grouped: a caller that finds none calls
    /// the script itself, without the hand-off to a grouper.
    outstanding: Arc<AtomicUsize>,
    link: Link,
}

/// Where enqueue calls go and what they carry besides the tasks.
#[derive(Clone)]
pub(crate) struct Link {
    pub(crate) conn: crate::primary::Primary,
    pub(crate) prefix: String,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) mode: ScriptMode,
}

impl GroupEnqueue {
    /// Starts the groupers on the current Tokio runtime.
    pub(crate) fn start(link: Link) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..GROUPERS {
            tokio::spawn(run(rx.clone(), link.clone()));
        }
        Self {
            tx,
            outstanding: Arc::default(),
            link,
        }
    }

    /// Enqueues `tasks` (already validated, not empty): at once when no other
    /// call is under way, else in the next group.
    pub(crate) async fn enqueue(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, Error> {
        let under_way = UnderWay::enter(&self.outstanding);
        if under_way.alone {
            let mut link = self.link.clone();
            let group: [&[NewTask]; 1] = [&tasks];
            let mut answers = call(&mut link, &group).await?;
            return answers
                .pop()
                .unwrap_or_else(|| Err(bad("enqueue: no reply for the call")));
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request { tasks, reply })
            .map_err(|_| Error::backend_other("redis enqueue: the backend is shutting down"))?;
        rx.await.map_err(|_| {
            Error::backend_other("redis enqueue: the grouper ended before it replied")
        })?
    }
}

/// One call counted as under way until it is answered or dropped.
struct UnderWay<'a> {
    count: &'a AtomicUsize,
    /// No other call was under way when this one began.
    alone: bool,
}

impl<'a> UnderWay<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        let alone = count.fetch_add(1, Ordering::AcqRel) == 0;
        Self { count, alone }
    }
}

impl Drop for UnderWay<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The grouper: one call at a time, each carrying every request that came
/// in meanwhile (up to [`MAX_GROUP`] tasks).
///
/// A request that did not fit the last group is carried into the next one
/// and sent without waiting for the receiver: another grouper may hold it
/// while it waits for new requests, and none may come while every caller
/// waits for its answer (one of them the carried request's).
async fn run(rx: Arc<Mutex<mpsc::UnboundedReceiver<Request>>>, mut link: Link) {
    let mut carried: Option<Request> = None;
    loop {
        let (first, mut rx) = match carried.take() {
            Some(r) => (r, rx.try_lock().ok()),
            None => {
                let mut rx = rx.lock().await;
                match rx.recv().await {
                    Some(r) => (r, Some(rx)),
                    None => return,
                }
            }
        };
        let mut total = first.tasks.len();
        let mut size = bytes(&first.tasks);
        let mut group = vec![first];
        while let Some(rx) = rx.as_mut() {
            if total >= MAX_GROUP || size >= MAX_GROUP_BYTES {
                break;
            }
            match rx.try_recv() {
                Ok(r)
                    if total + r.tasks.len() > MAX_GROUP
                        || size + bytes(&r.tasks) > MAX_GROUP_BYTES =>
                {
                    carried = Some(r);
                    break;
                }
                Ok(r) => {
                    total += r.tasks.len();
                    size += bytes(&r.tasks);
                    group.push(r);
                }
                Err(_) => break,
            }
        }
        drop(rx);
        send(&mut link, group).await;
    }
}

/// Sends one group as one `enqueue` call and answers each of its callers.
async fn send(link: &mut Link, group: Vec<Request>) {
    let tasks: Vec<&[NewTask]> = group.iter().map(|r| r.tasks.as_slice()).collect();
    match call(link, &tasks).await {
        Ok(answers) => {
            for (r, answer) in group.into_iter().zip(answers) {
                let _ = r.reply.send(answer);
            }
        }
        Err(e) => {
            for r in group {
                let _ = r.reply.send(Err(copy(&e)));
            }
        }
    }
}

/// One `enqueue` call for `group`'s requests: the call's own failure, or
/// each request's answer in order.
async fn call(
    link: &mut Link,
    group: &[&[NewTask]],
) -> Result<Vec<Result<Vec<Enqueued>, Error>>, Error> {
    let now = link.clock.now();
    let mut inv = Call::new(Op::Enqueue, link.mode, &link.prefix);
    inv.arg(now.as_millis()).arg(group.len());
    for tasks in group {
        crate::task_forms::push(&mut inv, tasks, now);
    }
    let value = inv
        .run(&mut link.conn)
        .await
        .map_err(|e| redis_error("enqueue", e))?;
    let replies = reply::array(value, "enqueue")?;
    if replies.len() != group.len() {
        return Err(bad(format!(
            "enqueue: {} replies for {} calls",
            replies.len(),
            group.len()
        )));
    }
    Ok(replies
        .into_iter()
        .zip(group)
        .map(|(answer, tasks)| answer_of(answer, tasks.len()))
        .collect())
}

/// One request's reply: `[1, first id, position, id per duplicate …]` or
/// `[0, error]`.
fn answer_of(answer: Value, n: usize) -> Result<Vec<Enqueued>, Error> {
    let mut items = reply::array(answer, "enqueue")?.into_iter();
    let applied = items.next().map(|v| reply::int(v, "enqueue status"));
    match applied {
        Some(Ok(1)) => {}
        Some(Ok(0)) => {
            let why = items
                .next()
                .and_then(|v| reply::opt_bytes(v, "enqueue error").ok().flatten())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            return Err(stopped(&why));
        }
        _ => return Err(bad("enqueue: a reply without its status")),
    }
    crate::task_forms::answer(items.collect(), n)
}

/// The error of a request the store's data stopped: our own scripts'
/// refusals ("conveyor: …") are bad data; anything else (a key of the wrong
/// type) is said as Redis said it.
fn stopped(why: &str) -> Error {
    if let Some(at) = why.find("conveyor: ") {
        let what = why[at + "conveyor: ".len()..].trim_end();
        return Error::backend(BackendErrorKind::Data, format!("redis enqueue: {what}"));
    }
    Error::backend_other(format!("redis enqueue: {why}"))
}

/// The failure for one caller of the group: errors are not `Clone`, so each
/// gets its kind and its text (the driver's error included).
fn copy(e: &Error) -> Error {
    match e {
        Error::Backend(b) => Error::backend(b.kind(), e.to_string()),
        other => Error::backend_other(other.to_string()),
    }
}
