//! How big a task's params or result may be: a task's params travel as its
//! message's body, which RabbitMQ caps at its `max_message_size` (128 MiB
//! by default since 3.8); a message over it closes the publishing channel
//! with an error that tells nothing of the task. So the backend refuses a
//! value over the default first ([`conveyor_core::ValueLimit`]), keeping
//! [`MESSAGE_ROOM`] for the message's properties; `max_value=` in the URL
//! lowers it for a broker configured lower. Results, kept in the result
//! store beside the broker, are held to the same limit.

use conveyor_core::ValueLimit;

/// RabbitMQ's default `max_message_size`.
pub(crate) const MAX_MESSAGE_SIZE: usize = 128 << 20;

/// Bytes of a message kept for its properties: the task's names, times,
/// attempts, trace context and error.
pub(crate) const MESSAGE_ROOM: usize = 64 << 10;

/// The limit for a broker at the defaults, lowered to `cap`.
pub(crate) fn limit(cap: Option<usize>) -> ValueLimit {
    ValueLimit::new(
        "amqp",
        MAX_MESSAGE_SIZE - MESSAGE_ROOM,
        format!(
            "RabbitMQ's default max_message_size of {MAX_MESSAGE_SIZE} bytes, less {MESSAGE_ROOM} for a message's properties; \
             set max_value= for a broker configured lower"
        ),
    )
    .lowered(cap)
}
