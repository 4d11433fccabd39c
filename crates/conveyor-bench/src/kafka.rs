//! Kafka consumption, side by side on one broker: Parallel Consumer's published
//! scenario (10,000 messages over 1,000 keys, each taking a random 0–5 ms) in
//! key, partition and unordered mode, against a plain sequential rdkafka
//! consumer loop; plus no-op throughput against the same loop.
//!
//! Each subject reads the same topic in its own consumer group. Time runs from
//! the first message handed to a handler to the last one finished, so the
//! group join (seconds, and not what is compared) is left out; it is printed
//! apart. Needs a broker (`scripts/kafka-broker.sh start`).

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use conveyor::{Handler, TaskError};
use conveyor_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use conveyor_kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use conveyor_kafka::rdkafka::ClientConfig;
use conveyor_kafka::rdkafka::Message as _;
use conveyor_kafka::{ConsumerConfig, KafkaConsumer, Message, Ordering};

use crate::report::Report;

const PARTITIONS: i32 = 12;

/// What a handler does with a message.
#[derive(Clone, Copy)]
enum Work {
    /// Nothing.
    Noop,
    /// Sleeps a random 0–5 ms (seeded per offset: every subject gets the same
    /// sleep for the same message).
    Sleep,
}

impl Work {
    fn duration(self, m: &Message) -> Duration {
        match self {
            Work::Noop => Duration::ZERO,
            Work::Sleep => {
                let mut rng =
                    fastrand::Rng::with_seed((m.partition() as u64) << 40 ^ m.offset() as u64);
                Duration::from_micros(rng.u64(0..=5_000))
            }
        }
    }
}

/// First start and last finish of a run, and how many finished; lock-free,
/// so the clock adds no contention between the handlers it times.
struct Clock {
    base: Instant,
    first: OnceLock<Instant>,
    /// CPU time (ours and the broker's) when the first message started.
    cpu: OnceLock<Cpu>,
    /// Nanoseconds from `base` to the latest finish.
    last: AtomicU64,
    done: AtomicU64,
}

impl Default for Clock {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            first: OnceLock::new(),
            cpu: OnceLock::new(),
            last: AtomicU64::new(0),
            done: AtomicU64::new(0),
        }
    }
}

impl Clock {
    fn start(&self) {
        if self.first.get().is_none() {
            // Read before the clock starts, so the read is not timed.
            let _ = self.cpu.set(Cpu::now());
            let _ = self.first.set(Instant::now());
        }
    }
    /// CPU per message from the first start to now (call it once all `n`
    /// finished).
    fn cpu_per(&self, n: u64) -> String {
        self.cpu.get().map(|c| c.per(n)).unwrap_or_default()
    }
    fn finish(&self) {
        let at = self.base.elapsed().as_nanos() as u64;
        self.last.fetch_max(at, AtomicOrdering::Relaxed);
        self.done.fetch_add(1, AtomicOrdering::SeqCst);
    }
    fn elapsed(&self) -> f64 {
        let last = self.last.load(AtomicOrdering::SeqCst);
        match self.first.get() {
            Some(f) if last > 0 => {
                let last = self.base + Duration::from_nanos(last);
                last.saturating_duration_since(*f).as_secs_f64()
            }
            _ => f64::NAN,
        }
    }
}

fn group(name: &str) -> String {
    format!("bench-{name}-{:08x}", fastrand::u32(..))
}

/// Runs the Kafka benchmarks against `brokers`.
pub async fn run(report: &mut Report, quick: bool, brokers: &str) {
    let n: u64 = if quick { 2_000 } else { 10_000 };
    let keys = if quick { 200 } else { 1_000 };
    let noop_n: u64 = if quick { 10_000 } else { 50_000 };
    let topic = format!("bench-work-{:08x}", fastrand::u32(..));
    let noop_topic = format!("bench-noop-{:08x}", fastrand::u32(..));
    let created =
        conveyor_kafka::create_topics(brokers, &[(&topic, PARTITIONS), (&noop_topic, PARTITIONS)])
            .await;
    if let Err(e) = created {
        report.note(format!(
            "kafka: cannot create topics on {brokers}: {e}; skipped"
        ));
        return;
    }
    let b = brokers.to_string();
    let (t1, t2) = (topic.clone(), noop_topic.clone());
    let produced = tokio::task::spawn_blocking(move || {
        produce(&b, &t1, n, keys)?;
        produce(&b, &t2, noop_n, keys)
    })
    .await;
    if !matches!(produced, Ok(Ok(()))) {
        report.note("kafka: producing the test records failed; skipped");
        return;
    }

    let bench = format!("kafka {n} msgs 0-5ms {keys} keys");
    let (base, _) = sequential(brokers, &topic, n, Work::Sleep).await;
    report.add(&bench, "rdkafka sequential loop", base, "s");
    let ahead = conveyor_kafka::DEFAULT_READ_AHEAD;
    for (name, ordering, limit, read_ahead) in [
        ("conveyor key, 1000 in flight", Ordering::Key, 1000, ahead),
        (
            "conveyor key, 1000, read-ahead 1000",
            Ordering::Key,
            1000,
            1000,
        ),
        ("conveyor key, 50 in flight", Ordering::Key, 50, ahead),
        ("conveyor partition", Ordering::Partition, 1000, ahead),
        ("conveyor unordered, 1000", Ordering::Unordered, 1000, ahead),
    ] {
        let (t, _) = conveyor(
            brokers,
            &topic,
            n,
            ordering,
            (limit, read_ahead),
            Work::Sleep,
        )
        .await;
        report.add_vs(&bench, name, t, "s", "rdkafka sequential loop", base / t);
    }

    let bench = format!("kafka no-op {noop_n} msgs");
    let (base, _) = sequential(brokers, &noop_topic, noop_n, Work::Noop).await;
    report.add(
        &bench,
        "rdkafka sequential loop",
        noop_n as f64 / base,
        "msg/s",
    );
    for (name, ordering, read_ahead) in [
        ("conveyor unordered, 1000", Ordering::Unordered, ahead),
        ("conveyor key, 1000", Ordering::Key, ahead),
        (
            "conveyor unordered, read-ahead 1000",
            Ordering::Unordered,
            1000,
        ),
    ] {
        let (t, _) = conveyor(
            brokers,
            &noop_topic,
            noop_n,
            ordering,
            (1000, read_ahead),
            Work::Noop,
        )
        .await;
        report.add_vs(
            &bench,
            name,
            noop_n as f64 / t,
            "msg/s",
            "rdkafka sequential loop",
            base / t,
        );
    }
    report.note(format!(
        "kafka: {PARTITIONS} partitions; time from the first message handed to a handler to the \
         last finished (group joins excluded); Parallel Consumer publishes 2.06 s for the key-mode \
         scenario; at the limit the consumer holds (the client keeps its prefetch) and pauses \
         only after pause_after (1 s), since a pause makes librdkafka drop its prefetch and fetch \
         it again; the baseline sleeps with thread::sleep, conveyor's \
         io handler with tokio's 1 ms timer"
    ));
}

/// No-op throughput alone: produces `n` records once, then alternates the
/// bare loop and conveyor (unordered and key order with the default
/// read-ahead, and unordered with a read-ahead of a million, never full;
/// 1,000 in flight) for `rounds` rounds, each in a new group; prints each
/// rate and its ratio to the bare loop of the same round.
pub async fn noop_rounds(brokers: &str, n: u64, rounds: u32) {
    let topic = format!("bench-noop-{:08x}", fastrand::u32(..));
    if let Err(e) = conveyor_kafka::create_topics(brokers, &[(&topic, PARTITIONS)]).await {
        eprintln!("kafka: cannot create a topic on {brokers}: {e}");
        return;
    }
    let (b, t) = (brokers.to_string(), topic.clone());
    if !matches!(
        tokio::task::spawn_blocking(move || produce(&b, &t, n, 1_000)).await,
        Ok(Ok(()))
    ) {
        eprintln!("kafka: producing the records failed");
        return;
    }
    let ahead = conveyor_kafka::DEFAULT_READ_AHEAD;
    let mut ratios: Vec<(&str, Vec<f64>)> = vec![
        ("unordered", vec![]),
        ("key", vec![]),
        ("unordered, read-ahead 1M", vec![]),
    ];
    for round in 1..=rounds {
        let (t, cpu) = sequential(brokers, &topic, n, Work::Noop).await;
        let base = n as f64 / t;
        println!("round {round}: bare loop {base:.0} msg/s, {cpu}");
        for (name, ordering, ahead) in [
            ("unordered", Ordering::Unordered, ahead),
            ("key", Ordering::Key, ahead),
            ("unordered, read-ahead 1M", Ordering::Unordered, 1_000_000),
        ] {
            let (t, cpu) = conveyor(brokers, &topic, n, ordering, (1000, ahead), Work::Noop).await;
            let rate = n as f64 / t;
            println!(
                "round {round}: conveyor {name} {rate:.0} msg/s = {:.2}x, {cpu}",
                rate / base
            );
            if let Some((_, r)) = ratios.iter_mut().find(|(m, _)| *m == name) {
                r.push(rate / base);
            }
        }
    }
    for (name, r) in ratios {
        println!(
            "median conveyor {name} / bare loop: {:.2}x",
            crate::report::median(&r)
        );
    }
}

/// CPU time of this process and of the broker (tansu) since a start.
struct Cpu {
    own: f64,
    broker: f64,
}

impl Cpu {
    fn now() -> Self {
        Self {
            own: crate::cpu_time::own(),
            broker: crate::cpu_time::of_processes("tansu"),
        }
    }

    /// Microseconds of CPU per message since `self`, ours and the broker's.
    fn per(&self, n: u64) -> String {
        let now = Self::now();
        let us = |a: f64, b: f64| (b - a) / n as f64 * 1e6;
        format!(
            "CPU/msg {:.1} us here, {:.1} us broker",
            us(self.own, now.own),
            us(self.broker, now.broker)
        )
    }
}

fn produce(brokers: &str, topic: &str, n: u64, keys: u64) -> Result<(), String> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .map_err(|e| e.to_string())?;
    for i in 0..n {
        let key = format!("key-{}", i % keys);
        let payload = format!("{{\"seq\":{i}}}");
        let mut record = BaseRecord::to(topic).key(&key).payload(&payload);
        while let Err((_, r)) = producer.send(record) {
            record = r;
            producer.poll(Duration::from_millis(5));
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| e.to_string())
}

/// The baseline: one loop that polls a message and processes it, in turn.
/// Returns the time from the first message started to the last finished,
/// and the CPU per message over that time.
async fn sequential(brokers: &str, topic: &str, n: u64, work: Work) -> (f64, String) {
    let brokers = brokers.to_string();
    let topic = topic.to_string();
    let joined = Instant::now();
    let res = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", group("seq"))
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .create()
            .map_err(|e| e.to_string())?;
        consumer.subscribe(&[&topic]).map_err(|e| e.to_string())?;
        let clock = Clock::default();
        let deadline = Instant::now() + Duration::from_secs(600);
        while clock.done.load(AtomicOrdering::SeqCst) < n && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                clock.start();
                let owned = Message::new(m.topic(), m.partition(), m.offset(), None, None);
                std::thread::sleep(work.duration(&owned));
                clock.finish();
            }
        }
        Ok::<_, String>((clock.elapsed(), clock.cpu_per(n)))
    })
    .await;
    eprintln!(
        "    (sequential run incl. join: {:.1} s)",
        joined.elapsed().as_secs_f64()
    );
    match res {
        Ok(Ok(t)) => t,
        _ => (f64::NAN, String::new()),
    }
}

/// conveyor-kafka with an io handler; returns as [`sequential`].
async fn conveyor(
    brokers: &str,
    topic: &str,
    n: u64,
    ordering: Ordering,
    (limit, read_ahead): (usize, usize),
    work: Work,
) -> (f64, String) {
    let clock = Arc::new(Clock::default());
    let c = clock.clone();
    let handler = Handler::io("bench", move |m: Message, _ctx| {
        let c = c.clone();
        async move {
            c.start();
            let d = work.duration(&m);
            if !d.is_zero() {
                tokio::time::sleep(d).await;
            }
            c.finish();
            Ok::<_, TaskError>(())
        }
    });
    let mut config = ConsumerConfig::new(brokers, group("conveyor"), [topic])
        .ordering(ordering)
        .max_in_flight(limit)
        .read_ahead(read_ahead)
        .session_timeout(Duration::from_secs(6));
    // For experiments: librdkafka properties as `k=v,k=v`.
    if let Ok(props) = std::env::var("CONVEYOR_BENCH_KAFKA_PROPERTIES") {
        for (k, v) in props.split(',').filter_map(|kv| kv.split_once('=')) {
            config = config.property(k, v);
        }
    }
    let consumer = match KafkaConsumer::builder(config).handler(handler) {
        Ok(c) => c,
        Err(_) => return (f64::NAN, String::new()),
    };
    let handle = consumer.handle();
    let joined = Instant::now();
    let running = tokio::spawn(consumer.run());
    let deadline = Instant::now() + Duration::from_secs(600);
    while clock.done.load(AtomicOrdering::SeqCst) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cpu = clock.cpu_per(n);
    let pauses = handle.metrics().counters.pauses;
    handle.shutdown();
    let _ = running.await;
    eprintln!(
        "    (run incl. join and shutdown: {:.1} s; {pauses} pauses at the limit)",
        joined.elapsed().as_secs_f64()
    );
    (clock.elapsed(), cpu)
}
