//! Shared by the RabbitMQ tests: the machine's broker, a fresh prefix per
//! test, and reserving until tasks arrive (deliveries are pushed, so a task
//! enqueued a moment ago may not be in the consumer's buffer yet).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor_amqp::{AmqpBackend, AmqpOptions};
use conveyor_core::{Backend, ReserveParams, Reserved, SystemClock};

/// The broker every test shares (its own prefix each).
pub fn amqp_url() -> String {
    std::env::var("CONVEYOR_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The Redis that keeps task records beside the broker in the tests
/// (each test's under its own prefix).
pub fn results_url() -> String {
    std::env::var("CONVEYOR_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// The Redis prefix of the records kept for the RabbitMQ prefix `prefix`.
pub fn records_prefix(prefix: &str) -> String {
    format!("{prefix}:records:")
}

/// The store beside the broker for the RabbitMQ prefix `prefix`: the shared
/// Redis under [`records_prefix`].
pub async fn records_store(prefix: &str) -> conveyor_redis::RedisBackend {
    records_store_at(&results_url(), prefix).await
}

/// [`records_store`] on the Redis at `url` (the shared one behind a proxy).
pub async fn records_store_at(url: &str, prefix: &str) -> conveyor_redis::RedisBackend {
    conveyor_redis::RedisBackend::connect_with(url, &records_prefix(prefix), Arc::new(SystemClock))
        .await
        .unwrap_or_else(|e| panic!("connect to the test Redis at {url}: {e}"))
}

/// [`records_store`], as the keeper a backend takes.
pub async fn keeper(prefix: &str) -> Arc<dyn Backend> {
    Arc::new(records_store(prefix).await)
}

/// Connects to `url` with `options`, keeping records in the shared Redis
/// under the options' prefix when `keeping`.
pub async fn connect(url: &str, options: AmqpOptions, keeping: bool) -> AmqpBackend {
    let connected = if keeping {
        let keeper = keeper(&options.prefix).await;
        AmqpBackend::connect_keeping(url, options, Arc::new(SystemClock), keeper).await
    } else {
        AmqpBackend::connect(url, options, Arc::new(SystemClock)).await
    };
    connected.unwrap_or_else(|e| panic!("connect to the test RabbitMQ at {url}: {e}"))
}

/// [`backend`], with a store beside the broker keeping its task records.
pub async fn backend_keeping(options: AmqpOptions) -> AmqpBackend {
    connect(&amqp_url(), options.prefix(fresh_prefix()), true).await
}

/// A prefix no other test uses.
pub fn fresh_prefix() -> String {
    format!("t{}x{}", std::process::id(), fastrand::u32(..))
}

/// A backend on a fresh prefix with `options`' other settings.
pub async fn backend(options: AmqpOptions) -> AmqpBackend {
    connect(&amqp_url(), options.prefix(fresh_prefix()), false).await
}

/// Another backend on the same prefix (another worker), keeping records
/// where `of` does.
pub async fn peer(of: &AmqpBackend) -> AmqpBackend {
    connect(&amqp_url(), of.options().clone(), of.keeper().is_some()).await
}

/// The default queue.
pub fn queues() -> Vec<String> {
    vec![conveyor_core::DEFAULT_QUEUE.to_string()]
}

/// Reserves until `n` tasks came or `within` passed.
pub async fn reserve_n(b: &AmqpBackend, n: usize, within: Duration) -> Vec<Reserved> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        let more = b
            .reserve(ReserveParams::new(
                &queues(),
                n - got.len(),
                Duration::from_secs(30),
            ))
            .await
            .expect("reserve");
        if more.is_empty() {
            b.wait_for_work(&queues(), Duration::from_millis(100)).await;
        }
        got.extend(more);
    }
    got
}

/// Reserves for `quiet`, expecting nothing.
pub async fn nothing_for(b: &AmqpBackend, quiet: Duration) -> bool {
    reserve_n(b, 1, quiet).await.is_empty()
}

/// Drops the prefix's queues and ladder, and the records kept for it.
pub async fn cleanup(b: &AmqpBackend, queues: &[&str]) {
    b.delete_namespace(queues).await.expect("delete namespace");
    forget_records(b.prefix()).await;
}

/// Deletes the records kept for the RabbitMQ prefix `prefix`.
pub async fn forget_records(prefix: &str) {
    let redis = records_store(prefix).await;
    redis.clear().await.expect("delete the kept records");
}

/// Deletes a prefix's queues from outside any runtime (a `Drop`): its own
/// thread, runtime and connection.
pub fn delete_namespace_blocking(options: AmqpOptions, queues: &'static [&'static str]) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let b = AmqpBackend::connect(&amqp_url(), options, Arc::new(SystemClock))
                .await
                .expect("connect to clean up");
            b.delete_namespace(queues)
                .await
                .expect("delete the test queues");
            b.close().await;
            forget_records(b.prefix()).await;
        });
    })
    .join()
    .expect("clean-up thread");
}
