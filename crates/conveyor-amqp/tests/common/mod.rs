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

/// The Redis the result-store tests keep records in (each under its test's
/// prefix; records expire with the retention).
pub fn results_url() -> String {
    std::env::var("CONVEYOR_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// A prefix no other test uses.
pub fn fresh_prefix() -> String {
    format!("t{}x{}", std::process::id(), fastrand::u32(..))
}

/// A backend on a fresh prefix with `options`' other settings.
pub async fn backend(options: AmqpOptions) -> AmqpBackend {
    AmqpBackend::connect(
        &amqp_url(),
        options.prefix(fresh_prefix()),
        Arc::new(SystemClock),
    )
    .await
    .expect("connect to the test RabbitMQ (127.0.0.1:5672)")
}

/// Another backend on the same prefix (another worker).
pub async fn peer(of: &AmqpBackend) -> AmqpBackend {
    AmqpBackend::connect(&amqp_url(), of.options().clone(), Arc::new(SystemClock))
        .await
        .expect("connect")
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

/// Drops the prefix's queues and ladder.
pub async fn cleanup(b: &AmqpBackend, queues: &[&str]) {
    b.delete_namespace(queues).await.expect("delete namespace");
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
        });
    })
    .join()
    .expect("clean-up thread");
}
