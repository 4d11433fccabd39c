//! Mapping the AMQP client's errors to conveyor's, classified so the worker
//! knows what to retry, with the client's error kept as the source.

use conveyor_core::{BackendError, BackendErrorKind, Error};
use lapin::ErrorKind;

/// An AMQP error as a store failure, saying what was being done.
pub(crate) fn amqp_error(what: &str, e: lapin::Error) -> Error {
    let kind = classify(&e);
    let mut message = format!("amqp {what}");
    if let Some(hint) = hint(&e) {
        message.push_str(": ");
        message.push_str(hint);
    }
    Error::Backend(BackendError::new(kind, message).with_source(e))
}

/// What kind of failure an AMQP error is.
pub(crate) fn classify(e: &lapin::Error) -> BackendErrorKind {
    match e.kind() {
        ErrorKind::IOError(_)
        | ErrorKind::MissingHeartbeatError
        | ErrorKind::InvalidChannelState(..)
        | ErrorKind::InvalidConnectionState(_)
        | ErrorKind::InvalidChannel(_)
        | ErrorKind::RuntimeShutdownError(_) => BackendErrorKind::Unavailable,
        ErrorKind::ChannelsLimitReached => BackendErrorKind::Busy,
        ErrorKind::ProtocolError(p) => {
            let text = p.to_string();
            if text.contains("ACCESS_REFUSED") || text.contains("NOT_ALLOWED") {
                BackendErrorKind::Config
            } else if text.contains("PRECONDITION_FAILED") && !is_ack_timeout(&text) {
                // A queue declared with other arguments (a prefix another
                // program uses differently): a setup problem, not a glitch.
                BackendErrorKind::Config
            } else if text.contains("RESOURCE_ERROR") || text.contains("RESOURCE_LOCKED") {
                BackendErrorKind::Busy
            } else {
                BackendErrorKind::Unavailable
            }
        }
        ErrorKind::InvalidProtocolVersion(_)
        | ErrorKind::AuthProviderError(_)
        | ErrorKind::NoDefaultRuntime => BackendErrorKind::Config,
        _ => BackendErrorKind::Other,
    }
}

/// RabbitMQ's words when a delivery stayed unacknowledged past its
/// `consumer_timeout`.
pub(crate) fn is_ack_timeout(text: &str) -> bool {
    text.contains("delivery acknowledgement") && text.contains("timed out")
}

fn hint(e: &lapin::Error) -> Option<&'static str> {
    let text = e.to_string();
    if is_ack_timeout(&text) {
        return Some(
            "RabbitMQ closed the channel because a delivery stayed unacknowledged longer than \
             the server's consumer_timeout; conveyor hands tasks held longer than `hold` (URL \
             parameter) to a custody queue, so set hold= below the server's consumer_timeout",
        );
    }
    if text.contains("PRECONDITION_FAILED") && text.contains("max size") {
        return Some(
            "the message is over the broker's max_message_size; set max_value= (URL parameter) \
             to the broker's limit less 64 KiB, so conveyor refuses such params and results \
             itself, naming the task",
        );
    }
    if text.contains("PRECONDITION_FAILED") && text.contains("inequivalent arg") {
        return Some(
            "a queue or exchange of this prefix exists with other arguments (another program, \
             or an older conveyor, declared it); use another prefix= or delete it",
        );
    }
    None
}
