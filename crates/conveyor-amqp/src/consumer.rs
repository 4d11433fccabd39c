//! One conveyor queue's consumer: its own channel, in transaction mode, with
//! a prefetch no larger than the worker's free slots, and a small buffer the
//! broker's pushed deliveries wait in until `reserve` takes them.
//!
//! Why a transaction: a report acknowledges its delivery and publishes what
//! follows it (a retry's copy, a dead letter, follow-up tasks) on this
//! channel, and `tx.commit` applies all of it or, when the channel died first,
//! none of it. A channel dies with its connection or when the broker closes it
//! (a consumer timeout), and every delivery tag it issued dies with it, so a
//! worker that lost its claim can settle nothing — fencing from the broker
//! itself. The `tx` lock keeps one report's frames together (another task's
//! commit never applies half of it) and keeps every synchronous method on
//! the channel one at a time, as AMQP requires.
//!
//! The prefetch is the worker's slots (`Backend::set_slots`): the broker
//! never holds more of this worker's tasks unacknowledged than it runs at
//! once, so what waits unstarted in the buffer is never more than the free
//! slots. A caller that never said its slots gets what it holds unsettled
//! plus what it asks for now. A consumer's prefetch is fixed once it starts,
//! so when a reservation asks for more (a worker whose first fetch was
//! smaller than its slots), another consumer with the difference joins the
//! same channel and buffer: nothing is cancelled, so no delivery is stranded.
//!
//! Deliveries are read from the client's streams by whoever needs them — a
//! reservation drains what has arrived without waiting, `wait` waits for the
//! next one — rather than by a task of their own, so after a round trip on
//! the consumer's own channel (`flush`) every delivery the broker sent before
//! its answer is in hand: RabbitMQ writes a channel's frames in order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor_core::Error;
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::Channel;

use crate::answer::{answer, Health};
use crate::error::is_ack_timeout;

/// A consumer channel and the deliveries it has received but not handed out.
pub(crate) struct QueueConsumer {
    /// Unique among this process's consumer channels.
    pub(crate) id: u64,
    /// The conveyor queue.
    pub(crate) queue: String,
    pub(crate) channel: Channel,
    /// The connection's health: a request it did not answer in time voids
    /// this channel too.
    pub(crate) health: Arc<Health>,
    /// Held while one report's frames and the commit go out, and around
    /// every other synchronous method on this channel (`basic.qos`,
    /// `basic.consume`, `queue.declare`): AMQP allows one synchronous
    /// request in flight per channel, and RabbitMQ closes the whole
    /// connection when a second one arrives during a `tx.commit`.
    pub(crate) tx: tokio::sync::Mutex<()>,
    amqp_queue: String,
    /// The client's delivery streams (one per consumer on the channel).
    streams: tokio::sync::Mutex<Vec<lapin::Consumer>>,
    /// Streams `widen` started, until a reader moves them into `streams`
    /// (which a waiter may hold for a while).
    incoming: Mutex<Vec<lapin::Consumer>>,
    /// The sum of the consumers' prefetches (changed under the lock; read
    /// without it through `granted`).
    prefetch: tokio::sync::Mutex<usize>,
    granted: AtomicUsize,
    buffer: Mutex<Buffer>,
    closed: AtomicBool,
    /// Deliveries handed out of the buffer and not settled yet.
    taken: AtomicUsize,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl QueueConsumer {
    /// Starts consuming `amqp_queue` on `channel` with `prefetch`.
    pub(crate) async fn start(
        channel: Channel,
        health: Arc<Health>,
        queue: &str,
        amqp_queue: &str,
        prefetch: usize,
    ) -> Result<Arc<QueueConsumer>, Error> {
        answer(&health, "tx.select", channel.tx_select()).await?;
        let consumer = Arc::new(QueueConsumer {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            queue: queue.to_string(),
            channel,
            health,
            tx: tokio::sync::Mutex::new(()),
            amqp_queue: amqp_queue.to_string(),
            streams: tokio::sync::Mutex::new(Vec::new()),
            incoming: Mutex::new(Vec::new()),
            prefetch: tokio::sync::Mutex::new(0),
            granted: AtomicUsize::new(0),
            buffer: Mutex::new(Buffer::default()),
            closed: AtomicBool::new(false),
            taken: AtomicUsize::new(0),
        });
        consumer.widen(prefetch.max(1), true).await?;
        Ok(consumer)
    }

    /// Lets the broker hold at least `want` unacknowledged deliveries on
    /// this channel (never lowers it): a new consumer with the difference.
    /// With `exact` the prefetch becomes `want`; otherwise it at least
    /// doubles, so a caller that keeps asking for more costs few consumers
    /// (each is a replicated command of the quorum queue).
    pub(crate) async fn widen(&self, want: usize, exact: bool) -> Result<(), Error> {
        let mut prefetch = self.prefetch.lock().await;
        if want <= *prefetch {
            return Ok(());
        }
        let want = if exact { want } else { want.max(2 * *prefetch) };
        let extra = u16::try_from(want - *prefetch).unwrap_or(u16::MAX);
        let _sync = self.tx.lock().await;
        self.failing_closes(answer(
            &self.health,
            "basic.qos",
            self.channel.basic_qos(extra, BasicQosOptions::default()),
        ))
        .await?;
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        // A consume is answered once the queue's leader takes it: a queue
        // whose leader does not come back (see `link::anchor`) never
        // answers, and this is where a reservation would hang.
        let stream = self
            .failing_closes(answer(
                &self.health,
                &format!("basic.consume {}", self.amqp_queue),
                self.channel.basic_consume(
                    self.amqp_queue.as_str().into(),
                    format!("conveyor-{}-{}-{n}", std::process::id(), self.id).into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                ),
            ))
            .await?;
        self.incoming
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(stream);
        *prefetch += usize::from(extra);
        self.granted.store(*prefetch, Ordering::Relaxed);
        Ok(())
    }

    /// How many messages wait in the queue, asked on this channel: when the
    /// answer arrives, every delivery the broker sent this channel before it
    /// has arrived too.
    pub(crate) async fn flush(&self) -> Result<u32, Error> {
        let _sync = self.tx.lock().await;
        let q = self
            .failing_closes(answer(
                &self.health,
                &format!("queue.declare {}", self.amqp_queue),
                self.channel.queue_declare(
                    self.amqp_queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                ),
            ))
            .await?;
        Ok(q.message_count())
    }

    /// `step`, after which the channel counts as closed if it failed: a
    /// request refused or unanswered on a consumer channel means the
    /// channel is gone (or going: the client may report the failure a
    /// moment before it marks the channel), and what it buffered went back
    /// to the queue with it — handing it out would only run it twice.
    async fn failing_closes<T>(
        &self,
        step: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let r = step.await;
        if r.is_err() {
            self.closed.store(true, Ordering::Release);
        }
        r
    }

    /// True when the broker may still send this channel deliveries: fewer
    /// are taken or buffered than the prefetch allows.
    pub(crate) fn has_room(&self) -> bool {
        let held = self.taken() + self.lock().waiting.len();
        held < self.granted.load(Ordering::Relaxed)
    }

    /// How many deliveries the worker holds unsettled.
    pub(crate) fn taken(&self) -> usize {
        self.taken.load(Ordering::Relaxed)
    }

    /// `n` taken deliveries were settled (or handed to custody).
    pub(crate) fn settled(&self, n: usize) {
        let _ = self
            .taken
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_sub(n))
            });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves what the client has received into the buffer, without waiting
    /// (skipped while someone waits on the streams: they will).
    fn pull(&self) {
        let Ok(mut streams) = self.streams.try_lock() else {
            return;
        };
        self.adopt(&mut streams);
        for stream in streams.iter_mut() {
            while let Some(next) = stream.next().now_or_never() {
                if !self.received(next) {
                    break;
                }
            }
        }
    }

    /// Moves the streams `widen` started into `streams`.
    fn adopt(&self, streams: &mut Vec<lapin::Consumer>) {
        streams.append(&mut self.incoming.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Takes one item of a stream; false when the stream ended.
    fn received(&self, next: Option<lapin::Result<Delivery>>) -> bool {
        match next {
            Some(Ok(delivery)) => {
                self.lock().push(delivery);
                true
            }
            Some(Err(e)) => {
                self.close(Some(e));
                false
            }
            None => {
                self.close(None);
                false
            }
        }
    }

    fn close(&self, why: Option<lapin::Error>) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        match why {
            Some(e) if is_ack_timeout(&e.to_string()) => tracing::warn!(
                queue = %self.queue,
                "RabbitMQ closed the consumer channel: a delivery stayed unacknowledged \
                 past the server's consumer_timeout. Its tasks go back to the queue; \
                 set the URL's hold= below consumer_timeout so long tasks move to \
                 custody in time ({e})"
            ),
            Some(e) => tracing::warn!(queue = %self.queue, error = %e, "consumer channel closed"),
            None => tracing::debug!(queue = %self.queue, "consumer cancelled"),
        }
    }

    /// Waits up to `timeout` for a delivery (true when one is in hand).
    pub(crate) async fn wait(&self, timeout: Duration) -> bool {
        if self.has_work() {
            return true;
        }
        let mut streams = self.streams.lock().await;
        self.adopt(&mut streams);
        if streams.is_empty() || !self.alive() {
            return false;
        }
        let next = futures_util::future::select_all(streams.iter_mut().map(|s| s.next()));
        match tokio::time::timeout(timeout, next).await {
            Ok((item, _, _)) => {
                self.received(item);
                drop(streams);
                self.has_work()
            }
            Err(_) => false,
        }
    }

    /// Takes up to `max` buffered deliveries, in the broker's order.
    pub(crate) fn take(&self, max: usize, into: &mut Vec<Delivery>) {
        if !self.alive() {
            // Its deliveries went back to the queue with the channel.
            return;
        }
        self.pull();
        let before = into.len();
        self.lock().take(max, into);
        self.taken.fetch_add(into.len() - before, Ordering::Relaxed);
    }

    /// True when deliveries wait in the buffer.
    pub(crate) fn has_work(&self) -> bool {
        self.pull();
        self.lock().ready()
    }

    /// Undoes a transaction that failed before its commit (call with `tx`
    /// held): rolled back while the channel lives, so none of it is
    /// committed later with another report's commit; the channel closed when
    /// even that fails (its deliveries go back to their queue). True when
    /// the channel lives on, its deliveries still held.
    pub(crate) async fn abandon(&self) -> bool {
        if !self.alive() {
            return false;
        }
        if answer(&self.health, "tx.rollback", self.channel.tx_rollback())
            .await
            .is_ok()
        {
            return true;
        }
        self.shut("conveyor: a transaction could not be rolled back")
            .await;
        false
    }

    /// Closes the channel (its deliveries go back to their queue), waiting
    /// for the broker's answer at most as long as any other; a channel that
    /// did not answer is void all the same (its connection counts as
    /// broken).
    pub(crate) async fn shut(&self, why: &str) {
        self.closed.store(true, Ordering::Release);
        let _ = answer(
            &self.health,
            "channel.close",
            self.channel.close(200, why.into()),
        )
        .await;
    }

    /// True while the channel can still settle what it delivered.
    pub(crate) fn alive(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
            && !self.health.broken()
            && self.channel.status().connected()
    }
}

/// Deliveries in the order the broker sent them. Each of a channel's
/// consumers has its own reader task, so two deliveries may reach the buffer
/// out of order; delivery tags number a channel's deliveries 1, 2, 3, …, so
/// the buffer hands out only the unbroken run from the next tag on, and a
/// delivery still on its way through another reader is waited for.
#[derive(Default)]
struct Buffer {
    waiting: BTreeMap<u64, Delivery>,
    /// The tag handed out next (the first delivery of a channel is tag 1).
    next: u64,
}

impl Buffer {
    fn push(&mut self, delivery: Delivery) {
        self.waiting.insert(delivery.delivery_tag, delivery);
    }

    fn expected(&self) -> u64 {
        self.next.max(1)
    }

    fn ready(&self) -> bool {
        self.waiting.contains_key(&self.expected())
    }

    fn take(&mut self, max: usize, into: &mut Vec<Delivery>) {
        let mut taken = 0;
        while taken < max {
            let Some(d) = self.waiting.remove(&self.expected()) else {
                break;
            };
            self.next = d.delivery_tag + 1;
            into.push(d);
            taken += 1;
        }
    }
}
