//! The consumer as a [`Source`]: the runner takes records from the
//! read-ahead (up to its free slots and the in-flight limit, keys permitting)
//! and settles them here; retries run in place, since a record cannot be put
//! back on a partition.

use std::sync::Arc;
use std::time::Duration;

use conveyor::source::{Control, Delivery, Retries, Settlement, Source};
use conveyor::{async_trait, Error};

use crate::consumer_state::{ConsumerState, Record};

/// The records of the consumer's assigned partitions.
pub(crate) struct KafkaSource {
    pub(crate) shared: Arc<ConsumerState>,
}

#[async_trait]
impl Source for KafkaSource {
    type Payload = Arc<Record>;
    type Receipt = Arc<Record>;

    fn attach(&self, control: Control) {
        let _ = self.shared.control.set(control);
    }

    fn retries(&self) -> Retries {
        Retries::InPlace
    }

    async fn fetch(&self, max: usize) -> Result<Vec<Delivery<Arc<Record>, Arc<Record>>>, Error> {
        let records = self.shared.take_ready(max);
        Ok(records
            .into_iter()
            .map(|r| Delivery {
                id: r.id,
                handler: self.shared.handler.to_string(),
                queue: r.coord.topic.clone(),
                attempt: 1,
                max_attempts: None,
                timeout: None,
                ready_at: r.message.timestamp_at(),
                trace: None,
                payload: r.clone(),
                receipt: r,
            })
            .collect())
    }

    async fn wait_for_work(&self, timeout: Duration) -> bool {
        let work = self.shared.work.notified();
        tokio::pin!(work);
        work.as_mut().enable();
        if !self.shared.has_ready() {
            let _ = tokio::time::timeout(timeout, work).await;
        }
        true
    }

    async fn settle(
        &self,
        batch: Vec<Settlement<Arc<Record>>>,
    ) -> Result<Vec<Result<(), Error>>, Error> {
        let n = batch.len();
        self.shared.settle(batch);
        Ok((0..n).map(|_| Ok(())).collect())
    }
}
