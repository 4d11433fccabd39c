//! [`AmqpBackend`]: conveyor's backend contract on RabbitMQ.
//!
//! - `enqueue_many` publishes every task on a confirm-mode channel and returns
//!   once the broker confirmed them all (written to its quorum queues);
//! - `reserve` hands out deliveries the queue's consumer has buffered; the
//!   broker may deliver only as many as the worker holds unsettled plus the
//!   free slots it asks for (`consumer`), so backpressure reaches the queue;
//! - `renew` checks each claim is still alive and rolls the custody copies
//!   of long tasks; a sweeper task moves each delivery held for `hold` into
//!   custody, on time (`custody`);
//! - `finish` acknowledges and publishes what follows each report in one
//!   transaction per consumer channel (`consumer`), each claim under its own
//!   lock so no renewal or move of the same task runs beside it (`held`).
//!
//! There is no record of a task outside the messages themselves unless the
//! URL names a result store (`results=redis://…`, see `results`): the broker
//! cannot list or count by task, and has no unique or ordering keys or
//! priorities; those are refused with [`Error::Unsupported`] (see
//! `docs/amqp.md`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use conveyor_core::{
    async_trait, Backend, Capabilities, Clock, Enqueued, Error, Finish, FinishAction, Lease,
    NewTask, Part, Receipt, ReserveParams, Reserved, ResultStore, TaskId, TaskRecord, TaskState,
    Timestamp, ValueLimit,
};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicPublishOptions};
use lapin::Channel;
use lapin::{Confirmation, PublisherConfirm};

use crate::answer::{answer, within, Health};
use crate::claims::{Claim, Claims, Place, SpotGuard};
use crate::consumer::QueueConsumer;
use crate::delay;
use crate::error::amqp_error;
use crate::hooks::Hooks;
use crate::link::Link;
use crate::message::TaskMessage;
use crate::names::{self, Names};
use crate::options::AmqpOptions;
use crate::results::{self, Results};

/// A task that arrives this much before its due time still runs (the
/// ladder's hops take a few milliseconds each).
const EARLY: Duration = Duration::from_millis(5);

/// How long an empty reservation waits for messages the broker says are
/// ready but that have not arrived yet.
const SETTLE_IN: Duration = Duration::from_millis(250);

/// How long a task a reservation does not want (its handler is not among
/// the ones asked for) waits on the delay ladder before it is delivered
/// again: long enough that a worker lacking its handler does not spin on
/// it, short enough that a worker having it is not kept waiting.
pub(crate) const UNWANTED_DELAY: Duration = Duration::from_secs(1);

/// A RabbitMQ backend. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct AmqpBackend {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    url: String,
    pub(crate) names: Names,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) options: AmqpOptions,
    current: RwLock<Option<Arc<Link>>>,
    connecting: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    /// Connections opened; every one after the first is a reconnect.
    opened: AtomicU64,
    consumers: tokio::sync::Mutex<HashMap<String, Arc<QueueConsumer>>>,
    /// Queues (and the ladder) this backend anchored (see `link::anchor`).
    anchored: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    pub(crate) held: Claims,
    next_token: AtomicU64,
    /// The result store beside the broker, if the URL named one.
    results: Option<Results>,
    /// The most bytes of params or result one task may carry.
    value_limit: ValueLimit,
    /// The worker's slots, once it said (0: not said).
    slots: AtomicU64,
    /// Pause points for tests (`test-hooks`).
    pub(crate) hooks: Hooks,
    /// The task that moves deliveries held for `hold` into custody
    /// (`custody::sweep`), stopped when the backend is dropped.
    sweeper: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    /// A backend dropped (its process exiting, or a worker done with it)
    /// stops its sweeper and closes its connection, so the broker hands
    /// back every delivery it held at once rather than at its heartbeat
    /// timeout. Its consumers' channels close with the connection; a move
    /// to custody in flight holds the backend until its bounded step ends,
    /// then finds it gone and stops.
    fn drop(&mut self) {
        let sweeper = self.sweeper.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = sweeper.take() {
            task.abort();
        }
        let link = self
            .current
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let (Some(link), Ok(runtime)) = (link, tokio::runtime::Handle::try_current()) {
            runtime.spawn(async move { link.close().await });
        }
    }
}

/// What to publish for a report, before its delivery is settled.
pub(crate) struct Publish {
    pub(crate) exchange: String,
    pub(crate) routing_key: String,
    pub(crate) message: TaskMessage,
}

impl AmqpBackend {
    /// Connects to `url` (`amqp://USER:PASS@HOST:PORT/VHOST`, the client's
    /// own parameters only) with every name under `options.prefix`.
    pub async fn connect(
        url: &str,
        options: AmqpOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<AmqpBackend, Error> {
        options.validate()?;
        let value_limit = crate::value_limit::limit(options.max_value);
        let results = match &options.results {
            Some(url) => Some(Results::connect(url, &options.prefix, options.retention).await?),
            None => None,
        };
        let backend = AmqpBackend {
            inner: Arc::new(Inner {
                url: url.to_string(),
                names: Names::new(&options.prefix)?,
                clock,
                options,
                current: RwLock::new(None),
                connecting: tokio::sync::Mutex::new(()),
                generation: AtomicU64::new(0),
                opened: AtomicU64::new(0),
                consumers: tokio::sync::Mutex::new(HashMap::new()),
                anchored: Arc::default(),
                held: Claims::default(),
                next_token: AtomicU64::new(fastrand::u64(1..u64::MAX / 2)),
                results,
                value_limit,
                slots: AtomicU64::new(0),
                hooks: Hooks::default(),
                sweeper: std::sync::Mutex::new(None),
            }),
        };
        backend.inner.link().await?;
        let sweeper = tokio::spawn(crate::custody::sweep(Arc::downgrade(&backend.inner)));
        *backend
            .inner
            .sweeper
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(sweeper);
        Ok(backend)
    }

    /// The most bytes one task's params, or one result, may hold here:
    /// RabbitMQ's default `max_message_size` less room for a message's
    /// properties, or `max_value` when lower. `enqueue` refuses params over
    /// it, and `finish` a result over it, for that report alone, with a
    /// non-transient error naming both sizes.
    pub fn max_value(&self) -> usize {
        self.inner.value_limit.max()
    }

    /// The prefix every name is under.
    pub fn prefix(&self) -> &str {
        self.inner.names.prefix()
    }

    /// The options it runs with.
    pub fn options(&self) -> &AmqpOptions {
        &self.inner.options
    }

    /// Deletes what this backend declared under its prefix: the work and dead
    /// queues of `queues` (with every task in them), the delay ladder, and
    /// the records of its result store. For tests and for retiring a
    /// namespace; custody queues expire alone.
    pub async fn delete_namespace(&self, queues: &[&str]) -> Result<(), Error> {
        if let Some(store) = &self.inner.results {
            store.clear().await?;
        }
        let link = self.inner.link().await?;
        let admin = link.admin().await?;
        let names = &self.inner.names;
        let mut doomed: Vec<String> = queues
            .iter()
            .flat_map(|q| [names.work(q), names.dead(q)])
            .collect();
        doomed.extend((0..delay::LEVELS).map(|l| names.delay(l)));
        for q in doomed {
            admin
                .queue_delete(q.as_str().into(), Default::default())
                .await
                .map_err(|e| amqp_error(&format!("queue.delete {q}"), e))?;
        }
        let exchanges = (0..delay::LEVELS)
            .map(|l| names.delay(l))
            .chain([names.deliver()]);
        for x in exchanges {
            admin
                .exchange_delete(x.as_str().into(), Default::default())
                .await
                .map_err(|e| amqp_error(&format!("exchange.delete {x}"), e))?;
        }
        Ok(())
    }

    /// How many tasks wait in `queue` (ready or in flight to this process's
    /// buffers are not counted: RabbitMQ's ready count) and in its dead
    /// queue, without declaring anything.
    pub async fn depth(&self, queue: &str) -> Result<(u64, u64), Error> {
        let link = self.inner.link().await?;
        let names = &self.inner.names;
        let mut counts = [0u64; 2];
        for (i, name) in [names.work(queue), names.dead(queue)].iter().enumerate() {
            let channel = link.channel().await?;
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
            counts[i] = match declared {
                Ok(q) => u64::from(q.message_count()),
                // NOT_FOUND closes the channel: no such queue, no tasks.
                Err(e) if e.to_string().contains("NOT_FOUND") => 0,
                Err(e) => return Err(amqp_error(&format!("queue.declare {name}"), e)),
            };
            let _ = channel.close(200, "".into()).await;
        }
        Ok((counts[0], counts[1]))
    }

    /// Installs a test hook: every custody move calls it at each
    /// [`Point`](crate::Point) and waits for its future, so a test can hold a
    /// renewal still while a report arrives. One hook per backend; false when
    /// one was set already. Only with the `test-hooks` feature.
    #[cfg(feature = "test-hooks")]
    pub fn set_hook(&self, hook: crate::Hook) -> bool {
        self.inner.hooks.set(hook)
    }

    /// Closes the connection: tasks this process holds go back to their queues.
    pub async fn close(&self) {
        let link = self.inner.current_link();
        if let Some(link) = link {
            link.close().await;
        }
    }
}

impl Inner {
    fn current_link(&self) -> Option<Arc<Link>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The live connection, reconnecting when the last one died.
    pub(crate) async fn link(&self) -> Result<Arc<Link>, Error> {
        if let Some(link) = self.current_link().filter(|l| l.alive()) {
            return Ok(link);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(link) = self.current_link().filter(|l| l.alive()) {
            return Ok(link);
        }
        let old = self
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(old) = old {
            // Dead or not answering: make sure the broker drops it (and
            // returns what it held to the queues) as soon as it hears.
            tokio::spawn(async move { old.close().await });
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let link = Arc::new(Link::open(&self.url, generation, self.anchored.clone()).await?);
        self.opened.fetch_add(1, Ordering::Relaxed);
        if link.generation > 1 {
            tracing::info!(generation, "reconnected to RabbitMQ");
        }
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(link.clone());
        Ok(link)
    }

    /// The consumer of `queue` on `link`, started (with `prefetch`) when
    /// missing or dead.
    async fn consumer(
        &self,
        link: &Link,
        queue: &str,
        prefetch: usize,
    ) -> Result<Arc<QueueConsumer>, Error> {
        let mut consumers = self.consumers.lock().await;
        if let Some(c) = consumers.get(queue).filter(|c| c.alive()) {
            return Ok(c.clone());
        }
        link.ensure_queue(&self.names, queue, self.options.delivery_limit)
            .await?;
        let prefetch = self.options.prefetch.map_or(prefetch, usize::from);
        let channel = link.channel().await?;
        let c = QueueConsumer::start(
            channel,
            link.health.clone(),
            queue,
            &self.names.work(queue),
            prefetch,
        )
        .await?;
        consumers.insert(queue.to_string(), c.clone());
        Ok(c)
    }

    /// Where `message` goes to wait for its due time, given `now`.
    pub(crate) fn route(&self, message: TaskMessage, now: Timestamp) -> Publish {
        if message.due_at.0 > now.0 {
            let ms = u64::try_from(message.due_at.0 - now.0).unwrap_or(0);
            return self.delayed(message, Duration::from_millis(ms));
        }
        Publish {
            exchange: String::new(),
            routing_key: self.names.work(&message.queue),
            message,
        }
    }

    /// `message` unchanged, through the delay ladder: delivered again to its
    /// work queue after `delay`.
    pub(crate) fn delayed(&self, message: TaskMessage, delay: Duration) -> Publish {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(delay::MAX_PASS_MS);
        Publish {
            exchange: self.names.delay(delay::LEVELS - 1),
            routing_key: delay::routing_key(ms, &names::word(&message.queue)),
            message,
        }
    }

    /// A dead letter of `message` into its queue's dead queue.
    pub(crate) fn dead_letter(&self, message: TaskMessage) -> Publish {
        Publish {
            exchange: String::new(),
            routing_key: self.names.dead(&message.queue),
            message,
        }
    }

    /// Declares what `publishes` need: their queues, and the ladder if any
    /// of them is delayed.
    pub(crate) async fn prepare(&self, link: &Link, publishes: &[&Publish]) -> Result<(), Error> {
        for p in publishes {
            link.ensure_queue(&self.names, &p.message.queue, self.options.delivery_limit)
                .await?;
            if !p.exchange.is_empty() {
                link.ensure_ladder(&self.names).await?;
            }
        }
        Ok(())
    }

    /// New tasks as messages, each with a fresh id. Refuses what this
    /// backend cannot keep.
    pub(crate) fn messages(
        &self,
        tasks: Vec<NewTask>,
        now: Timestamp,
    ) -> Result<Vec<TaskMessage>, Error> {
        self.value_limit.check_batch(&tasks)?;
        for t in &tasks {
            t.validate()?;
            Names::check_queue(&t.queue)?;
            let refuse = |what: &str| Err(conveyor_core::unsupported("amqp", what));
            if t.priority != 0 {
                return refuse("priorities (quorum queues deliver in order)");
            }
            if t.unique_key.is_some() {
                return refuse("unique keys (the broker keeps no task records)");
            }
            if t.ordering_key.is_some() {
                return refuse("ordering keys");
            }
        }
        Ok(tasks
            .into_iter()
            .map(|t| TaskMessage::new(new_id(), t, now))
            .collect())
    }

    /// The prefetch a consumer holding `taken` unsettled needs for a
    /// reservation of `max`, and whether it is exact: the worker's slots when
    /// it said them (what runs plus what waits for a slot never exceeds
    /// them), else at least `taken + max`.
    fn prefetch(&self, taken: usize, max: usize) -> (usize, bool) {
        match self.slots.load(Ordering::Relaxed) {
            0 => (taken + max, false),
            slots => (usize::try_from(slots).unwrap_or(usize::MAX), true),
        }
    }

    /// Takes up to `max` deliveries from `consumers` in order.
    fn take(
        &self,
        consumers: &[Arc<QueueConsumer>],
        params: &ReserveParams<'_>,
        now: Timestamp,
        out: &mut Vec<Reserved>,
        fixes: &mut Vec<(Arc<QueueConsumer>, u64, Publish)>,
    ) {
        let max = params.max;
        let mut deliveries = Vec::new();
        for consumer in consumers {
            if out.len() >= max {
                break;
            }
            if !consumer.alive() {
                // Its channel died: what it buffered went back to the queue
                // with it, and would only run twice.
                continue;
            }
            deliveries.clear();
            consumer.take(max - out.len(), &mut deliveries);
            for d in deliveries.drain(..) {
                if let Some(r) = self.admit(consumer, d, params, now, fixes) {
                    out.push(r);
                }
            }
        }
    }

    fn token(&self) -> u64 {
        self.next_token.fetch_add(1, Ordering::Relaxed)
    }

    /// A delivery as a reserved task, or what to do with it instead.
    fn admit(
        &self,
        consumer: &Arc<QueueConsumer>,
        delivery: Delivery,
        params: &ReserveParams<'_>,
        now: Timestamp,
        fixes: &mut Vec<(Arc<QueueConsumer>, u64, Publish)>,
    ) -> Option<Reserved> {
        let lease = params.lease;
        let tag = delivery.delivery_tag;
        let message = match TaskMessage::decode(&delivery.properties, delivery.data) {
            Ok(m) => m,
            Err((why, payload)) => {
                tracing::warn!(queue = %consumer.queue, %why, "dead-lettering a message that is not a conveyor task");
                let foreign = TaskMessage {
                    id: TaskId(0),
                    queue: consumer.queue.clone(),
                    handler: String::new(),
                    payload,
                    attempts: 0,
                    max_attempts: 1,
                    timeout: None,
                    enqueued_at: now,
                    due_at: now,
                    error: Some(format!("undecodable message: {why}")),
                    trace: None,
                };
                fixes.push((consumer.clone(), tag, self.dead_letter(foreign)));
                return None;
            }
        };
        if message.due_at.0 > now.plus(EARLY).0 {
            // Early: a delay longer than one pass of the ladder.
            fixes.push((consumer.clone(), tag, self.route(message, now)));
            return None;
        }
        if !params.wants(&message.handler) {
            // A broker delivers what it delivers: a task this worker did not
            // ask for goes round a short delay, unchanged (its due time, its
            // attempts), so that a worker with its handler may take it.
            fixes.push((consumer.clone(), tag, self.delayed(message, UNWANTED_DELAY)));
            return None;
        }
        let token = self.token();
        let reserved = Reserved {
            lease: Lease {
                id: message.id,
                token,
                receipt: Receipt::new(format!("{}:{tag}", consumer.id).into_bytes()),
            },
            queue: consumer.queue.clone(),
            handler: message.handler.clone(),
            payload: message.payload.clone(),
            attempt: message.attempts + 1,
            max_attempts: message.max_attempts,
            timeout: message.timeout,
            ordering_key: None,
            enqueued_at: message.enqueued_at,
            due_at: message.due_at,
            lease_until: now.plus(lease),
            trace: message.trace.clone(),
        };
        self.held.insert(Claim::new(
            token,
            message,
            lease,
            Place::Delivery {
                consumer: consumer.clone(),
                tag,
            },
        ));
        Some(reserved)
    }

    /// Acks each delivery after publishing its replacement, one transaction
    /// per consumer.
    async fn apply_fixes(&self, link: &Link, fixes: Vec<(Arc<QueueConsumer>, u64, Publish)>) {
        let publishes: Vec<&Publish> = fixes.iter().map(|(_, _, p)| p).collect();
        if let Err(e) = self.prepare(link, &publishes).await {
            tracing::warn!(error = %e.chain(), "could not declare where a message goes; it stays queued");
            return;
        }
        for (consumer, tag, publish) in fixes {
            let _tx = consumer.tx.lock().await;
            let done = async {
                let h = &consumer.health;
                publish_on(h, &consumer.channel, &publish).await?;
                ack(h, &consumer.channel, tag).await?;
                commit(h, &consumer.channel).await
            }
            .await;
            consumer.settled(1);
            if let Err(e) = done {
                tracing::warn!(error = %e.chain(), "could not move a message; it will be delivered again");
            }
        }
    }
}

/// A fresh task id: random, so processes need no coordination (63 bits).
fn new_id() -> TaskId {
    TaskId(fastrand::u64(1..=i64::MAX as u64))
}

/// Publishes on `channel` (no confirm: inside a transaction, or the caller
/// awaits the confirm).
pub(crate) async fn publish_on(
    health: &Health,
    channel: &Channel,
    p: &Publish,
) -> Result<PublisherConfirm, Error> {
    answer(
        health,
        "basic.publish",
        channel.basic_publish(
            p.exchange.as_str().into(),
            p.routing_key.as_str().into(),
            BasicPublishOptions::default(),
            &p.message.payload,
            p.message.properties(),
        ),
    )
    .await
}

pub(crate) async fn ack(health: &Health, channel: &Channel, tag: u64) -> Result<(), Error> {
    answer(
        health,
        "basic.ack",
        channel.basic_ack(tag, BasicAckOptions::default()),
    )
    .await
}

pub(crate) async fn commit(health: &Health, channel: &Channel) -> Result<(), Error> {
    answer(health, "tx.commit", channel.tx_commit()).await
}

/// Publishes every message with confirms and waits for all of them, at
/// most [`ANSWER_WITHIN`](crate::answer::ANSWER_WITHIN) for the lot.
pub(crate) async fn publish_confirmed(link: &Link, publishes: &[Publish]) -> Result<(), Error> {
    within(
        &link.health,
        "publish (confirms)",
        confirmed(link, publishes),
    )
    .await
}

async fn confirmed(link: &Link, publishes: &[Publish]) -> Result<(), Error> {
    let h = &link.health;
    // Every publish is queued at once (the futures are first polled in
    // order, so the messages keep their order), then every confirm awaited.
    let confirms =
        futures_util::future::join_all(publishes.iter().map(|p| publish_on(h, &link.publisher, p)))
            .await;
    for c in confirms {
        let c = c?;
        match c.await.map_err(|e| amqp_error("publisher confirm", e))? {
            Confirmation::Ack(_) | Confirmation::NotRequested => {}
            Confirmation::Nack(_) => {
                return Err(Error::backend(
                    conveyor_core::BackendErrorKind::Busy,
                    "amqp publish: the broker refused a message (nack); nothing was lost \
                     that was confirmed, retry",
                ))
            }
        }
    }
    Ok(())
}

/// One report and its claim, locked, on its way to being settled.
struct Settling {
    slot: usize,
    claim: Arc<Claim>,
    guard: SpotGuard,
    plan: Plan,
}

/// `e` once more, for each report of a batch that failed with it.
fn again(e: &Error) -> Error {
    Error::backend(
        e.backend_kind()
            .unwrap_or(conveyor_core::BackendErrorKind::Other),
        e.chain().to_string(),
    )
}

/// The messages a report publishes, and how its claim is settled.
pub(crate) struct Plan {
    pub(crate) publishes: Vec<Publish>,
    /// The records to write once it applied (with a result store).
    pub(crate) records: Vec<TaskRecord>,
}

impl Inner {
    /// What report `finish` asks for the task `message`.
    pub(crate) fn plan(
        &self,
        message: &TaskMessage,
        finish: Finish,
        now: Timestamp,
    ) -> Result<Plan, Error> {
        let mut publishes = Vec::new();
        let mut message = message.clone();
        let started = message.attempts + 1;
        let keep = self.results.is_some();
        let mut records = Vec::new();
        let mut record = |m: &TaskMessage, state, attempts| {
            if keep {
                records.push(results::record(m, state, attempts, now));
            }
        };
        match finish.action {
            FinishAction::Complete { result } => {
                record(&message, TaskState::Completed, started);
                if let Some(r) = records.last_mut() {
                    r.result = result;
                }
            }
            FinishAction::Discard { reason } => {
                message.error = Some(reason);
                record(&message, TaskState::Cancelled, started);
            }
            FinishAction::Retry { delay, error } => {
                message.attempts += 1;
                message.error = Some(error);
                if message.attempts >= message.max_attempts {
                    record(&message, TaskState::Dead, message.attempts);
                    publishes.push(self.dead_letter(message));
                } else {
                    message.due_at = now.plus(delay);
                    record(&message, TaskState::Retrying, message.attempts);
                    publishes.push(self.route(message, now));
                }
            }
            FinishAction::DeadLetter { error } => {
                message.attempts += 1;
                message.error = Some(error);
                record(&message, TaskState::Dead, message.attempts);
                publishes.push(self.dead_letter(message));
            }
            FinishAction::Release => {
                // A fresh copy at the queue's tail, not a requeue: the
                // broker counts a requeue as a delivery, and a task handed
                // back often enough (a rolling deploy's worker meeting
                // another's handler) would be dead-lettered by its
                // `delivery_limit` without ever having run.
                record(&message, TaskState::Available, message.attempts);
                publishes.push(self.route(message, now));
            }
        }
        for m in self.messages(finish.follow_ups, now)? {
            if keep {
                records.push(results::waiting(&m, now));
            }
            publishes.push(self.route(m, now));
        }
        Ok(Plan { publishes, records })
    }

    /// Settles a delivery-held task inside its channel's transaction.
    async fn settle_delivery(
        &self,
        consumer: &QueueConsumer,
        tag: u64,
        plan: &Plan,
    ) -> Result<(), Error> {
        let h = &consumer.health;
        for p in &plan.publishes {
            publish_on(h, &consumer.channel, p).await?;
        }
        ack(h, &consumer.channel, tag).await
    }
}

#[async_trait]
impl Backend for AmqpBackend {
    fn kind(&self) -> &'static str {
        "amqp"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            durable: true,
            shared: true,
            priority: false,
            delay: true,
            unique_keys: false,
            ordering_keys: false,
            wakeups: true,
            // The result store beside the broker cannot tell attempts
            // apart honestly (see `results.rs`).
            history: false,
        }
    }

    async fn enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, Error> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let messages = inner.messages(tasks, now)?;
        let out = messages
            .iter()
            .map(|m| Enqueued {
                id: m.id,
                duplicate: false,
            })
            .collect();
        if let Some(store) = &inner.results {
            // Before the publish: a worker's later record must not be
            // overwritten by this one.
            let records: Vec<TaskRecord> =
                messages.iter().map(|m| results::waiting(m, now)).collect();
            store.put(&records, now).await?;
        }
        let publishes: Vec<Publish> = messages.into_iter().map(|m| inner.route(m, now)).collect();
        let published = async {
            let link = inner.link().await?;
            inner
                .prepare(&link, &publishes.iter().collect::<Vec<_>>())
                .await?;
            publish_confirmed(&link, &publishes).await
        }
        .await;
        if let (Err(_), Some(store)) = (&published, &inner.results) {
            let ids: Vec<TaskId> = publishes.iter().map(|p| p.message.id).collect();
            store.forget(&ids).await;
        }
        published?;
        Ok(out)
    }

    /// Honours [`ReserveParams::handlers`] the way a broker can: a delivery
    /// of another handler is sent round a second (`UNWANTED_DELAY`) of the delay
    /// ladder, unchanged, and the reservation goes on with the next.
    async fn reserve(&self, params: ReserveParams<'_>) -> Result<Vec<Reserved>, Error> {
        let inner = &self.inner;
        let (queues, max) = (params.queues, params.max);
        if queues.is_empty() || max == 0 {
            return Ok(Vec::new());
        }
        let link = inner.link().await?;
        let now = inner.clock.now();
        let mut out = Vec::new();
        let mut fixes = Vec::new();
        let mut consumers = Vec::with_capacity(queues.len());
        for queue in queues {
            let consumer = inner
                .consumer(&link, queue, inner.prefetch(0, max).0)
                .await?;
            if inner.options.prefetch.is_none() {
                let (want, exact) = inner.prefetch(consumer.taken(), max);
                consumer.widen(want, exact).await?;
            }
            consumers.push(consumer);
        }
        inner.take(&consumers, &params, now, &mut out, &mut fixes);
        // Fewer than asked: ask the broker on each consumer's own channel how
        // many wait. Its answer comes after every delivery it sent before,
        // so what is not in hand then is still in the queue; wait a moment
        // for those (just published, or the prefetch just widened) rather
        // than answer "not ready".
        let deadline = tokio::time::Instant::now() + SETTLE_IN;
        while out.len() < max {
            let mut waiting = None;
            for c in &consumers {
                // A consumer at its prefetch gets nothing more until the
                // worker settles: no need to ask or wait.
                if c.alive() && c.has_room() && c.flush().await.unwrap_or(0) > 0 {
                    waiting = Some(c.clone());
                    break;
                }
            }
            let before = out.len() + fixes.len();
            inner.take(&consumers, &params, now, &mut out, &mut fixes);
            if out.len() + fixes.len() > before {
                continue;
            }
            let Some(c) = waiting else { break };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || !c.wait(left).await {
                break;
            }
        }
        if let (Some(store), false) = (&inner.results, out.is_empty()) {
            let records: Vec<TaskRecord> = out
                .iter()
                .filter_map(|r| {
                    inner.held.with(&r.lease, |m| {
                        results::record(m, TaskState::Running, m.attempts + 1, now)
                    })
                })
                .collect();
            if let Err(e) = store.put(&records, now).await {
                tracing::warn!(error = %e.chain(), "could not record reserved tasks as running");
            }
        }
        if !fixes.is_empty() {
            inner.apply_fixes(&link, fixes).await;
        }
        Ok(out)
    }

    async fn renew(&self, leases: &[Lease], lease: Duration) -> Result<Vec<bool>, Error> {
        let mut out = Vec::with_capacity(leases.len());
        for l in leases {
            out.push(crate::custody::renew(&self.inner, l, lease).await);
        }
        Ok(out)
    }

    async fn finish(&self, reports: Vec<Finish>) -> Result<Vec<Result<(), Error>>, Error> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut out: Vec<Option<Result<(), Error>>> = (0..reports.len()).map(|_| None).collect();
        // Each report's claim, locked in token order (two batches never wait
        // for each other in a circle): a renewal or a move to custody in
        // flight ends first, and the report settles the claim where it left
        // it. The locks are held until each claim is settled or known lost;
        // one that fails otherwise stays held, for the report to be tried
        // again.
        let mut order: Vec<(usize, Finish)> = reports.into_iter().enumerate().collect();
        order.sort_by_key(|(_, r)| r.lease.token);
        let mut by_channel: HashMap<u64, (Arc<QueueConsumer>, Vec<(u64, Settling)>)> =
            HashMap::new();
        let mut custody: Vec<Settling> = Vec::new();
        let mut previous = None;
        for (slot, report) in order {
            if let Err(e) = report
                .validate_follow_ups()
                .and_then(|()| inner.value_limit.check_finish(&report))
            {
                out[slot] = Some(Err(e));
                continue;
            }
            let stale = Error::StaleLease(report.lease.id);
            // A second report of one claim in one batch: the first settles it.
            let claim = match inner.held.get(&report.lease) {
                Some(c) if previous != Some(c.token) => c,
                _ => {
                    out[slot] = Some(Err(stale));
                    continue;
                }
            };
            previous = Some(claim.token);
            let guard = claim.lock(&inner.hooks).await;
            let Some(place) = guard.as_ref().map(|s| s.place.clone()) else {
                // Found lost by a renewal while this report waited.
                out[slot] = Some(Err(stale));
                continue;
            };
            let plan = match inner.plan(&claim.message, report, now) {
                Ok(p) => p,
                Err(e) => {
                    out[slot] = Some(Err(e));
                    continue;
                }
            };
            let mut item = Settling {
                slot,
                claim,
                guard,
                plan,
            };
            match place {
                Place::Delivery { consumer, tag } if consumer.alive() => {
                    by_channel
                        .entry(consumer.id)
                        .or_insert_with(|| (consumer.clone(), Vec::new()))
                        .1
                        .push((tag, item));
                }
                Place::Delivery { .. } => {
                    // Its channel died: the delivery went back to the queue.
                    inner.held.end(&item.claim, &mut item.guard);
                    out[slot] = Some(Err(stale));
                }
                Place::Custody { .. } => custody.push(item),
            }
        }
        if by_channel.is_empty() && custody.is_empty() {
            // Every claim was already void: no broker needed to say so.
            return Ok(out
                .into_iter()
                .map(|r| r.unwrap_or(Err(Error::backend_other("report not settled"))))
                .collect());
        }
        let link = inner.link().await?;
        let publishes: Vec<&Publish> = by_channel
            .values()
            .flat_map(|(_, items)| items.iter().flat_map(|(_, i)| &i.plan.publishes))
            .chain(custody.iter().flat_map(|i| &i.plan.publishes))
            .collect();
        inner.prepare(&link, &publishes).await?;
        if let Some(store) = &inner.results {
            // Each report's record is written before its commit, not after:
            // a commit sent is applied whenever it reaches the broker, even
            // after this call was abandoned (a worker stopping mid-outage)
            // or its process died, and a record written after it would then
            // never be — the task done, its record running for good. Written
            // first, a record is at most one step ahead: when the commit
            // never applies, the delivery comes back and the next
            // reservation writes the record again (see `results`).
            let records: Vec<TaskRecord> = by_channel
                .values()
                .flat_map(|(_, items)| items.iter().flat_map(|(_, i)| &i.plan.records))
                .chain(custody.iter().flat_map(|i| &i.plan.records))
                .cloned()
                .collect();
            if let Err(e) = store.put(&records, now).await {
                tracing::warn!(error = %e.chain(), "could not record settled tasks in the result store");
            }
        }
        for (_, (consumer, items)) in by_channel {
            let tx = consumer.tx.lock().await;
            // Every frame of the transaction is queued at once (in order:
            // the futures are polled first in order) rather than each
            // waiting for the one before it to be written; the broker
            // applies none of them before the commit, and a failure closes
            // the channel, so none of them at all.
            let sent = futures_util::future::join_all(
                items
                    .iter()
                    .map(|(tag, item)| inner.settle_delivery(&consumer, *tag, &item.plan)),
            )
            .await;
            let committed = match sent.into_iter().find_map(Result::err) {
                None => match commit(&consumer.health, &consumer.channel).await {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        // Make sure: a channel that lives on would hold the
                        // deliveries this report gives up on.
                        if consumer.alive() {
                            consumer.shut("conveyor: a commit failed").await;
                        }
                        Err((e, false))
                    }
                },
                Some(e) => Err((e, consumer.abandon().await)),
            };
            drop(tx);
            match committed {
                Ok(()) => {
                    consumer.settled(items.len());
                    for (_, mut item) in items {
                        out[item.slot] = Some(Ok(()));
                        inner.held.end(&item.claim, &mut item.guard);
                    }
                }
                Err((e, true)) => {
                    // Rolled back on a live channel: nothing applied and
                    // the deliveries are still this worker's.
                    tracing::warn!(error = %e.chain(), "settling failed before the commit; rolled back, the tasks are still held");
                    for (_, item) in &items {
                        out[item.slot] = Some(Err(again(&e)));
                    }
                }
                Err((e, false)) => {
                    // The channel died before the commit: nothing of this
                    // transaction applied, and its deliveries went back to
                    // their queue. Those claims are lost, not the tasks.
                    tracing::warn!(error = %e.chain(), "settling on a closed channel; its tasks will be delivered again");
                    consumer.settled(items.len());
                    for (_, mut item) in items {
                        out[item.slot] = Some(Err(Error::StaleLease(item.claim.message.id)));
                        inner.held.end(&item.claim, &mut item.guard);
                    }
                }
            }
        }
        for mut item in custody {
            let id = item.claim.message.id;
            let Some(spot) = item.guard.as_mut() else {
                continue;
            };
            let settled = crate::custody::settle(inner, &link, &item.claim, spot, item.plan).await;
            out[item.slot] = Some(match settled {
                Ok(()) => {
                    inner.held.end(&item.claim, &mut item.guard);
                    Ok(())
                }
                Err(Error::StaleLease(_)) => {
                    inner.held.end(&item.claim, &mut item.guard);
                    Err(Error::StaleLease(id))
                }
                // Still held, in the generation the settle left it in.
                Err(e) => Err(e),
            });
        }
        Ok(out
            .into_iter()
            .map(|r| r.unwrap_or(Err(Error::backend_other("report not settled"))))
            .collect())
    }

    fn set_slots(&self, slots: usize) {
        self.inner
            .slots
            .store(u64::try_from(slots).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn reconnects(&self) -> Option<u64> {
        Some(self.inner.opened.load(Ordering::Relaxed).saturating_sub(1))
    }

    fn result_store(&self) -> Result<&dyn ResultStore, Error> {
        match &self.inner.results {
            Some(r) => Ok(r as &dyn ResultStore),
            None => Err(Part::ResultStore.unsupported(self.kind())),
        }
    }

    async fn wait_for_work(&self, queues: &[String], timeout: Duration) -> bool {
        let waiting: Vec<Arc<QueueConsumer>> = {
            let consumers = self.inner.consumers.lock().await;
            let mut all = Vec::with_capacity(queues.len());
            for q in queues {
                match consumers.get(q) {
                    Some(c) if c.alive() => all.push(c.clone()),
                    // No consumer yet (or a dead one): reserve makes one.
                    _ => return false,
                }
            }
            all
        };
        if waiting.is_empty() {
            return false;
        }
        if waiting.iter().any(|c| c.has_work()) {
            return true;
        }
        let each = waiting.iter().map(|c| Box::pin(c.wait(timeout)));
        let _ = futures_util::future::select_all(each).await;
        true
    }
}
