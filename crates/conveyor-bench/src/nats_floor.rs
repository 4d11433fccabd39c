//! The JetStream floor under conveyor's NATS backend: bare async-nats on the
//! same server, no ledger. A work-queue stream of its own (deleted after),
//! `n` small messages published with their acks awaited in chunks, then
//! one durable pull consumer fetching in batches and acking every message.
//! Only the consuming part is timed, as conveyor's `processed` rows time
//! only the worker, and it stops when the server has taken every ack (the
//! stream is empty). What conveyor adds on top per task (the ledger's
//! compare-and-sets, a read, the listings) is the distance between the
//! two figures.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use futures_util::StreamExt;

use crate::report::Report;

/// Messages fetched per pull request (conveyor's 500-slot worker asks for
/// up to 500 at once too).
const BATCH: usize = 500;
/// Publishes in flight before their acks are awaited.
const IN_FLIGHT: usize = 1_000;
/// The longest the consuming half may take.
const LIMIT: Duration = Duration::from_secs(120);

/// Publishes `n` messages, then fetches and acks them all: acked
/// messages/s of the second half, or why it could not run.
pub async fn measure(url: &str, n: usize) -> Result<f64, String> {
    let server = url.split('?').next().unwrap_or(url);
    let client = tokio::time::timeout(Duration::from_secs(10), async_nats::connect(server))
        .await
        .map_err(|_| format!("no NATS server answered at {server}"))?
        .map_err(|e| format!("connect: {e}"))?;
    let js = jetstream::new(client.clone());
    let name = crate::namespace::unique("conveyor_bench_floor", '_');
    let subject = format!("{name}.work");
    let created = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("create the stream: {e}"));
    let result = match created {
        Ok(s) => run(&js, &s, &subject, n).await,
        Err(e) => Err(e),
    };
    let _ = js.delete_stream(&name).await;
    result
}

async fn run(
    js: &jetstream::Context,
    stream: &stream::Stream,
    subject: &str,
    n: usize,
) -> Result<f64, String> {
    let mut sent = 0;
    while sent < n {
        let mut acks = Vec::with_capacity(IN_FLIGHT);
        for i in sent..n.min(sent + IN_FLIGHT) {
            let ack = js
                .publish(subject.to_string(), i.to_string().into())
                .await
                .map_err(|e| format!("publish: {e}"))?;
            acks.push(ack.into_future());
        }
        sent += acks.len();
        for ack in futures_util::future::join_all(acks).await {
            ack.map_err(|e| format!("publish ack: {e}"))?;
        }
    }
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("floor".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 100_000,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("create the consumer: {e}"))?;
    let t = Instant::now();
    let mut acked = 0;
    while acked < n {
        let batch = consumer
            .fetch()
            .max_messages(BATCH)
            .messages()
            .await
            .map_err(|e| format!("fetch: {e}"))?;
        let mut batch = std::pin::pin!(batch);
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| format!("fetch: {e}"))?;
            m.ack().await.map_err(|e| format!("ack: {e}"))?;
            acked += 1;
        }
        if t.elapsed() > LIMIT {
            return Err(format!("only {acked} of {n} messages came in {LIMIT:?}"));
        }
    }
    // An ack is a plain publish: the clock stops once the server has taken
    // every one (the work-queue stream is empty), not when they were sent.
    let mut stream = stream.clone();
    loop {
        let info = stream
            .info()
            .await
            .map_err(|e| format!("stream info: {e}"))?;
        if info.state.messages == 0 {
            break;
        }
        if t.elapsed() > LIMIT {
            return Err(format!(
                "{} messages still unacked after {LIMIT:?}",
                info.state.messages
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// The floor on the server of `url` for `n` messages, printed beside
/// conveyor's `processed` rates with their ratios to it (as the amqp rows
/// print Celery beside conveyor).
pub async fn beside(
    report: &mut Report,
    bench: &str,
    url: &str,
    n: usize,
    processed: &[crate::queue::Processed],
) {
    let floor = crate::queue::Floor {
        subject: "bare async-nats fetch+ack",
        unit: "msgs/s",
        versus: "vs bare JetStream",
        baseline: "bare async-nats",
    };
    floor.report(report, bench, measure(url, n).await, processed);
}
