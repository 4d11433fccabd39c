//! Opening the database file: connection settings, the table, its indexes and
//! schema versioning.
//!
//! The file is SQLite in WAL mode with `synchronous=FULL`, so every commit is
//! fsynced before a caller hears about it, readers never block the writer, and
//! several processes may share the file under SQLite's own locks (waiting up to
//! [`BUSY_TIMEOUT`] for one another). The schema is created idempotently inside
//! one `BEGIN IMMEDIATE` transaction and versioned with `PRAGMA user_version`, so
//! two processes opening a fresh file at once agree and a later version can
//! migrate from this one.
//!
//! One table holds every task. Its rows are ordered by `INTEGER PRIMARY KEY
//! AUTOINCREMENT` ids (enqueue order; an id is never reused, even after pruning,
//! so a stale lease or an old id can never name a new task). Partial indexes
//! hold only the rows each hot query looks for, so they stay small and cost
//! nothing for tasks outside them:
//!
//! | index | rows | serves |
//! |---|---|---|
//! | `tasks_ready (queue, priority DESC, id, ordering_key)` | available | reserve, in priority then enqueue order (covering: the candidates' keys are read from the index) |
//! | `tasks_due (run_at)` | scheduled, retrying | promoting due tasks |
//! | `tasks_leased (lease_until)` | running | recovering expired leases |
//! | `tasks_unique (queue, unique_key)` UNIQUE | unfinished with a unique key | duplicate detection, enforced by SQLite |
//! | `tasks_ordering (queue, ordering_key, id)` | unfinished with an ordering key | "is this the oldest of its key?" |
//! | `tasks_ordering_running (queue, ordering_key)` | running with an ordering key | "is one of its key running?" |
//! | `tasks_finished (state, finished_at)` | finished | pruning and purging |
//! | `tasks_expiring (expires_at)` | finished with an expiry of their own | pruning them |
//!
//! Version 2 adds `handler_limits`: one row per handler with global limits
//! (concurrency, rate count per period in µs, burst) and the rate's state (its
//! theoretical arrival time, µs). Version 3 adds `leaders`, version 4
//! `workers`, and version 5 `paused_queues` (one row per paused queue, read
//! by every reservation inside its write transaction). Version 6 adds the
//! `trace` column of `tasks` (the W3C trace context given at enqueue, as
//! `TraceContext::encode` writes it; NULL for none and for older rows).
//! Version 7 adds `task_counts`: the number of tasks per queue, handler and state,
//! kept by every write (see `crate::tally`), so counting a million tasks
//! reads a handful of rows.
//! Version 8 adds the attempt columns of `tasks`: `worker`, `started_at`
//! and `history` (every attempt's history, see `conveyor_core::attempt`).
//! Version 9 drops `tasks_running_handler (handler)`, the index over running
//! tasks that versions 2 to 8 kept to count a limited handler's running
//! tasks: the kept counts answer that now, and the index cost every
//! reservation and every settlement two index writes.
//! Version 10 adds `keep_ms` (a task's own keep, given at enqueue) and
//! `expires_at` (when a finished task may go, stamped by its finish from
//! its keep or its handler's retention) with the index `tasks_expiring`
//! over the tasks that have one; a task with none is pruned by the
//! retention `prune` is given, as before.
//! Version 11 adds the workflows (`conveyor_core::workflow`): `workflows`,
//! one row each (the declaration in its stored form, the tally, when it
//! ended), with `workflows_running` over those still running and
//! `workflows_ended` over the others (pruning finds them by it), and
//! `workflow_nodes`, one row per node (its state, how many dependencies it
//! waits on, its task, and its result and error once settled), with
//! `workflow_nodes_task` to find a finished task's node.
//!
//! Version 12 moves each workflow's declaration into `workflow_specs`, so
//! its row holds only the small, often written tally.
//! Version 13 adds `workflow_expansions`: the nodes a workflow's running
//! nodes added, one row per expansion, in order.
//! Version 14 adds `schedules`: one row per periodic schedule, its
//! declaration and where its firing stands, indexed by next fire.

use std::path::Path;
use std::time::{Duration, Instant};

use conveyor_core::{codes, BackendError, BackendErrorKind, Error, TaskState, Transition};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::error::{classify, db_err};
use crate::sql::unfinished_codes;

/// The schema version this crate writes (`PRAGMA user_version`).
pub(crate) const SCHEMA_VERSION: i64 = 14;

/// How long a connection waits for another process's lock before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Prepared statements kept per connection (every statement of `crate::sql`
/// plus the transaction-control ones fit).
const STATEMENT_CACHE: usize = 64;

/// Opens (creating if needed) the database at `path`, applies the connection
/// settings and brings the schema to [`SCHEMA_VERSION`].
pub(crate) fn open(path: &Path) -> Result<Connection, Error> {
    let conn = connect(path, OpenFlags::SQLITE_OPEN_CREATE)?;
    migrate(&conn).map_err(|e| config_error(path, e))?;
    Ok(conn)
}

/// Opens again a file [`open`] opened before in this process (after a
/// pause around a fork): set up, not created or migrated again.
pub(crate) fn reopen(path: &Path) -> Result<Connection, Error> {
    connect(path, OpenFlags::empty())
}

/// A connection to `path`, set up, opened with `flags` besides read-write.
fn connect(path: &Path, flags: OpenFlags) -> Result<Connection, Error> {
    let flags = flags | OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        let message = format!("cannot open {}", path.display());
        Error::Backend(BackendError::new(classify(&e), message).with_source(e))
    })?;
    configure(&conn).map_err(|e| config_error(path, e))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// A file that cannot be set up or migrated (not a conveyor file, one from a
/// newer conveyor, a journal mode WAL cannot use) stays so.
fn config_error(path: &Path, e: String) -> Error {
    Error::backend(BackendErrorKind::Config, format!("{}: {e}", path.display()))
}

/// Per-connection settings. WAL mode is stored in the file; the others are
/// per connection and set at every open.
///
/// The page cache is kept small (512 KiB) on purpose: the hot path touches few
/// pages (the newest rows and the small partial indexes), the OS caches the
/// rest, and SQLite's commit walks the whole page cache, which measured as
/// up to 8% of the CPU time with a cache of a few MiB. The WAL is checkpointed
/// every 4096 pages (16 MiB) rather than SQLite's 1000: a checkpoint costs two
/// fsyncs on the committing thread, and pages rewritten between checkpoints
/// (the hot rows and indexes) are copied once.
fn configure(conn: &Connection) -> Result<(), String> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| e.to_string())?;
    // A plan that does not depend on bound values: without it SQLite expires a
    // cached statement whenever a value its planner looked at (such as the
    // reserve statement's LIMIT) is bound again, and re-prepares it each call.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(|e| e.to_string())?;
    let mode = switch_to_wal(conn).map_err(|e| format!("cannot switch to WAL mode: {e}"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!(
            "the file stays in {mode} journal mode, WAL is needed (is it on a network file system?)"
        ));
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -512;
         PRAGMA wal_autocheckpoint = 4096;
         PRAGMA journal_size_limit = 67108864;",
    )
    .map_err(|e| e.to_string())
}

/// Sets `journal_mode = WAL` and returns the mode the file is in afterwards.
///
/// Switching a new file to WAL takes an exclusive lock, and SQLite answers a
/// switch that races another connection's (two processes opening a new file
/// at once) with `SQLITE_BUSY` at once, without calling the busy handler. So
/// the switch is retried, a few milliseconds apart, for up to [`BUSY_TIMEOUT`]
/// like every other lock wait.
fn switch_to_wal(conn: &Connection) -> rusqlite::Result<String> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::DatabaseBusy && Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            done => return done,
        }
    }
}

/// Creates the table and indexes when the file is new; refuses a file written
/// by a newer schema.
fn migrate(conn: &Connection) -> Result<(), String> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| format!("cannot lock the file to check its schema: {e}"))?;
    let result = migrate_locked(conn);
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = conn.execute_batch(end).map_err(|e| e.to_string());
    result.and(ended)
}

fn migrate_locked(conn: &Connection) -> Result<(), String> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| e.to_string())?;
    if version > SCHEMA_VERSION {
        return Err(format!(
            "the file has schema version {version}, this conveyor knows up to {SCHEMA_VERSION}: \
             it was written by a newer conveyor"
        ));
    }
    if version < 1 {
        conn.execute_batch(&schema_v1()).map_err(db_err_string)?;
    }
    if version < 2 {
        conn.execute_batch(SCHEMA_V2).map_err(db_err_string)?;
    }
    if version < 3 {
        conn.execute_batch(SCHEMA_V3).map_err(db_err_string)?;
    }
    if version < 4 {
        conn.execute_batch(SCHEMA_V4).map_err(db_err_string)?;
    }
    if version < 5 {
        conn.execute_batch(SCHEMA_V5).map_err(db_err_string)?;
    }
    if version < 6 {
        add_trace_column(conn)?;
    }
    if version < 7 {
        conn.execute_batch(SCHEMA_V7).map_err(db_err_string)?;
    }
    if version < 8 {
        add_attempt_columns(conn)?;
    }
    if version < 9 {
        conn.execute_batch(SCHEMA_V9).map_err(db_err_string)?;
    }
    if version < 10 {
        add_expiry_columns(conn)?;
    }
    if version < 11 {
        conn.execute_batch(SCHEMA_V11).map_err(db_err_string)?;
    }
    if version < 12 {
        conn.execute_batch(SCHEMA_V12).map_err(db_err_string)?;
    }
    if version < 13 {
        conn.execute_batch(SCHEMA_V13).map_err(db_err_string)?;
    }
    if version < 14 {
        conn.execute_batch(SCHEMA_V14).map_err(db_err_string)?;
    }
    // Later versions migrate here, one step at a time.
    conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
        .map_err(db_err_string)
}

fn db_err_string(e: rusqlite::Error) -> String {
    match db_err(e) {
        Error::Backend(e) => e.message().to_string(),
        other => other.to_string(),
    }
}

/// The table and indexes of schema version 1.
fn schema_v1() -> String {
    let unfinished = unfinished_codes();
    let ready = Transition::Reserve.source_codes();
    let due = Transition::Due.source_codes();
    let running = codes(&[TaskState::Running]);
    format!(
        "CREATE TABLE IF NOT EXISTS tasks (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             queue TEXT NOT NULL,
             state INTEGER NOT NULL,
             priority INTEGER NOT NULL,
             token INTEGER NOT NULL DEFAULT 0,
             attempts INTEGER NOT NULL,
             max_attempts INTEGER NOT NULL,
             run_at INTEGER NOT NULL,
             lease_until INTEGER,
             created_at INTEGER NOT NULL,
             finished_at INTEGER,
             timeout_ms INTEGER,
             handler TEXT NOT NULL,
             unique_key TEXT,
             ordering_key TEXT,
             error TEXT,
             payload BLOB NOT NULL,
             result BLOB
         );
         CREATE INDEX IF NOT EXISTS tasks_ready ON tasks (queue, priority DESC, id, ordering_key)
             WHERE state IN ({ready});
         CREATE INDEX IF NOT EXISTS tasks_due ON tasks (run_at)
             WHERE state IN ({due});
         CREATE INDEX IF NOT EXISTS tasks_leased ON tasks (lease_until)
             WHERE state IN ({running});
         CREATE UNIQUE INDEX IF NOT EXISTS tasks_unique ON tasks (queue, unique_key)
             WHERE unique_key IS NOT NULL AND state IN ({unfinished});
         CREATE INDEX IF NOT EXISTS tasks_ordering ON tasks (queue, ordering_key, id)
             WHERE ordering_key IS NOT NULL AND state IN ({unfinished});
         CREATE INDEX IF NOT EXISTS tasks_ordering_running ON tasks (queue, ordering_key)
             WHERE ordering_key IS NOT NULL AND state IN ({running});
         CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (state, finished_at)
             WHERE finished_at IS NOT NULL;"
    )
}

/// Schema version 3: the leader of each maintenance role and its term.
const SCHEMA_V3: &str = "CREATE TABLE IF NOT EXISTS leaders (
         role TEXT PRIMARY KEY,
         holder TEXT NOT NULL,
         until INTEGER NOT NULL
     );";

/// Schema version 4: each worker's latest heartbeat (the JSON of a
/// `WorkerInfo`), found by its time.
const SCHEMA_V4: &str = "CREATE TABLE IF NOT EXISTS workers (
         id TEXT PRIMARY KEY,
         heartbeat_at INTEGER NOT NULL,
         info TEXT NOT NULL
     );
     CREATE INDEX IF NOT EXISTS workers_heartbeat ON workers (heartbeat_at);";

/// Schema version 5: the paused queues, one row each (a handful at most), so
/// a reservation skips a paused queue with one primary-key lookup.
const SCHEMA_V5: &str = "CREATE TABLE IF NOT EXISTS paused_queues (
         queue TEXT PRIMARY KEY
     ) WITHOUT ROWID;";

/// Schema version 11: workflows and their nodes.
const SCHEMA_V11: &str = "CREATE TABLE IF NOT EXISTS workflows (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         spec BLOB NOT NULL,
         body_left INTEGER NOT NULL,
         nodes_left INTEGER NOT NULL,
         failed INTEGER NOT NULL,
         outcome INTEGER,
         cancelled INTEGER NOT NULL DEFAULT 0,
         created_at INTEGER NOT NULL,
         ended_at INTEGER
     );
     CREATE INDEX IF NOT EXISTS workflows_running ON workflows (id) WHERE ended_at IS NULL;
     CREATE INDEX IF NOT EXISTS workflows_ended ON workflows (ended_at) WHERE ended_at IS NOT NULL;
     CREATE TABLE IF NOT EXISTS workflow_nodes (
         workflow INTEGER NOT NULL,
         node INTEGER NOT NULL,
         state INTEGER NOT NULL,
         waiting_on INTEGER NOT NULL,
         task INTEGER,
         result BLOB,
         error TEXT,
         PRIMARY KEY (workflow, node)
     ) WITHOUT ROWID;
     CREATE INDEX IF NOT EXISTS workflow_nodes_task ON workflow_nodes (task) WHERE task IS NOT NULL;";

/// Schema version 12: a workflow's declaration in a table of its own. In
/// the workflow's row (`workflows.spec`, now left empty), a large one (a
/// chord of 10,000) sat in overflow pages that every read and rewrite of
/// the tally walked: each node's settle cost the size of the whole
/// declaration.
const SCHEMA_V12: &str = "CREATE TABLE IF NOT EXISTS workflow_specs (
         id INTEGER PRIMARY KEY,
         spec BLOB NOT NULL
     );
     INSERT OR IGNORE INTO workflow_specs (id, spec)
         SELECT id, spec FROM workflows WHERE length(spec) > 0;
     UPDATE workflows SET spec = x'' WHERE length(spec) > 0;";

/// Schema version 13: the expansions of each workflow (nodes its running
/// nodes added, `conveyor_core::workflow::Expansion`), in the order they
/// were made, read back after the declaration.
const SCHEMA_V13: &str = "CREATE TABLE IF NOT EXISTS workflow_expansions (
         workflow INTEGER NOT NULL,
         seq INTEGER NOT NULL,
         spec BLOB NOT NULL,
         PRIMARY KEY (workflow, seq)
     ) WITHOUT ROWID;";

/// Schema version 14: periodic schedules (`conveyor_core::schedule`):
/// each one's declaration as JSON, paused or not, its next and last fire
/// times (ms), its last fire's task and how many fire times it passed
/// over; the leader's pass finds the due ones by `schedules_due`.
const SCHEMA_V14: &str = "CREATE TABLE IF NOT EXISTS schedules (
         name TEXT PRIMARY KEY,
         declared BLOB NOT NULL,
         paused INTEGER NOT NULL DEFAULT 0,
         next_fire INTEGER,
         last_fire INTEGER,
         last_task INTEGER,
         missed INTEGER NOT NULL DEFAULT 0
     ) WITHOUT ROWID;
     CREATE INDEX IF NOT EXISTS schedules_due ON schedules (next_fire) WHERE paused = 0;";

/// Schema version 7: the kept counts of tasks per queue, handler and state
/// (`crate::tally`), filled from the tasks already in the file.
const SCHEMA_V7: &str = "CREATE TABLE IF NOT EXISTS task_counts (
         queue TEXT NOT NULL,
         handler TEXT NOT NULL,
         state INTEGER NOT NULL,
         n INTEGER NOT NULL,
         PRIMARY KEY (queue, handler, state)
     ) WITHOUT ROWID;
     DELETE FROM task_counts;
     INSERT INTO task_counts (queue, handler, state, n)
         SELECT queue, handler, state, COUNT(*) FROM tasks GROUP BY queue, handler, state;";

/// Schema version 6: the task's trace context. A fresh file gets the column
/// from here too (version 1's table has none); `ALTER TABLE … ADD COLUMN`
/// with no default rewrites no row, so old files migrate at once.
fn add_trace_column(conn: &Connection) -> Result<(), String> {
    let has: bool = conn
        .query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('tasks') WHERE name = 'trace'",
            [],
            |row| row.get(0),
        )
        .map_err(db_err_string)?;
    if has {
        return Ok(());
    }
    conn.execute_batch("ALTER TABLE tasks ADD COLUMN trace TEXT")
        .map_err(db_err_string)
}

/// Schema version 8: each task's attempts (see `conveyor_core::attempt`):
/// `worker` and `started_at`, the latest attempt's worker and reservation
/// time (written by the reserving statement), and `history`, the settled
/// attempts as a JSON array (appended by the settling statement; NULL until
/// an attempt fails, so a task that succeeds at once never writes it). No
/// index: nothing looks tasks up by them. Idempotent, like version 6.
fn add_attempt_columns(conn: &Connection) -> Result<(), String> {
    add_columns(
        conn,
        &[
            ("worker", "TEXT"),
            ("started_at", "INTEGER"),
            ("history", "TEXT"),
        ],
    )
}

/// Schema version 10: a task's own keep and its expiry, and the index
/// pruning finds expired tasks by. Idempotent, like version 6; the columns
/// have no default, so no row is rewritten.
fn add_expiry_columns(conn: &Connection) -> Result<(), String> {
    add_columns(conn, &[("keep_ms", "INTEGER"), ("expires_at", "INTEGER")])?;
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS tasks_expiring ON tasks (expires_at) \
         WHERE expires_at IS NOT NULL;",
    )
    .map_err(db_err_string)
}

/// Adds each column `(name, type)` that `tasks` does not have yet.
fn add_columns(conn: &Connection, columns: &[(&str, &str)]) -> Result<(), String> {
    for (name, kind) in columns {
        let has: bool = conn
            .query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('tasks') WHERE name = ?1",
                [name],
                |row| row.get(0),
            )
            .map_err(db_err_string)?;
        if !has {
            conn.execute_batch(&format!("ALTER TABLE tasks ADD COLUMN {name} {kind}"))
                .map_err(db_err_string)?;
        }
    }
    Ok(())
}

/// Schema version 2: global handler limits. (Versions 2 to 8 also made
/// `tasks_running_handler`, which version 9 drops.)
const SCHEMA_V2: &str = "CREATE TABLE IF NOT EXISTS handler_limits (
         handler TEXT PRIMARY KEY,
         concurrency INTEGER,
         rate_count INTEGER,
         rate_per_us INTEGER,
         burst INTEGER,
         tat_us INTEGER
     );";

/// Schema version 9: a limited handler's running tasks are counted from the
/// kept counts, so the index that counted them goes.
const SCHEMA_V9: &str = "DROP INDEX IF EXISTS tasks_running_handler;";
