//! One assigned partition as the consumer sees it: its offsets, the messages
//! of it that are in flight, and the assignment it belongs to.

use std::collections::HashMap;
use std::sync::Arc;

use conveyor::TaskId;

use crate::offsets::PartitionOffsets;

/// The consumer's record of one partition it was assigned.
#[derive(Debug)]
pub(crate) struct Partition {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    /// Which assignment this is: work dispatched under an older epoch of the
    /// same partition (revoked, then assigned again) never touches this one.
    pub(crate) epoch: u64,
    pub(crate) offsets: PartitionOffsets,
    /// Being revoked: nothing more of it is dispatched.
    pub(crate) revoking: bool,
    /// Messages of this partition counted in the consumer's in-flight total
    /// (in the engine, or being dead-lettered).
    pub(crate) in_flight: usize,
    /// The runner's tasks of this partition by offset, to cancel on revoke.
    pub(crate) tasks: HashMap<i64, TaskId>,
    /// The partition's high watermark from the client's statistics.
    pub(crate) high_watermark: Option<i64>,
}

impl Partition {
    pub(crate) fn new(topic: Arc<str>, partition: i32, epoch: u64) -> Self {
        Self {
            topic,
            partition,
            epoch,
            offsets: PartitionOffsets::default(),
            revoking: false,
            in_flight: 0,
            tasks: HashMap::new(),
            high_watermark: None,
        }
    }

    pub(crate) fn is(&self, topic: &str, partition: i32) -> bool {
        self.partition == partition && &*self.topic == topic
    }
}

/// Where one in-flight message came from.
#[derive(Debug, Clone)]
pub(crate) struct Coord {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) epoch: u64,
    pub(crate) offset: i64,
}
