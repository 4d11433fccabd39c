//! `conveyor run --state FILE`: every item's final outcome, kept durably so an
//! interrupted run can be resumed.
//!
//! The file is an SQLite database (the embedded store's engine) in WAL mode with
//! `synchronous=FULL`: an outcome is on disk before the item's output is printed,
//! so whatever a run printed will not run again. Outcomes are written in batches
//! (one transaction per batch of finished items). A run holds the file in
//! exclusive mode: a second run on the same file is refused instead of running
//! the same items twice. The command is recorded too, and a run with another
//! command is refused, since its items would be different work.
//!
//! Items are matched on resume by sequence number *and* a hash of their bytes:
//! an input that changed at a position runs that position again.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

/// Marks the file as a conveyor run state file (`PRAGMA application_id`).
const APPLICATION_ID: i32 = 0x436e_5275; // "CnRu"
/// The layout's version (`PRAGMA user_version`).
const SCHEMA_VERSION: i32 = 1;

/// How an item ended in an earlier run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prior {
    /// It succeeded: never run again.
    Succeeded,
    /// It failed after its last attempt: run again only with `--retry-failed`.
    Failed,
}

/// What is known of an item from earlier runs.
#[derive(Debug, Clone, Copy)]
pub struct PriorItem {
    /// Hash of the item's bytes.
    pub hash: u64,
    /// Its outcome.
    pub outcome: Prior,
}

/// One final outcome to record.
#[derive(Debug)]
pub struct Entry<'a> {
    /// Sequence number.
    pub seq: u64,
    /// The item's bytes.
    pub item: &'a [u8],
    /// Succeeded or failed.
    pub outcome: Prior,
    /// Exit code of the last attempt, if the program exited.
    pub exit_code: Option<i32>,
    /// Attempts made.
    pub attempts: u32,
    /// Milliseconds since the epoch.
    pub finished_ms: i64,
    /// Why it failed.
    pub error: Option<&'a str>,
}

/// An open state file.
pub struct State {
    conn: Connection,
}

impl State {
    /// Opens (or creates) the state file for `command`, and returns what earlier
    /// runs recorded.
    pub fn open(path: &Path, command: &str) -> anyhow::Result<(Self, HashMap<u64, PriorItem>)> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .with_context(|| format!("cannot open state file {}", path.display()))?;
        let state = Self { conn };
        state
            .prepare(command)
            .with_context(|| format!("state file {}", path.display()))?;
        let prior = state
            .load()
            .with_context(|| format!("cannot read state file {}", path.display()))?;
        Ok((state, prior))
    }

    fn prepare(&self, command: &str) -> anyhow::Result<()> {
        let c = &self.conn;
        c.busy_timeout(std::time::Duration::ZERO)?;
        // Exclusive: the first write takes the lock and keeps it until we close.
        c.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        let app: i32 = c
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(|e| match in_use(&e) {
                true => anyhow!("in use by another conveyor run"),
                false => anyhow!("not a conveyor run state file ({e})"),
            })?;
        let tables: i64 = c.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if app != APPLICATION_ID && (app != 0 || tables > 0) {
            bail!("not a conveyor run state file (it holds other data; use a new file)");
        }
        c.pragma_update(None, "journal_mode", "WAL")?;
        c.pragma_update(None, "synchronous", "FULL")?;
        c.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| match in_use(&e) {
                true => anyhow!("in use by another conveyor run"),
                false => anyhow::Error::from(e),
            })?;
        let version: i32 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            c.execute_batch("ROLLBACK")?;
            bail!(
                "written by a newer conveyor (layout {version}, this one knows {SCHEMA_VERSION})"
            );
        }
        c.execute_batch(
            "CREATE TABLE IF NOT EXISTS run_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS run_items (
                 seq INTEGER PRIMARY KEY,
                 hash INTEGER NOT NULL,
                 item BLOB NOT NULL,
                 outcome TEXT NOT NULL CHECK (outcome IN ('succeeded', 'failed')),
                 exit_code INTEGER,
                 attempts INTEGER NOT NULL,
                 finished_ms INTEGER NOT NULL,
                 error TEXT
             );",
        )?;
        c.pragma_update(None, "application_id", APPLICATION_ID)?;
        c.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        let recorded: Option<String> = c
            .query_row(
                "SELECT value FROM run_meta WHERE key = 'command'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match recorded {
            None => {
                c.execute(
                    "INSERT INTO run_meta (key, value) VALUES ('command', ?1)",
                    [command],
                )?;
            }
            Some(r) if r == command => {}
            Some(r) => {
                c.execute_batch("ROLLBACK")?;
                bail!(
                    "it records another command ({r}); this run's is {command}. \
                     Use another --state file, or delete this one to start over"
                );
            }
        }
        c.execute_batch("COMMIT")?;
        Ok(())
    }

    fn load(&self) -> rusqlite::Result<HashMap<u64, PriorItem>> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, hash, outcome FROM run_items")?;
        let rows = stmt.query_map([], |r| {
            let seq: i64 = r.get(0)?;
            let hash: i64 = r.get(1)?;
            let outcome: String = r.get(2)?;
            Ok((seq, hash, outcome))
        })?;
        let mut prior = HashMap::new();
        for row in rows {
            let (seq, hash, outcome) = row?;
            let outcome = if outcome == "succeeded" {
                Prior::Succeeded
            } else {
                Prior::Failed
            };
            prior.insert(
                seq as u64,
                PriorItem {
                    hash: hash as u64,
                    outcome,
                },
            );
        }
        Ok(prior)
    }

    /// Records outcomes in one transaction, durable when this returns.
    pub fn record(&mut self, entries: &[Entry<'_>]) -> rusqlite::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO run_items (seq, hash, item, outcome, exit_code, attempts, finished_ms, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (seq) DO UPDATE SET hash = excluded.hash, item = excluded.item,
                   outcome = excluded.outcome, exit_code = excluded.exit_code,
                   attempts = excluded.attempts, finished_ms = excluded.finished_ms,
                   error = excluded.error",
            )?;
            for e in entries {
                stmt.execute(params![
                    e.seq as i64,
                    item_hash(e.item) as i64,
                    e.item,
                    match e.outcome {
                        Prior::Succeeded => "succeeded",
                        Prior::Failed => "failed",
                    },
                    e.exit_code,
                    e.attempts,
                    e.finished_ms,
                    e.error,
                ])?;
            }
        }
        tx.commit()
    }
}

fn in_use(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// FNV-1a over the item's bytes: stable across versions and platforms, which the
/// state file needs (std's hasher promises neither).
pub fn item_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, item: &[u8], outcome: Prior) -> Entry<'_> {
        Entry {
            seq,
            item,
            outcome,
            exit_code: Some(0),
            attempts: 1,
            finished_ms: 1,
            error: None,
        }
    }

    #[test]
    fn outcomes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let (mut s, prior) = State::open(&path, "cmd").unwrap();
            assert!(prior.is_empty());
            s.record(&[
                entry(1, b"a", Prior::Succeeded),
                entry(2, b"b", Prior::Failed),
            ])
            .unwrap();
            s.record(&[entry(2, b"b", Prior::Succeeded)]).unwrap();
        }
        let (_s, prior) = State::open(&path, "cmd").unwrap();
        assert_eq!(prior.len(), 2);
        assert_eq!(prior[&2].outcome, Prior::Succeeded);
        assert_eq!(prior[&1].hash, item_hash(b"a"));
    }

    #[test]
    fn another_command_or_a_second_run_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let held = State::open(&path, "cmd").unwrap();
        let err = State::open(&path, "cmd").err().unwrap();
        assert!(format!("{err:#}").contains("in use"), "{err:#}");
        drop(held);
        let err = State::open(&path, "other").err().unwrap();
        assert!(format!("{err:#}").contains("another command"), "{err:#}");
    }

    #[test]
    fn foreign_files_are_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "hello, this is not a database").unwrap();
        assert!(State::open(&text, "cmd").is_err());
        assert_eq!(
            std::fs::read_to_string(&text).unwrap(),
            "hello, this is not a database"
        );
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let err = State::open(&other, "cmd").err().unwrap();
        assert!(format!("{err:#}").contains("not a conveyor"), "{err:#}");
    }
}
