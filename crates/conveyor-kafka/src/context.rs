//! The client context: librdkafka's callbacks into the consumer. Rebalances
//! and commit results arrive here on the polling thread, statistics (for the
//! lag metric) too.

use std::sync::Arc;

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientContext, Statistics, TopicPartitionList};

use crate::consumer_state::ConsumerState;

/// The consumer's context.
pub(crate) struct Ctx {
    pub(crate) shared: Arc<ConsumerState>,
}

impl ClientContext for Ctx {
    fn stats(&self, statistics: Statistics) {
        self.shared.watermarks(&statistics);
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => self.shared.revoked(consumer, tpl),
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.shared.assigned(consumer, tpl);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = &result {
            tracing::warn!(error = %e, "offset commit failed; retried next round");
        }
        self.shared.committed(result.is_ok(), offsets);
    }
}
