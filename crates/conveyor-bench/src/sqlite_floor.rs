//! The SQLite floor under conveyor's embedded store: the leanest leased queue
//! one would write by hand on one file, with bare rusqlite and the store's own
//! durability (WAL, `synchronous = FULL`: an fsync per commit). One table with
//! a primary key and two partial indexes (ready tasks by id, running tasks by
//! lease end) in a fresh file (deleted after); `n` rows inserted, then one
//! thread loops, holding at most `slots` tasks:
//!
//! - one transaction completes the tasks reserved by the one before (each by
//!   id and fencing token, one statement) and reserves the next `slots`
//!   (state, a new token, the lease end; returning id, token and payload),
//!   then commits: one fsync for each batch, both halves of it;
//! - the tasks "run" in between (no-ops).
//!
//! That is the best a single process can do with one fsync per batch: every
//! commit both finishes a batch and reserves the next, with nothing else in
//! it. Only the loop is timed, as conveyor's `processed` rows time only the
//! worker.
//!
//! The same loop also runs on conveyor's own table ([`Table::Conveyor`]: a
//! file made and filled by conveyor's embedded store, its 22 columns and 7
//! partial indexes, and the store's statement shapes), which splits the
//! distance in two: what the table costs, and what the rest of conveyor
//! (kept counts, savepoints, handing tasks to the engine and results back)
//! costs on top. A third run on conveyor's table without the five indexes
//! the hot path never reads ([`Table::ConveyorReadyAndLease`]) says how much
//! of the table's cost is its indexes and how much its width.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conveyor::durable::NewTask;
use conveyor::TaskState;
use rusqlite::{params_from_iter, Connection};

use crate::report::Report;

/// The longest the timed loop may take.
const LIMIT: Duration = Duration::from_secs(300);

/// Which table the loop runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Six columns, two partial indexes.
    Lean,
    /// conveyor's own, made and filled by its embedded store.
    Conveyor,
    /// conveyor's own, keeping only its ready and lease indexes.
    ConveyorReadyAndLease,
}

/// conveyor's indexes that the reserve and finish of a plain task never
/// read (they serve delays, unique and ordering keys, pruning).
const UNREAD_INDEXES: [&str; 5] = [
    "tasks_due",
    "tasks_unique",
    "tasks_ordering",
    "tasks_ordering_running",
    "tasks_finished",
];

/// The statements of one table, with times in milliseconds as the store
/// keeps them: the reserve (`?1` the lease's end, `?2` now, which the lean
/// table does not keep, `?3` how many; it returns id, token and payload) and
/// the finish (now first, then the `(id, token)` of each task of the batch,
/// spliced in at `{rows}`).
struct Statements {
    reserve: String,
    finish: String,
}

impl Table {
    fn statements(self) -> Statements {
        match self {
            Table::Lean => Statements {
                reserve: "UPDATE tasks SET state = 1, token = token + 1, lease_until = ?1
                           WHERE id IN (SELECT id FROM tasks WHERE state = 0
                                        ORDER BY id LIMIT ?3)
                       RETURNING id, token, payload"
                    .into(),
                finish: "UPDATE tasks SET state = 2, finished_at = ?, lease_until = NULL
                           FROM (VALUES {rows}) AS f
                          WHERE tasks.id = f.column1 AND tasks.token = f.column2
                            AND tasks.state = 1"
                    .into(),
            },
            // The columns the store's reserve and finish write, and the
            // lookup of its ready index (queue, priority, id).
            Table::Conveyor | Table::ConveyorReadyAndLease => {
                let available = TaskState::Available.code();
                let running = TaskState::Running.code();
                let completed = TaskState::Completed.code();
                Statements {
                    reserve: format!(
                        "UPDATE tasks SET state = {running}, attempts = attempts + 1,
                                token = token + 1, lease_until = ?1,
                                worker = 'conveyor-bench-floor', started_at = ?2
                          WHERE id IN (SELECT id FROM tasks
                                        WHERE state IN ({available}) AND queue = 'default'
                                        ORDER BY priority DESC, id LIMIT ?3)
                      RETURNING id, token, payload"
                    ),
                    finish: format!(
                        "UPDATE tasks SET state = {completed}, result = x'6e756c6c',
                                finished_at = ?, lease_until = NULL
                           FROM (VALUES {{rows}}) AS f
                          WHERE tasks.id = f.column1 AND tasks.token = f.column2
                            AND tasks.state IN ({running})"
                    ),
                }
            }
        }
    }
}

/// Inserts `n` tasks in a fresh file, then reserves and finishes them all
/// with at most `slots` held at once: tasks/s of the second half, or why it
/// could not run.
pub async fn measure(table: Table, n: usize, slots: usize) -> Result<f64, String> {
    let path = std::env::temp_dir().join(format!(
        "{}.db",
        crate::namespace::unique("conveyor-bench-floor", '-')
    ));
    let result = async {
        if table != Table::Lean {
            fill_with_conveyor(&path, n).await?;
        }
        let p = path.clone();
        tokio::task::spawn_blocking(move || run(&p, table, n, slots.max(1)))
            .await
            .unwrap_or_else(|e| Err(format!("the loop panicked: {e}")))
    }
    .await;
    crate::namespace::remove_db(&path);
    result
}

/// Makes the file with conveyor's embedded store and enqueues `n` no-op
/// tasks through it, as conveyor's `processed` rows do.
async fn fill_with_conveyor(path: &Path, n: usize) -> Result<(), String> {
    let url = format!("embedded://{}", path.display());
    let backend = conveyor::durable::connect(&url)
        .await
        .map_err(|e| format!("open {url}: {e}"))?;
    for chunk in 0..n.div_ceil(1000) {
        let tasks = (chunk * 1000..n.min(chunk * 1000 + 1000))
            .map(|i| NewTask::new("noop", i.to_string().into_bytes()))
            .collect();
        backend
            .enqueue_many(tasks)
            .await
            .map_err(|e| format!("enqueue: {e}"))?;
    }
    Ok(())
}

fn run(path: &Path, table: Table, n: usize, slots: usize) -> Result<f64, String> {
    let mut conn = Connection::open(path).map_err(err("open"))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(err("WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("the file stays in {mode} journal mode"));
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 4096;")
        .map_err(err("pragmas"))?;
    match table {
        Table::Lean => create_lean(&mut conn, n)?,
        Table::Conveyor => {}
        Table::ConveyorReadyAndLease => {
            for index in UNREAD_INDEXES {
                conn.execute_batch(&format!("DROP INDEX {index}"))
                    .map_err(err("drop an index"))?;
            }
        }
    }
    let statements = table.statements();
    let t = Instant::now();
    let mut held: Vec<(i64, i64)> = Vec::with_capacity(slots);
    let mut done = 0usize;
    loop {
        let now = millis_since_epoch();
        let tx = conn.transaction().map_err(err("begin"))?;
        if !held.is_empty() {
            // One statement completes the whole batch, each row by id and token.
            let rows = vec!["(?, ?)"; held.len()].join(", ");
            let sql = statements.finish.replace("{rows}", &rows);
            let values = held.iter().flat_map(|&(id, token)| [id, token]);
            let finished = tx
                .prepare_cached(&sql)
                .and_then(|mut s| s.execute(params_from_iter(std::iter::once(now).chain(values))))
                .map_err(err("finish"))?;
            if finished != held.len() {
                return Err(format!("{finished} of {} held tasks finished", held.len()));
            }
            done += finished;
            held.clear();
        }
        {
            let mut reserve = tx
                .prepare_cached(&statements.reserve)
                .map_err(err("prepare the reserve"))?;
            let mut rows = reserve
                .query(rusqlite::params![now + 30_000, now, slots as i64])
                .map_err(err("reserve"))?;
            while let Some(row) = rows.next().map_err(err("reserve"))? {
                let payload: &[u8] = row
                    .get_ref(2)
                    .and_then(|v| Ok(v.as_blob()?))
                    .map_err(err("payload"))?;
                std::hint::black_box(payload);
                held.push((
                    row.get(0).map_err(err("id"))?,
                    row.get(1).map_err(err("token"))?,
                ));
            }
        }
        tx.commit().map_err(err("commit"))?;
        if held.is_empty() {
            break;
        }
        if t.elapsed() > LIMIT {
            return Err(format!("still draining after {LIMIT:?}"));
        }
    }
    let rate = done as f64 / t.elapsed().as_secs_f64();
    if done != n {
        return Err(format!("{done} of {n} tasks finished"));
    }
    Ok(rate)
}

/// The lean table with `n` ready tasks.
fn create_lean(conn: &mut Connection, n: usize) -> Result<(), String> {
    conn.execute_batch(
        "CREATE TABLE tasks (
             id INTEGER PRIMARY KEY,
             state INTEGER NOT NULL DEFAULT 0,
             token INTEGER NOT NULL DEFAULT 0,
             lease_until INTEGER,
             finished_at INTEGER,
             payload BLOB NOT NULL
         );
         CREATE INDEX tasks_ready ON tasks (id) WHERE state = 0;
         CREATE INDEX tasks_leased ON tasks (lease_until) WHERE state = 1;",
    )
    .map_err(err("create the table"))?;
    let tx = conn.transaction().map_err(err("begin"))?;
    {
        let mut insert = tx
            .prepare("INSERT INTO tasks (payload) VALUES (?1)")
            .map_err(err("prepare the insert"))?;
        for i in 0..n {
            insert
                .execute([i.to_string().into_bytes()])
                .map_err(err("insert"))?;
        }
    }
    tx.commit().map_err(err("commit the inserts"))?;

    Ok(())
}

/// Says which step failed.
fn err(what: &'static str) -> impl Fn(rusqlite::Error) -> String {
    move |e| format!("{what}: {e}")
}

fn millis_since_epoch() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The floor for `n` tasks at each of conveyor's `processed` slot counts, on
/// the lean table and on conveyor's, printed beside those rates with their
/// ratios to each.
pub async fn beside(
    report: &mut Report,
    bench: &str,
    n: usize,
    processed: &[crate::queue::Processed],
) {
    for row in processed {
        let slots = row.slots;
        let tables = [
            (Table::Lean, "a lean table"),
            (Table::Conveyor, "conveyor's table"),
            (
                Table::ConveyorReadyAndLease,
                "conveyor's table, ready and lease indexes only",
            ),
        ];
        for (table, which) in tables {
            let subject = format!("bare rusqlite on {which}, {slots} held, fsync");
            let versus = format!("vs bare SQLite on {which}");
            let floor = crate::queue::Floor {
                subject: &subject,
                unit: "tasks/s",
                versus: &versus,
                baseline: "bare rusqlite",
            };
            floor.report(report, bench, measure(table, n, slots).await, [row]);
        }
    }
}
