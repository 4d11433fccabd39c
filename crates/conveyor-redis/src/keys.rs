//! Key names under a backend's prefix, as the Rust side needs them.
//!
//! The scripts build the same names in `lua/common/names.lua`; a test checks the two
//! agree. Every key starts with the prefix, so one namespace (one test, one
//! deployment) is removed with a `SCAN` on the prefix and `DEL`.

/// The key prefix used when none is given.
pub const DEFAULT_PREFIX: &str = "conveyor:";

/// Names of the keys of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix itself.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The hash of workers' latest heartbeats: worker id → `WorkerInfo` JSON.
    pub(crate) fn workers(&self) -> String {
        format!("{}workers", self.prefix)
    }

    /// The hash of global handler limits (see `lua/limits.lua` for the format).
    pub(crate) fn limits(&self) -> String {
        format!("{}limits", self.prefix)
    }

    /// The set of paused queue names (`PAUSED` in `lua/common/names.lua`).
    pub(crate) fn paused(&self) -> String {
        format!("{}paused", self.prefix)
    }

    /// The channel enqueues publish queue names on.
    pub(crate) fn wake_channel(&self) -> String {
        format!("{}wake", self.prefix)
    }

    /// The channel finishing scripts publish the ids of finished tasks on.
    pub(crate) fn finished_channel(&self) -> String {
        format!("{}finished", self.prefix)
    }

    /// A `SCAN MATCH` pattern for every key of the namespace.
    pub(crate) fn pattern(&self) -> String {
        let mut out = String::with_capacity(self.prefix.len() + 1);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('*');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_patterns() {
        let k = Keys::new("t[1]*:");
        assert_eq!(k.pattern(), "t\\[1\\]\\*:*");
    }
}
