//! Ordering modes: which messages must run one after another.
//!
//! The engine runs tasks that share an ordering key one at a time, in
//! submission order (retries included: a failing message holds its key until
//! its final outcome), and tasks with different keys in parallel. Each mode
//! maps a message to such a key, scoped to its consumer, topic and partition so
//! it never collides with another consumer's or another partition's keys.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// Which messages are processed in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ordering {
    /// In order per message key within a partition, in parallel across keys
    /// (the default). Messages without a key have no order among themselves.
    #[default]
    Key,
    /// In order per partition: one message of a partition at a time.
    Partition,
    /// No order: any message may run alongside any other.
    Unordered,
}

impl Ordering {
    /// The mode's name as used in URLs and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Ordering::Key => "key",
            Ordering::Partition => "partition",
            Ordering::Unordered => "unordered",
        }
    }

    /// The engine ordering key for a message, if the mode gives it one.
    /// `scope` names the consumer, so keys of two consumers sharing a pool
    /// never collide.
    pub(crate) fn task_key(
        self,
        scope: &str,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
    ) -> Option<String> {
        match self {
            Ordering::Unordered => None,
            Ordering::Partition => Some(format!("{scope}{topic}/{partition}")),
            Ordering::Key => {
                key.map(|k| format!("{scope}{topic}/{partition}/{}", String::from_utf8_lossy(k)))
            }
        }
    }
}

impl fmt::Display for Ordering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Ordering {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "key" => Ok(Ordering::Key),
            "partition" => Ok(Ordering::Partition),
            "unordered" | "none" => Ok(Ordering::Unordered),
            other => Err(Error::Config(format!(
                "unknown ordering {other:?} (expected key, partition or unordered)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_by_mode() {
        let k = Some(&b"user-7"[..]);
        assert_eq!(Ordering::Unordered.task_key("c1:", "t", 0, k), None);
        assert_eq!(
            Ordering::Partition.task_key("c1:", "t", 3, k).as_deref(),
            Some("c1:t/3")
        );
        assert_eq!(
            Ordering::Key.task_key("c1:", "t", 3, k).as_deref(),
            Some("c1:t/3/user-7")
        );
        assert_eq!(Ordering::Key.task_key("c1:", "t", 3, None), None);
    }

    #[test]
    fn parses() {
        assert_eq!("key".parse::<Ordering>().ok(), Some(Ordering::Key));
        assert_eq!(
            "partition".parse::<Ordering>().ok(),
            Some(Ordering::Partition)
        );
        assert_eq!(
            "unordered".parse::<Ordering>().ok(),
            Some(Ordering::Unordered)
        );
        assert!("sorted".parse::<Ordering>().is_err());
    }
}
