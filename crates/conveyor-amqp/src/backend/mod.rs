//! [`AmqpBackend`]: conveyor's backend contract on RabbitMQ.
//!
//! - `enqueue_many` publishes every task on a confirm-mode channel and returns
//!   once the broker confirmed them all (written to its quorum queues;
//!   [`enqueue`], [`publish`]);
//! - `reserve` hands out deliveries the queue's consumer has buffered; the
//!   broker may deliver only as many as the worker holds unsettled plus the
//!   free slots it asks for (`consumer`), so backpressure reaches the queue
//!   ([`reserve`]);
//! - `renew` checks each claim is still alive and rolls the custody copies
//!   of long tasks; a sweeper task moves each delivery held for `hold` into
//!   custody, on time (`custody`);
//! - `finish` acknowledges and publishes what follows each report in one
//!   transaction per consumer channel (`consumer`), each claim under its own
//!   lock so no renewal or move of the same task runs beside it (`claims`;
//!   [`settle`]).
//!
//! This file holds the backend, its connection and its consumers.
//!
//! There is no record of a task outside the messages themselves unless a
//! store beside the broker keeps them (see `records`): the broker
//! cannot list or count by task, and has no unique or ordering keys or
//! priorities; those are refused with [`Error::Unsupported`] (see
//! `docs/amqp.md`). With a store keeping the records, tasks are listed and
//! counted through it (`inspect`), and dead tasks requeued and purged
//! (`admin`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use conveyor_core::{
    async_trait, Administration, Backend, Capabilities, Clock, Enqueued, Error, Finish, Inspection,
    Lease, NewTask, Part, Registry, ReserveParams, Reserved, ResultStore, Schedules, ValueLimit,
    Workflows,
};

/// Why the amqp backend has no schedules.
pub(crate) const NO_SCHEDULES: &str =
    "the amqp backend does not support schedules: each fire time \
     must be enqueued once, and RabbitMQ cannot refuse a second publish of one (it has no \
     unique keys), so two leaders for a moment could run a fire twice; keep the schedules \
     on a store that can (embedded, PostgreSQL, Redis or NATS)";

use crate::claims::Claims;
use crate::consumer::QueueConsumer;
use crate::delay;
use crate::error::amqp_error;
use crate::hooks::Hooks;
use crate::link::Link;
use crate::names::Names;
use crate::options::AmqpOptions;
use crate::records::Records;

mod admin;
mod enqueue;
mod expire;
mod inspect;
mod publish;
mod reserve;
mod settle;

pub(crate) use inspect::without_keeper;
pub(crate) use publish::{ack, commit, publish_confirmed, publish_on, Publish};
pub(crate) use settle::Plan;

/// A RabbitMQ backend. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct AmqpBackend {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    nodes: crate::nodes::Nodes,
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
    /// The store beside the broker that keeps task records, if it has one.
    pub(crate) records: Option<Records>,
    /// The most bytes of params or result one task may carry.
    value_limit: ValueLimit,
    /// The worker's slots, once it said (0: not said).
    slots: AtomicU64,
    /// Pause points for tests (`test-hooks`).
    pub(crate) hooks: Hooks,
    /// The workflow graphs this process keeps decoded (`workflows`).
    pub(crate) graphs: conveyor_core::workflow::Graphs,
    /// The workflows maintenance found with nodes pending (`workflows`).
    pub(crate) pending: conveyor_core::workflow::entries::PendingWatch,
    /// The task that moves deliveries held for `hold` into custody
    /// (`custody::sweep`) and drops the kept records past their expiry
    /// (`expire`), stopped when the backend is dropped.
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

impl AmqpBackend {
    /// Connects to `url` (`amqp://USER:PASS@HOST:PORT/VHOST`, the client's
    /// own parameters only) with every name under `options.prefix`.
    pub async fn connect(
        url: &str,
        options: AmqpOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<AmqpBackend, Error> {
        Self::open(url, options, clock, None).await
    }

    /// [`AmqpBackend::connect`], with `keeper` keeping a record per task
    /// beside the broker: any backend with the record keeper and result
    /// store parts (a `RedisBackend`, under a prefix of its own), which then
    /// serves results, `wait()` and `conveyor show`. Records of finished
    /// tasks expire after `options.retention`. [`Error::InvalidConfig`] when
    /// `keeper` lacks either part.
    pub async fn connect_keeping(
        url: &str,
        options: AmqpOptions,
        clock: Arc<dyn Clock>,
        keeper: Arc<dyn Backend>,
    ) -> Result<AmqpBackend, Error> {
        let records = Records::new(keeper, options.retention)?;
        Self::open(url, options, clock, Some(records)).await
    }

    async fn open(
        url: &str,
        options: AmqpOptions,
        clock: Arc<dyn Clock>,
        records: Option<Records>,
    ) -> Result<AmqpBackend, Error> {
        options.validate()?;
        let value_limit = crate::value_limit::limit(options.max_value);
        let backend = AmqpBackend {
            inner: Arc::new(Inner {
                nodes: crate::nodes::Nodes::parse(url)?,
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
                records,
                value_limit,
                slots: AtomicU64::new(0),
                hooks: Hooks::default(),
                graphs: Default::default(),
                pending: Default::default(),
                sweeper: std::sync::Mutex::new(None),
            }),
        };
        backend.inner.link().await?;
        let sweeper = tokio::spawn({
            let (sweep, expire) = (
                Arc::downgrade(&backend.inner),
                Arc::downgrade(&backend.inner),
            );
            async move {
                tokio::join!(crate::custody::sweep(sweep), expire::expire(expire));
            }
        });
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

    /// The store beside the broker that keeps its task records, if it has
    /// one ([`AmqpBackend::connect_keeping`]).
    pub fn keeper(&self) -> Option<&Arc<dyn Backend>> {
        self.inner.records.as_ref().map(Records::keeper_backend)
    }

    /// Deletes what this backend declared under its prefix: the work and dead
    /// queues of `queues` (with every task in them) and the delay ladder.
    /// For tests and for retiring a namespace; custody queues expire alone,
    /// and so do the records kept beside the broker (or delete the keeper's
    /// own namespace).
    pub async fn delete_namespace(&self, queues: &[&str]) -> Result<(), Error> {
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

/// Runs `futures` together (their requests go out at once): the outputs,
/// in order.
pub(crate) async fn all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    futures_util::future::join_all(futures).await
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
        let link = Arc::new(self.nodes.open(generation, self.anchored.clone()).await?);
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
            // The records kept beside the broker cannot tell attempts
            // apart honestly (see `records.rs`).
            history: false,
            // With `results=`: the keeper expires each record at its own
            // time. Without, there is no record to keep.
            keep: self.inner.records.is_some(),
            failover: crate::FAILOVER,
        }
    }

    async fn enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, Error> {
        self.inner.enqueue(tasks).await
    }

    /// Honours [`ReserveParams::handlers`] the way a broker can: a delivery
    /// of another handler is sent round a second (`UNWANTED_DELAY`) of the delay
    /// ladder, unchanged, and the reservation goes on with the next.
    async fn reserve(&self, params: ReserveParams<'_>) -> Result<Vec<Reserved>, Error> {
        self.inner.reserve(params).await
    }

    async fn renew(&self, leases: &[Lease], lease: Duration) -> Result<Vec<bool>, Error> {
        let mut out = Vec::with_capacity(leases.len());
        for l in leases {
            out.push(crate::custody::renew(&self.inner, l, lease).await);
        }
        Ok(out)
    }

    async fn finish(&self, reports: Vec<Finish>) -> Result<Vec<Result<(), Error>>, Error> {
        self.inner.finish(reports).await
    }

    fn set_slots(&self, slots: usize) {
        self.inner
            .slots
            .store(u64::try_from(slots).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn reconnects(&self) -> Option<u64> {
        Some(self.inner.opened.load(Ordering::Relaxed).saturating_sub(1))
    }

    /// Itself, when a store beside the broker keeps the records (see
    /// `inspect`); else a refusal saying to add one.
    fn inspection(&self) -> Result<&dyn Inspection, Error> {
        self.kept("inspection (listing and counting tasks)")?;
        Ok(self)
    }

    /// Itself, when a store beside the broker keeps the records (see
    /// `admin`: requeue and purge dead tasks; cancel is refused); else a
    /// refusal saying to add one.
    fn administration(&self) -> Result<&dyn Administration, Error> {
        self.kept("administration (requeueing and purging dead tasks)")?;
        Ok(self)
    }

    /// The keeper's, when a store beside the broker keeps the records: the
    /// workers of this backend register there (under the keeper's prefix,
    /// beside that store's own workers, if any), so `conveyor status` lists
    /// them and tasks no live worker serves are told apart.
    fn registry(&self) -> Result<&dyn Registry, Error> {
        match &self.inner.records {
            Some(r) => r.keeper_backend().registry(),
            None => Err(Part::Registry.unsupported(self.kind())),
        }
    }

    /// Itself, when a store beside the broker keeps the records (the
    /// workflows are kept there: `workflows`); else a refusal saying to
    /// add one.
    fn workflows(&self) -> Result<&dyn Workflows, Error> {
        self.kept("workflows")?;
        Ok(self)
    }

    /// Absent, with its reason: a fire time must be enqueued once, and
    /// RabbitMQ cannot refuse a second publish of one (it has no unique
    /// keys), so two leaders for a moment could run one fire twice.
    fn schedules(&self) -> Result<&dyn Schedules, Error> {
        Err(Error::Unsupported(NO_SCHEDULES.to_string()))
    }

    /// The keeper's, when a store beside the broker keeps the records.
    fn result_store(&self) -> Result<&dyn ResultStore, Error> {
        match &self.inner.records {
            Some(r) => r.store(),
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
