//! Params and results at, just under and just over the value limit
//! (`conveyor_testkit::value_limits`), set low by `max_value` (results kept
//! in the result store beside the broker); the default is RabbitMQ's
//! default `max_message_size` less room for a message's properties.

mod common;

use std::sync::Arc;

use conveyor_amqp::AmqpOptions;
use conveyor_core::Backend;
use conveyor_testkit::value_limits;

const CAP: usize = 64 << 10;

async fn capped() -> (Arc<dyn Backend>, conveyor_amqp::AmqpBackend) {
    let options = AmqpOptions {
        max_value: Some(CAP),
        ..AmqpOptions::default()
    };
    let b = common::backend_keeping(options).await;
    assert_eq!(b.max_value(), CAP);
    (Arc::new(b.clone()), b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_at_a_cap() {
    let (store, b) = capped().await;
    value_limits::values_at_the_limit(store, CAP).await;
    common::cleanup(&b, &[conveyor_core::DEFAULT_QUEUE]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stores_a_result_over_the_cap_as_the_attempts_failure() {
    let (store, b) = capped().await;
    value_limits::a_worker_stores_the_refusal(store, CAP).await;
    common::cleanup(&b, &[conveyor_core::DEFAULT_QUEUE]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_limit_is_rabbitmqs_default_message_size() {
    let b = common::backend(AmqpOptions::default()).await;
    assert_eq!(b.max_value(), (128 << 20) - (64 << 10));
    common::cleanup(&b, &[conveyor_core::DEFAULT_QUEUE]).await;
}
