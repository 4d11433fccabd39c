//! What an [`AmqpBackend`](crate::AmqpBackend) is configured with, beyond
//! where the broker is.

use std::time::Duration;

use conveyor_core::{Error, Retention};

use crate::names::Names;

/// The prefix when none is given.
pub const DEFAULT_PREFIX: &str = "conveyor";

/// How long a delivery is held unacknowledged before its task moves to
/// custody: half of RabbitMQ's default `consumer_timeout` (30 minutes).
pub const DEFAULT_HOLD: Duration = Duration::from_secs(15 * 60);

/// Deliveries of one message (each ended by a worker dying or a channel
/// closing) before the broker dead-letters it.
pub const DEFAULT_DELIVERY_LIMIT: u32 = 20;

/// The backend's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpOptions {
    /// Every queue and exchange is named under it (`P.q.QUEUE`, …).
    pub prefix: String,
    /// A task held unacknowledged this long moves to a custody queue, so the
    /// server's `consumer_timeout` never closes the channel under a long
    /// task. The move runs on a timer of its own at `hold` (not at the next
    /// lease renewal) and takes a queue declaration and one transaction, so
    /// keep it a few seconds below the server's `consumer_timeout`.
    pub hold: Duration,
    /// The work queues' `x-delivery-limit`: a task whose deliveries keep
    /// ending without a report (its worker is killed, again and again) is
    /// dead-lettered by the broker after this many.
    pub delivery_limit: u32,
    /// Unacknowledged deliveries per queue consumer; `None`: the worker's
    /// first reservation size (its free slots) divided among its queues.
    pub prefetch: Option<u16>,
    /// How long the store beside the broker keeps finished task records
    /// (see [`AmqpBackend::connect_keeping`](crate::AmqpBackend::connect_keeping)).
    pub retention: Retention,
    /// Params and results over this many bytes are refused
    /// (`max_value=`); `None`: RabbitMQ's default `max_message_size` less
    /// room for a message's properties
    /// ([`AmqpBackend::max_value`](crate::AmqpBackend::max_value)).
    pub max_value: Option<usize>,
}

impl Default for AmqpOptions {
    fn default() -> Self {
        AmqpOptions {
            prefix: DEFAULT_PREFIX.to_string(),
            hold: DEFAULT_HOLD,
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
            prefetch: None,
            retention: Retention::default(),
            max_value: None,
        }
    }
}

impl AmqpOptions {
    /// The same options under another prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The same options with another hold.
    pub fn hold(mut self, hold: Duration) -> Self {
        self.hold = hold;
        self
    }

    /// Checks the values make sense.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        Names::new(&self.prefix)?;
        if self.hold < Duration::from_secs(1) {
            return bad(format!("hold must be at least 1s, not {:?}", self.hold));
        }
        if self.delivery_limit == 0 {
            return bad("delivery_limit must be at least 1".into());
        }
        if self.max_value == Some(0) {
            return bad("max_value must be at least 1".into());
        }
        if self.prefetch == Some(0) {
            return bad("prefetch must be at least 1".into());
        }
        Ok(())
    }
}
