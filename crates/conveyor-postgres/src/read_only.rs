//! Connections to a server that turned read-only are not used again.
//!
//! A primary that is demoted, or fenced by a failover tool with
//! `default_transaction_read_only`, keeps the connections it had; a pool
//! that never checks them would go on sending every write to it, each
//! refused with `25006 read_only_sql_transaction`, while the promoted
//! server waits. So the first such refusal marks every connection opened
//! before it as spent: the pool drops each at its next checkout and opens a
//! new one, which the URL's `target_session_attrs=read-write` (the default
//! when it names several hosts) takes to the writable server.
//!
//! The mark is one per process, not per backend: a refusal from one
//! server also renews the connections of another backend in the same
//! process, which costs that one a reconnect and nothing else.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// When the last read-only refusal was seen, in nanoseconds after
/// [`base`] plus one; zero for never.
static SEEN: AtomicU64 = AtomicU64::new(0);

/// The instant [`SEEN`] counts from.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Notes that a server refused a write as read-only, now.
pub(crate) fn refused() {
    let at = u64::try_from(base().elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1;
    SEEN.fetch_max(at, Ordering::Relaxed);
}

/// Whether a connection opened at `opened` is spent: opened before the
/// last read-only refusal.
pub(crate) fn spent(opened: Instant) -> bool {
    match SEEN.load(Ordering::Relaxed) {
        0 => false,
        at => opened <= base() + Duration::from_nanos(at - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_spends_the_connections_opened_before_it_only() {
        let before = Instant::now();
        refused();
        let after = Instant::now() + Duration::from_millis(1);
        assert!(spent(before));
        assert!(!spent(after));
    }
}
