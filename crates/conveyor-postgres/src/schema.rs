//! The PostgreSQL schema that holds one conveyor installation.
//!
//! Every table, index and sequence lives in one schema (default `conveyor`), so
//! several installations (or one per test) share a database without touching
//! each other. The name is checked once here and then spliced into SQL text as a
//! quoted identifier; it also names the LISTEN/NOTIFY channels and salts the
//! advisory-lock keys, so two schemas never wake or block each other.

use std::fmt;

use conveyor_core::Error;

/// The schema used when none is given.
pub const DEFAULT_SCHEMA: &str = "conveyor";

/// Longest accepted schema name: PostgreSQL identifiers stop at 63 bytes and the
/// notification channels add a suffix to it (at most `_finished`).
const MAX_LEN: usize = 48;

/// A checked schema name: ASCII letters, digits and `_`, not starting with a digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Schema {
    name: String,
}

impl Schema {
    /// Checks `name`; anything else is [`Error::InvalidConfig`].
    pub fn new(name: &str) -> Result<Schema, Error> {
        let bad = |why: &str| {
            Err(Error::InvalidConfig(format!(
                "schema name {name:?} {why} (use 1 to {MAX_LEN} ASCII letters, digits or '_', not starting with a digit)"
            )))
        };
        if name.is_empty() || name.len() > MAX_LEN {
            return bad("has the wrong length");
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return bad("has characters other than letters, digits and '_'");
        }
        if name.as_bytes()[0].is_ascii_digit() {
            return bad("starts with a digit");
        }
        Ok(Schema {
            name: name.to_string(),
        })
    }

    /// The bare name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The quoted identifier, for SQL text.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.name)
    }

    /// A table or sequence of this schema, qualified and quoted.
    pub(crate) fn table(&self, table: &str) -> String {
        format!("\"{}\".\"{}\"", self.name, table)
    }

    /// The LISTEN/NOTIFY channel that carries wake-ups for this schema.
    pub fn channel(&self) -> String {
        format!("{}_work", self.name)
    }

    /// The LISTEN/NOTIFY channel that carries the ids of tasks that reached a
    /// final state in this schema, for result waiters.
    pub fn finished_channel(&self) -> String {
        format!("{}_finished", self.name)
    }

    /// The advisory-lock key (two-int form) serialising migrations of this
    /// schema. The two-int form keeps it apart from the one-bigint keys used for
    /// ordering keys.
    pub(crate) fn migration_lock(&self) -> (i32, i32) {
        let h = fnv1a(&[b"conveyor-migrate", self.name.as_bytes()]);
        // Keep the low 32 bits: any value is a valid key.
        (0x636f_6e76, (h & 0xffff_ffff) as u32 as i32)
    }

    /// The advisory-lock key that serialises enqueueing tasks of one
    /// `(queue, ordering key)`, so ids of a key are committed in increasing order.
    pub(crate) fn ordering_lock(&self, queue: &str, key: &str) -> i64 {
        fnv1a(&[
            self.name.as_bytes(),
            &[0x1f],
            queue.as_bytes(),
            &[0x1f],
            key.as_bytes(),
        ]) as i64
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// 64-bit FNV-1a over the concatenated parts: stable across processes and
/// versions, which a lock key shared between workers must be.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(Schema::new("conveyor").is_ok());
        assert!(Schema::new("conveyor_test_42").is_ok());
        assert!(Schema::new("_x").is_ok());
        for bad in ["", "1abc", "a-b", "a\"b", "a b", "é", &"x".repeat(49)] {
            assert!(
                matches!(Schema::new(bad), Err(Error::InvalidConfig(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn lock_keys_depend_on_schema_queue_and_key() {
        let a = Schema::new("a").expect("valid");
        let b = Schema::new("b").expect("valid");
        assert_eq!(a.ordering_lock("q", "k"), a.ordering_lock("q", "k"));
        assert_ne!(a.ordering_lock("q", "k"), b.ordering_lock("q", "k"));
        assert_ne!(a.ordering_lock("q", "k"), a.ordering_lock("qk", ""));
        assert_ne!(a.migration_lock(), b.migration_lock());
    }
}
