//! A PostgreSQL primary with a streaming standby, each a [`TempPostgres`]
//! of the test's own: what the failover tests kill and promote.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::servers::TempPostgres;

/// A primary and its standby; [`PostgresPair::url`] names both, so a
/// client finds whichever takes writes.
#[derive(Debug)]
pub struct PostgresPair {
    /// The primary (until it is killed).
    pub primary: TempPostgres,
    /// The standby (the primary once promoted).
    pub standby: TempPostgres,
}

impl PostgresPair {
    /// Starts a primary and a standby copied from it. With `synchronous`,
    /// every commit waits until the standby has it on disk, so nothing
    /// acknowledged is lost with the primary.
    pub fn start(synchronous: bool) -> PostgresPair {
        let primary = TempPostgres::start();
        let standby = TempPostgres::standby_of(&primary);
        if synchronous {
            primary.wait_for_standbys();
        }
        PostgresPair { primary, standby }
    }

    /// A multi-host `postgres://` URL for database `postgres` naming the
    /// primary first, then the standby, with `query` (without its `?`)
    /// appended.
    pub fn url(&self, query: &str) -> String {
        let mut url = format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?connect_timeout=2",
            self.primary.port(),
            self.standby.port()
        );
        if !query.is_empty() {
            url.push('&');
            url.push_str(query);
        }
        url
    }

    /// Waits until the standby has replayed everything the primary has
    /// written so far (blocking; at most 30 s).
    pub fn caught_up(&self) {
        let lsn = self.primary.query("SELECT pg_current_wal_lsn()");
        let deadline = Instant::now() + Duration::from_secs(30);
        let sql = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
        while self.standby.query(&sql) != "t" {
            assert!(
                Instant::now() < deadline,
                "the standby did not catch up to {lsn}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The pair a test binary shares: started (synchronous) on first use, and
/// stopped, its directories removed, when the binary exits.
pub fn shared() -> &'static PostgresPair {
    static SHARED: OnceLock<PostgresPair> = OnceLock::new();
    extern "C" fn remove_shared() {
        if let Some(pair) = SHARED.get() {
            pair.primary.remove();
            pair.standby.remove();
        }
    }
    SHARED.get_or_init(|| {
        let pair = PostgresPair::start(true);
        // SAFETY: registers a plain function without arguments, run once
        // by exit(3) after the tests; it only reads the initialised pair.
        unsafe { libc::atexit(remove_shared) };
        pair
    })
}
