//! The crate's one error type.

/// What can go wrong setting up or running a Kafka consumer or producer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is missing or invalid (a bad URL, an unknown
    /// ordering mode, a zero limit).
    #[error("invalid kafka configuration: {0}")]
    Config(String),
    /// The Kafka client refused an operation or the broker answered with an error.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The engine refused (for example it is shutting down).
    #[error("engine: {0}")]
    Engine(#[from] conveyor::Error),
    /// Creating a topic failed.
    #[error("creating topic {topic}: {reason}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's answer.
        reason: String,
    },
    /// The consumer's polling thread could not be started or ended abnormally.
    #[error("consumer thread: {0}")]
    Thread(String),
}
