//! The consumer: a builder that joins a handler to a configuration, a handle to
//! stop it and read its metrics, and `run`, which drives it until stopped: the
//! polling thread feeds the read-ahead, and conveyor's runner (the one that
//! runs every source) executes the records and settles them here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rdkafka::consumer::{BaseConsumer, Consumer};

use std::time::Duration;

use conveyor::events::EventBus;
use conveyor::source::{CallbackQueue, Routes, Runner, RunnerStats};
use conveyor::{Handler, Pool};

use crate::admin::create_topics;
use crate::config::ConsumerConfig;
use crate::consumer_state::{ConsumerState, Record};
use crate::context::Ctx;
use crate::dead_letter::DeadLetterWriter;
use crate::decode::{self, Decoder};
use crate::error::Error;
use crate::message::Message;
use crate::metrics::{Completion, ConsumerMetrics, Counters};
use crate::source::KafkaSource;

/// Builds a [`KafkaConsumer`].
pub struct ConsumerBuilder {
    config: ConsumerConfig,
    pool: Option<Pool>,
    observer: Option<crate::consumer_state::Observer>,
    events: EventBus,
}

/// How many finished messages may wait for a slow `on_complete`.
const OBSERVER_CAPACITY: usize = 10_000;

impl std::fmt::Debug for ConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ConsumerBuilder {
    /// Runs the handlers on this pool instead of one of the consumer's own
    /// (which has `max_in_flight` workers).
    pub fn pool(mut self, pool: Pool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Emits the consumer's lifecycle events (records started, succeeded,
    /// retried, dead-lettered…; partitions paused and resumed) on `bus`
    /// instead of a bus of its own (see [`KafkaConsumer::events`]).
    pub fn events(mut self, bus: EventBus) -> Self {
        self.events = bus;
        self
    }

    /// Called with every finished message (succeeded, discarded,
    /// dead-lettered or cancelled) on a thread of its own, after the message
    /// is settled: a slow callback never delays a commit or a slot. One that
    /// falls more than 10,000 messages behind misses the ones that do not fit
    /// (logged).
    pub fn on_complete(mut self, f: impl Fn(&Completion) + Send + Sync + 'static) -> Self {
        self.observer = Some(Box::new(move |c: Completion| f(&c)));
        self
    }

    /// A consumer whose handler takes the records themselves.
    pub fn handler<Out: Send + 'static>(
        self,
        handler: Handler<Message, Out>,
    ) -> Result<KafkaConsumer, Error> {
        self.handler_with(handler, decode::raw())
    }

    /// A consumer that decodes each record with `decoder` (see [`decode`]) and
    /// runs `handler` on the result; records that do not decode go to the
    /// dead-letter topic.
    pub fn handler_with<In, Out>(
        self,
        handler: Handler<In, Out>,
        decoder: Decoder<In>,
    ) -> Result<KafkaConsumer, Error>
    where
        In: Clone + Send + 'static,
        Out: Send + 'static,
    {
        self.config.validate()?;
        let dead_letters = DeadLetterWriter::new(
            &self.config.brokers,
            &self.config.group,
            &self.config.properties,
        )?;
        let observer = match self.observer {
            Some(f) => Some(
                CallbackQueue::spawn("conveyor-kafka-complete", OBSERVER_CAPACITY, f)
                    .map_err(|e| Error::Thread(e.to_string()))?,
            ),
            None => None,
        };
        let name: Arc<str> = Arc::from(handler.name());
        let mut routes = Routes::new();
        routes.add(
            handler,
            move |r: &Arc<Record>| decoder(&r.message),
            |_: &Out| Ok(None),
        );
        let shared = ConsumerState::new(self.config, dead_letters, observer, name);
        Ok(KafkaConsumer {
            shared,
            pool: self.pool,
            routes,
            stop: Arc::new(AtomicBool::new(false)),
            events: self.events,
        })
    }
}

/// A Kafka consumer whose messages run on conveyor's engine.
///
/// ```no_run
/// use conveyor::{Handler, RetryPolicy, TaskError};
/// use conveyor_kafka::{ConsumerConfig, KafkaConsumer, Message, Ordering};
///
/// # async fn demo() -> Result<(), conveyor_kafka::Error> {
/// let config = ConsumerConfig::new("127.0.0.1:9092", "billing", ["orders"])
///     .ordering(Ordering::Key)
///     .max_in_flight(50);
/// let handler = Handler::io("charge", |m: Message, _ctx| async move {
///     println!("{} {:?}", m.offset(), m.payload_str());
///     Ok::<_, TaskError>(())
/// })
/// .retry(RetryPolicy::attempts(3));
/// let consumer = KafkaConsumer::builder(config).handler(handler)?;
/// let handle = consumer.handle();
/// tokio::spawn(async move {
///     let _ = tokio::signal::ctrl_c().await;
///     handle.shutdown();
/// });
/// let report = consumer.run().await?;
/// println!("{} succeeded", report.runner.completed);
/// # Ok(()) }
/// ```
pub struct KafkaConsumer {
    shared: Arc<ConsumerState>,
    pool: Option<Pool>,
    routes: Routes<Arc<Record>>,
    stop: Arc<AtomicBool>,
    events: EventBus,
}

impl std::fmt::Debug for KafkaConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConsumer")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// Stops a running consumer and reads its metrics; clone it freely.
#[derive(Clone)]
pub struct ConsumerHandle {
    shared: Arc<ConsumerState>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for ConsumerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerHandle")
            .field("stopping", &self.stop.load(Ordering::Relaxed))
            .finish()
    }
}

impl ConsumerHandle {
    /// Asks the consumer to stop: no new messages; in-flight ones get the
    /// shutdown grace period; safe offsets are committed; the group is left.
    /// [`KafkaConsumer::run`] returns when that is done.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// A snapshot of the consumer's metrics.
    pub fn metrics(&self) -> ConsumerMetrics {
        self.shared.metrics()
    }
}

/// What a consumer did, returned by [`KafkaConsumer::run`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunReport {
    /// What Kafka alone counts, at the end.
    pub counters: Counters,
    /// The executor's counts at the end (`released`: messages whose work was
    /// cancelled by a revoke or the end of the shutdown grace; they were not
    /// committed).
    pub runner: RunnerStats,
}

impl KafkaConsumer {
    /// Starts building a consumer for `config`.
    pub fn builder(config: ConsumerConfig) -> ConsumerBuilder {
        ConsumerBuilder {
            config,
            pool: None,
            observer: None,
            events: EventBus::new(),
        }
    }

    /// The consumer's event bus: subscribe before [`KafkaConsumer::run`] to
    /// hear every event.
    pub fn events(&self) -> EventBus {
        self.events.clone()
    }

    /// A handle to stop the consumer and read its metrics.
    pub fn handle(&self) -> ConsumerHandle {
        ConsumerHandle {
            shared: self.shared.clone(),
            stop: self.stop.clone(),
        }
    }

    /// Joins the group and processes messages until [`ConsumerHandle::shutdown`].
    /// Must be called inside a tokio runtime (the handlers' io lane runs on it).
    pub async fn run(self) -> Result<RunReport, Error> {
        let shared = self.shared;
        let config = shared.config.clone();
        let source = KafkaSource {
            shared: shared.clone(),
        };
        let mut runner = Runner::new(source, self.routes)
            .slots(config.max_in_flight)
            .fetch_batch(config.max_in_flight)
            .poll_interval(Duration::from_millis(100))
            .grace(config.shutdown_grace)
            .with_events(self.events);
        if let Some(pool) = self.pool {
            runner = runner.shared_pool(pool);
        }
        let _ = shared.runner.set(runner.handle());
        let polling = start(&shared, &config, self.stop).await?;
        // The polling thread decides when to stop: it drains (the runner
        // still settling meanwhile), commits, and cancels what is left; then
        // the runner stops too.
        let died = Arc::new(AtomicBool::new(false));
        let d = died.clone();
        let run = runner
            .run_until(async move {
                if polling.await.is_err() {
                    d.store(true, Ordering::Release);
                }
            })
            .await;
        // Whatever happened, cancel what still runs and flush dead letters.
        shared.end(Duration::from_secs(5));
        let report = run?;
        if died.load(Ordering::Acquire) {
            return Err(Error::Thread("the polling thread died".into()));
        }
        Ok(RunReport {
            counters: shared.metrics().counters,
            runner: report.stats,
        })
    }
}

/// Creates the dead-letter topics, the client, subscribes and starts the
/// polling thread; the receiver fires when the thread is done.
async fn start(
    shared: &Arc<ConsumerState>,
    config: &ConsumerConfig,
    stop: Arc<AtomicBool>,
) -> Result<tokio::sync::oneshot::Receiver<()>, Error> {
    let dead: Vec<String> = config
        .topics
        .iter()
        .filter_map(|t| config.dead_letter.topic_for(t))
        .collect();
    let dead: Vec<(&str, i32)> = dead.iter().map(|t| (t.as_str(), 1)).collect();
    if let Err(e) = create_topics(&config.brokers, &dead).await {
        tracing::warn!(error = %e, "could not create the dead-letter topics; writes to them may fail");
    }
    let consumer: BaseConsumer<Ctx> = config.client_config().create_with_context(Ctx {
        shared: shared.clone(),
    })?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    let consumer = Arc::new(consumer);
    shared.attach(&consumer);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread_shared = shared.clone();
    std::thread::Builder::new()
        .name("conveyor-kafka-poll".into())
        .spawn(move || {
            crate::poll::run(thread_shared, consumer, stop);
            let _ = tx.send(());
        })
        .map_err(|e| Error::Thread(e.to_string()))?;
    Ok(rx)
}
