//! A backend namespace of a test's own on the machine's Redis or PostgreSQL
//! (a key prefix, a schema), dropped when the test ends, even on panic.

use std::sync::Arc;

/// A unique name for a test's namespace.
pub fn unique(tag: &str) -> String {
    format!("conveyor_test_{tag}_{:012x}", fastrand::u64(..1 << 48))
}

/// A backend URL and the clean-up of its namespace.
pub struct Namespace {
    /// The URL the test's processes use.
    pub url: String,
    cleanup: Option<Box<dyn FnOnce() + Send>>,
}

/// The machine's Redis.
const REDIS: &str = "redis://127.0.0.1:6379/0";

/// Deletes every key under `prefix` on the machine's Redis.
async fn clear_redis_prefix(prefix: String) {
    let b = conveyor::durable::RedisBackend::connect_with(
        REDIS,
        &prefix,
        Arc::new(conveyor::SystemClock),
    )
    .await
    .expect("connect to Redis to clean up");
    b.clear().await.expect("clear the test prefix");
}

impl Namespace {
    /// Keys under a fresh prefix on the machine's Redis.
    pub fn redis(tag: &str) -> Namespace {
        let prefix = format!("{}:", unique(tag));
        Namespace {
            url: format!("{REDIS}?prefix={prefix}"),
            cleanup: Some(Box::new(move || block_on(clear_redis_prefix(prefix)))),
        }
    }

    /// A fresh schema in the machine's PostgreSQL database `test`.
    pub fn postgres(tag: &str) -> Namespace {
        let schema = unique(tag);
        let base = "postgres://postgres@127.0.0.1:5432/test";
        Namespace {
            url: format!("{base}?schema={schema}"),
            cleanup: Some(Box::new(move || {
                block_on(async move {
                    let b = conveyor::durable::PostgresBackend::builder(base)
                        .schema(&schema)
                        .migrate(false)
                        .connect()
                        .await
                        .expect("connect to clean up");
                    b.drop_schema().await.expect("drop the test schema");
                })
            })),
        }
    }
}

impl Namespace {
    /// Queues and exchanges under a fresh prefix on the machine's RabbitMQ
    /// (the default queue's and the delay ladder's, deleted at the end).
    pub fn amqp(tag: &str) -> Namespace {
        Self::amqp_with(tag, false, &[])
    }

    /// The same, with the task records kept by the machine's Redis
    /// (`results=redis://…`, under a prefix of the namespace's own, deleted
    /// at the end too).
    pub fn amqp_with_results(tag: &str) -> Namespace {
        Self::amqp_with(tag, true, &[])
    }

    /// [`Namespace::amqp_with_results`] whose tests also use `queues`
    /// (deleted at the end with the default one).
    pub fn amqp_with_results_and_queues(tag: &str, queues: &[&str]) -> Namespace {
        Self::amqp_with(tag, true, queues)
    }

    fn amqp_with(tag: &str, results: bool, queues: &[&str]) -> Namespace {
        let mut queues: Vec<String> = queues.iter().map(|q| q.to_string()).collect();
        queues.push(conveyor::durable::DEFAULT_QUEUE_NAME.to_string());
        let prefix = unique(tag);
        let base = "amqp://guest:guest@127.0.0.1:5672/%2f";
        let records = format!("{prefix}:records:");
        let mut url = format!("{base}?prefix={prefix}");
        if results {
            url.push_str(&format!("&results={REDIS}?prefix={records}"));
        }
        let options = conveyor::durable::AmqpOptions::default().prefix(prefix);
        Namespace {
            url,
            cleanup: Some(Box::new(move || {
                block_on(async move {
                    let b = conveyor::durable::AmqpBackend::connect(
                        base,
                        options,
                        Arc::new(conveyor::SystemClock),
                    )
                    .await
                    .expect("connect to clean up");
                    let queues: Vec<&str> = queues.iter().map(String::as_str).collect();
                    b.delete_namespace(&queues)
                        .await
                        .expect("delete the test queues");
                    if results {
                        clear_redis_prefix(records).await;
                    }
                })
            })),
        }
    }
}

impl Namespace {
    /// Streams and a key-value bucket under a fresh prefix on the machine's
    /// NATS server, deleted at the end.
    pub fn nats(tag: &str) -> Namespace {
        let prefix = format!("cvt{}", unique(tag).replace('_', ""));
        let base = "nats://127.0.0.1:4222";
        Namespace {
            url: format!("{base}?prefix={prefix}"),
            cleanup: Some(Box::new(move || {
                block_on(async move {
                    let b = conveyor::durable::NatsBackend::connect_with(
                        base,
                        &prefix,
                        Arc::new(conveyor::SystemClock),
                    )
                    .await
                    .expect("connect to clean up");
                    b.destroy().await.expect("delete the test namespace");
                })
            })),
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Some(f) = self.cleanup.take() {
            // A thread with a runtime of its own: the test's may be gone.
            let _ = std::thread::spawn(f).join();
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}
