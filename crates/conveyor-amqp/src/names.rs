//! What everything conveyor declares on RabbitMQ is called, under one prefix.
//!
//! | name | kind | holds |
//! |---|---|---|
//! | `P.q.QUEUE` | quorum queue | tasks of conveyor queue `QUEUE` ready to run |
//! | `P.dead.QUEUE` | quorum queue | its dead-lettered tasks |
//! | `P.delay.LL` | topic exchange + quorum queue | the delay ladder, level `LL` (see `delay`) |
//! | `P.deliver` | topic exchange | where the ladder hands due tasks to their queue |
//! | `P.custody.ID.CLAIM.GEN` | quorum queue | a long-running task's copy while its worker holds it (see `custody`) |
//! | `P.anchor.PID.N` | quorum queue | none: declared and deleted at once after new queues, so the broker writes their registrations down (see `link`) |
//!
//! Names are AMQP short strings (at most 255 bytes), and a task's routing
//! key through the ladder carries its queue's name too, so queue names are
//! limited to [`MAX_QUEUE_NAME`] bytes and prefixes to [`MAX_PREFIX`].

use conveyor_core::Error;

/// The longest conveyor queue name this backend takes, in bytes.
pub const MAX_QUEUE_NAME: usize = 96;

/// The longest prefix, in bytes.
pub const MAX_PREFIX: usize = 48;

/// The names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    prefix: String,
}

impl Names {
    pub(crate) fn new(prefix: &str) -> Result<Names, Error> {
        if prefix.is_empty() || prefix.len() > MAX_PREFIX {
            return Err(Error::InvalidConfig(format!(
                "an AMQP prefix must be 1 to {MAX_PREFIX} bytes, not {prefix:?}"
            )));
        }
        Ok(Names {
            prefix: prefix.to_string(),
        })
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Refuses a queue name that would not fit in a name or routing key.
    pub(crate) fn check_queue(queue: &str) -> Result<(), Error> {
        if queue.len() > MAX_QUEUE_NAME {
            return Err(Error::InvalidConfig(format!(
                "the amqp backend takes queue names of at most {MAX_QUEUE_NAME} bytes; \
                 {queue:?} has {}",
                queue.len()
            )));
        }
        Ok(())
    }

    /// The queue tasks of `queue` wait in.
    pub(crate) fn work(&self, queue: &str) -> String {
        format!("{}.q.{queue}", self.prefix)
    }

    /// The queue dead tasks of `queue` are kept in.
    pub(crate) fn dead(&self, queue: &str) -> String {
        format!("{}.dead.{queue}", self.prefix)
    }

    /// The exchange and the queue of delay level `level`.
    pub(crate) fn delay(&self, level: u32) -> String {
        format!("{}.delay.{level:02}", self.prefix)
    }

    /// A queue declared and deleted at once, after queues this process
    /// declared, so RabbitMQ writes their registrations to disk (see
    /// `link::Link::anchor`).
    pub(crate) fn anchor(&self, n: u64) -> String {
        format!("{}.anchor.{}.{n}", self.prefix, std::process::id())
    }

    /// The exchange the ladder hands due tasks to.
    pub(crate) fn deliver(&self) -> String {
        format!("{}.deliver", self.prefix)
    }

    /// The custody queue of generation `generation` of task `id` under the
    /// claim with lease token `claim`: another worker that runs the task
    /// later (this one stalled past its lease) names its own generations
    /// apart, so neither touches the other's copy.
    pub(crate) fn custody(&self, id: u64, claim: u64, generation: u64) -> String {
        format!("{}.custody.{id}.{claim}.{generation}", self.prefix)
    }
}

/// `queue` as one word of a topic routing key: as written when it is made
/// only of letters, digits, `_` and `-`, hex-encoded otherwise, each with a
/// marker so the two forms never meet (`q-orders`, `x-6f2e61`). Queue words
/// never equal a ladder bit (`0`, `1`), so a binding `#.WORD` matches one queue.
pub(crate) fn word(queue: &str) -> String {
    let plain = !queue.is_empty()
        && queue
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        format!("q-{queue}")
    } else {
        let mut out = String::with_capacity(2 + queue.len() * 2);
        out.push_str("x-");
        for b in queue.bytes() {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_single_and_distinct() {
        assert_eq!(word("orders"), "q-orders");
        assert_eq!(word("a.b"), "x-612e62");
        assert_eq!(word("a#"), "x-6123");
        assert_ne!(word("x-61"), word("a"));
        assert!(!word("é").contains('.'));
    }

    #[test]
    fn names_carry_the_prefix() {
        let n = Names::new("conveyor").unwrap();
        assert_eq!(n.work("default"), "conveyor.q.default");
        assert_eq!(n.dead("default"), "conveyor.dead.default");
        assert_eq!(n.delay(3), "conveyor.delay.03");
        assert_eq!(n.custody(7, 9, 2), "conveyor.custody.7.9.2");
        assert!(Names::new("").is_err());
        assert!(Names::new(&"p".repeat(MAX_PREFIX + 1)).is_err());
        assert!(Names::check_queue(&"q".repeat(MAX_QUEUE_NAME)).is_ok());
        assert!(Names::check_queue(&"q".repeat(MAX_QUEUE_NAME + 1)).is_err());
    }
}
