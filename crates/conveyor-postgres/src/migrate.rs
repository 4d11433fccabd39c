//! Versioned migrations of a conveyor schema.
//!
//! Each migration is a numbered batch of DDL; the schema's `migrations` table
//! records the versions applied. [`migrate`] runs every pending one in a single
//! transaction under an advisory lock keyed by the schema, so several workers
//! starting at once apply each migration exactly once (the others wait for the
//! lock, then find nothing left to do), and a failed migration leaves the schema
//! as it was. A migration, once released, never changes: a new shape of the
//! tables is a new version.

use conveyor_core::{Error, Timestamp};
use tokio_postgres::Client;

use crate::error::db;
use crate::schema::Schema;
use crate::statements::Predicates;

/// The schema version this build of the backend creates and expects.
pub const SCHEMA_VERSION: i32 = 13;

/// What a call to [`PostgresBackend::migrate`](crate::PostgresBackend::migrate) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// The schema's version before the call (0: the schema was empty or absent).
    pub from: i32,
    /// Its version after the call.
    pub to: i32,
}

impl Migrated {
    /// True when the call applied at least one migration.
    pub fn changed(&self) -> bool {
        self.from != self.to
    }
}

/// One migration: its version, a short name and its DDL.
struct Migration {
    version: i32,
    name: &'static str,
    sql: String,
}

/// Every migration, oldest first.
fn migrations(schema: &Schema) -> Vec<Migration> {
    let t = schema.table("tasks");
    let seq = schema.table("tasks_id_seq");
    let p = Predicates::new();
    vec![
        Migration {
            version: 1,
            name: "tasks table and its indexes",
            // Times are milliseconds since the Unix epoch from the backend's clock.
            // Fixed-width columns come first (alignment), variable ones last. The
            // table is updated at every step of a task's life, and every update
            // changes `state`, which the partial indexes' predicates read, so
            // updates are never HOT: a fillfactor under 100 keeps each new row
            // version on its page, and vacuum runs early.
            sql: format!(
                "CREATE SEQUENCE {seq};
             CREATE TABLE {t} (
                 id           bigint   PRIMARY KEY DEFAULT nextval('{seq}'),
                 run_at       bigint   NOT NULL,
                 created_at   bigint   NOT NULL,
                 lease_until  bigint,
                 finished_at  bigint,
                 timeout_ms   bigint,
                 token        bigint   NOT NULL DEFAULT 0,
                 priority     integer  NOT NULL DEFAULT 0,
                 attempts     integer  NOT NULL DEFAULT 0,
                 max_attempts integer  NOT NULL,
                 state        smallint NOT NULL,
                 queue        text     NOT NULL,
                 handler      text     NOT NULL,
                 unique_key   text,
                 ordering_key text,
                 error        text,
                 payload      bytea    NOT NULL,
                 result       bytea
             ) WITH (fillfactor = 80,
                     autovacuum_vacuum_scale_factor = 0.02,
                     autovacuum_analyze_scale_factor = 0.05);
             ALTER SEQUENCE {seq} OWNED BY {t}.id;
             CREATE INDEX tasks_available ON {t} (queue, priority DESC, id) WHERE {available};
             CREATE INDEX tasks_due ON {t} (run_at) WHERE {timed};
             CREATE INDEX tasks_leased ON {t} (lease_until) WHERE {lease_index};
             CREATE INDEX tasks_ordering ON {t} (queue, ordering_key, id)
                 WHERE ordering_key IS NOT NULL AND {unfinished};
             CREATE UNIQUE INDEX tasks_unique ON {t} (queue, unique_key)
                 WHERE unique_key IS NOT NULL AND {unfinished};
             CREATE INDEX tasks_finished ON {t} (state, finished_at) WHERE {finished};",
                available = p.available,
                timed = p.timed,
                lease_index = p.lease_index,
                unfinished = p.unfinished,
                finished = p.finished,
            ),
        },
        Migration {
            version: 2,
            name: "global handler limits",
            // One row per limited handler: its limits and the rate's state (the
            // theoretical arrival time of the next start, µs since the epoch).
            // Running tasks were counted per handler through a partial index on
            // the lease predicate (set exactly while a task runs), until
            // migration 9 dropped it.
            sql: format!(
                "CREATE TABLE {limits} (
                 handler     text    PRIMARY KEY,
                 concurrency integer,
                 rate_count  integer,
                 rate_per_us bigint,
                 burst       integer,
                 tat_us      bigint
             );
             CREATE INDEX tasks_running_handler ON {t} (handler) WHERE {lease_index};",
                limits = schema.table("handler_limits"),
                lease_index = p.lease_index,
            ),
        },
        Migration {
            version: 3,
            name: "maintenance leaders",
            // The leader of each maintenance role and the end of its term
            // (milliseconds, the backend's clock).
            sql: format!(
                "CREATE TABLE {leaders} (
                 role   text   PRIMARY KEY,
                 holder text   NOT NULL,
                 until  bigint NOT NULL
             );",
                leaders = schema.table("leaders"),
            ),
        },
        Migration {
            version: 4,
            name: "worker registry",
            // Each worker's latest heartbeat (the JSON of a WorkerInfo) and
            // its time (milliseconds, the worker's clock).
            sql: format!(
                "CREATE TABLE {workers} (
                 id           text   PRIMARY KEY,
                 heartbeat_at bigint NOT NULL,
                 info         text   NOT NULL
             );
             CREATE INDEX workers_heartbeat ON {workers} (heartbeat_at);",
                workers = schema.table("workers"),
            ),
        },
        Migration {
            version: 5,
            name: "paused queues",
            // One row per paused queue (a handful at most): every reservation
            // checks its queue against it once, by primary key.
            sql: format!(
                "CREATE TABLE {paused} (queue text PRIMARY KEY);",
                paused = schema.table("paused_queues"),
            ),
        },
        Migration {
            version: 6,
            name: "trace contexts",
            // The W3C trace context given at enqueue (`traceparent`, then a
            // newline and `tracestate` when there is one); NULL for none and for
            // rows written before. Adding a nullable column rewrites no row.
            sql: format!("ALTER TABLE {t} ADD COLUMN trace text;"),
        },
        Migration {
            version: 7,
            name: "kept counts per queue, handler and state",
            // Statement-level triggers add, for each statement that changed
            // tasks, one row per queue, handler and state it changed (a count
            // difference), into a table with no key: writers only insert, so
            // no worker waits on a counter row another holds. Reads sum the
            // rows and maintenance folds them (`inspect::compact`). Rows the
            // table held before are counted once here. An update that changes
            // no state (a lease renewed) adds nothing.
            sql: format!(
                "CREATE TABLE {c} (queue text NOT NULL, handler text NOT NULL, state smallint NOT NULL,
                                   n bigint NOT NULL);
                 CREATE FUNCTION {s}.count_inserted() RETURNS trigger LANGUAGE plpgsql AS $f$
                 BEGIN
                     INSERT INTO {c} (queue, handler, state, n)
                     SELECT queue, handler, state, count(*) FROM new_rows
                     GROUP BY queue, handler, state;
                     RETURN NULL;
                 END $f$;
                 CREATE FUNCTION {s}.count_updated() RETURNS trigger LANGUAGE plpgsql AS $f$
                 BEGIN
                     INSERT INTO {c} (queue, handler, state, n)
                     SELECT queue, handler, state, sum(d) FROM (
                         SELECT queue, handler, state, 1 AS d FROM new_rows
                         UNION ALL
                         SELECT queue, handler, state, -1 AS d FROM old_rows
                     ) changed GROUP BY queue, handler, state HAVING sum(d) <> 0;
                     RETURN NULL;
                 END $f$;
                 CREATE FUNCTION {s}.count_deleted() RETURNS trigger LANGUAGE plpgsql AS $f$
                 BEGIN
                     INSERT INTO {c} (queue, handler, state, n)
                     SELECT queue, handler, state, -count(*) FROM old_rows
                     GROUP BY queue, handler, state;
                     RETURN NULL;
                 END $f$;
                 CREATE TRIGGER tasks_count_inserted AFTER INSERT ON {t}
                     REFERENCING NEW TABLE AS new_rows
                     FOR EACH STATEMENT EXECUTE FUNCTION {s}.count_inserted();
                 CREATE TRIGGER tasks_count_updated AFTER UPDATE ON {t}
                     REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                     FOR EACH STATEMENT EXECUTE FUNCTION {s}.count_updated();
                 CREATE TRIGGER tasks_count_deleted AFTER DELETE ON {t}
                     REFERENCING OLD TABLE AS old_rows
                     FOR EACH STATEMENT EXECUTE FUNCTION {s}.count_deleted();
                 INSERT INTO {c} (queue, handler, state, n)
                     SELECT queue, handler, state, count(*) FROM {t}
                     GROUP BY queue, handler, state;",
                c = schema.table("task_counts"),
                s = schema.quoted(),
            ),
        },
        Migration {
            version: 8,
            name: "attempt history",
            // Each task's attempts (see `conveyor_core::attempt`): the latest
            // attempt's worker and reservation time, written by the reserving
            // statement, and the settled attempts as a JSON array, appended by
            // the settling statement (NULL until an attempt fails, so a task
            // that succeeds at once never writes it). No index: nothing looks
            // tasks up by them. Nullable columns without a default rewrite no
            // row.
            sql: format!(
                "ALTER TABLE {t} ADD COLUMN worker text, ADD COLUMN started_at bigint,
                 ADD COLUMN history jsonb;"
            ),
        },
        Migration {
            version: 9,
            name: "running tasks counted from the kept counts",
            // A limited handler's running tasks are summed from `task_counts`
            // (migration 7) now, so the index that counted them goes. Every
            // reservation wrote an entry into it, all under a handful of keys
            // (the handler names), and every settlement left one dead: pages
            // of equal keys that PostgreSQL kept clearing on the hot path.
            sql: format!(
                "DROP INDEX IF EXISTS {index};",
                index = schema.table("tasks_running_handler")
            ),
        },
        Migration {
            version: 10,
            name: "finished tasks expiring one by one",
            // A task's own keep (given at enqueue) and its expiry (stamped
            // by its finish from that keep or its handler's retention), with
            // an index over the tasks that have one, by which pruning finds
            // them. A task with none is pruned by the retention `prune` is
            // given, as before. Nullable columns without a default rewrite
            // no row. Idempotent, so a schema taken back to an older
            // version by hand (keeping these) migrates again.
            sql: format!(
                "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS keep_ms bigint,
                     ADD COLUMN IF NOT EXISTS expires_at bigint;
                 CREATE INDEX IF NOT EXISTS tasks_expiring ON {t} (expires_at)
                     WHERE expires_at IS NOT NULL;"
            ),
        },
        Migration {
            version: 11,
            name: "workflows",
            // A workflow's declaration (`conveyor_core::workflow::stored`)
            // and tally, one row per node (its state, how many dependencies
            // it waits on, its task and, once settled, its result), and the
            // node tasks that reached a final state and are still to be
            // settled: the statements that end tasks (finish, cancel, lease
            // recovery) record those themselves, in a data-modifying CTE of
            // the same statement, and whoever ended them settles them right
            // after, in one transaction each (`crate::workflows`), so no
            // end of a node's task can be missed or settled twice. Node
            // tasks carry their workflow. Idempotent, like migration 10.
            sql: format!(
                "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS workflow bigint;
                 CREATE TABLE IF NOT EXISTS {w} (
                     id         bigint   PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY,
                     created_at bigint   NOT NULL,
                     ended_at   bigint,
                     body_left  integer  NOT NULL,
                     nodes_left integer  NOT NULL,
                     failed     boolean  NOT NULL DEFAULT false,
                     cancelled  boolean  NOT NULL DEFAULT false,
                     outcome    smallint,
                     spec       bytea    NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS workflows_ended ON {w} (ended_at) WHERE ended_at IS NOT NULL;
                 CREATE TABLE IF NOT EXISTS {n} (
                     workflow   bigint   NOT NULL REFERENCES {w} (id) ON DELETE CASCADE,
                     node       integer  NOT NULL,
                     state      smallint NOT NULL,
                     waiting_on integer  NOT NULL,
                     task       bigint,
                     error      text,
                     result     bytea,
                     PRIMARY KEY (workflow, node)
                 );
                 CREATE INDEX IF NOT EXISTS workflow_nodes_task ON {n} (task) WHERE task IS NOT NULL;
                 CREATE TABLE IF NOT EXISTS {settles} (task bigint PRIMARY KEY);",
                w = schema.table("workflows"),
                n = schema.table("workflow_nodes"),
                settles = schema.table("workflow_settles"),
            ),
        },
        Migration {
            version: 12,
            name: "workflow expansions",
            // The nodes a workflow's running nodes added
            // (`conveyor_core::workflow::Expansion`), one row per
            // expansion in the order they were made, read back after the
            // declaration; they go with their workflow. Idempotent.
            sql: format!(
                "CREATE TABLE IF NOT EXISTS {x} (
                     workflow bigint  NOT NULL REFERENCES {w} (id) ON DELETE CASCADE,
                     seq      integer NOT NULL,
                     spec     bytea   NOT NULL,
                     PRIMARY KEY (workflow, seq)
                 );",
                w = schema.table("workflows"),
                x = schema.table("workflow_expansions"),
            ),
        },
        Migration {
            version: 13,
            name: "periodic schedules",
            // One row per schedule (`conveyor_core::schedule`): its
            // declaration (JSON), paused or not, its next and last fire
            // times (ms), its last fire's task and the fire times it passed
            // over; the leader's pass finds the due ones by
            // `schedules_due`. Idempotent.
            sql: format!(
                "CREATE TABLE IF NOT EXISTS {s} (
                     name      text    PRIMARY KEY,
                     declared  bytea   NOT NULL,
                     paused    boolean NOT NULL DEFAULT false,
                     next_fire bigint,
                     last_fire bigint,
                     last_task bigint,
                     missed    bigint  NOT NULL DEFAULT 0
                 );
                 CREATE INDEX IF NOT EXISTS schedules_due ON {s} (next_fire) WHERE NOT paused;",
                s = schema.table("schedules"),
            ),
        },
    ]
}

/// The schema's version, or `None` when it has no migrations table (never
/// migrated, or absent). Reads only.
pub(crate) async fn version(client: &Client, schema: &Schema) -> Result<Option<i32>, Error> {
    let what = "reading the schema version";
    let table = schema.table("migrations");
    let exists = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .map_err(|e| db(what, e))?;
    let exists: bool = exists.try_get(0).map_err(|e| db(what, e))?;
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {table}"),
            &[],
        )
        .await
        .map_err(|e| db(what, e))?;
    Ok(Some(row.try_get(0).map_err(|e| db(what, e))?))
}

/// Creates the schema if needed and applies every pending migration, in one
/// transaction under the schema's advisory lock. `now` is recorded with each
/// applied version.
pub(crate) async fn migrate(
    client: &mut Client,
    schema: &Schema,
    now: Timestamp,
) -> Result<Migrated, Error> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| db("starting the migration", e))?;
    let (class, object) = schema.migration_lock();
    tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&class, &object])
        .await
        .map_err(|e| db("taking the migration lock", e))?;
    let table = schema.table("migrations");
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {table} (
             version    integer PRIMARY KEY,
             name       text    NOT NULL,
             applied_at bigint  NOT NULL
         );",
        schema = schema.quoted(),
    ))
    .await
    .map_err(|e| db("creating the migrations table", e))?;
    let row = tx
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {table}"),
            &[],
        )
        .await
        .map_err(|e| db("reading the schema version", e))?;
    let from: i32 = row
        .try_get(0)
        .map_err(|e| db("reading the schema version", e))?;
    if from > SCHEMA_VERSION {
        tracing::warn!(
            schema = %schema,
            version = from,
            known = SCHEMA_VERSION,
            "the schema is newer than this build of conveyor-postgres knows"
        );
    }
    let mut to = from;
    for m in migrations(schema).into_iter().filter(|m| m.version > from) {
        tx.batch_execute(&m.sql)
            .await
            .map_err(|e| db(&format!("applying migration {} ({})", m.version, m.name), e))?;
        tx.execute(
            &format!("INSERT INTO {table} (version, name, applied_at) VALUES ($1, $2, $3)"),
            &[&m.version, &m.name, &now.as_millis()],
        )
        .await
        .map_err(|e| db("recording a migration", e))?;
        tracing::info!(schema = %schema, version = m.version, name = m.name, "applied migration");
        to = m.version;
    }
    tx.commit()
        .await
        .map_err(|e| db("committing the migrations", e))?;
    Ok(Migrated { from, to })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_and_end_at_the_current_one() {
        let schema = Schema::new("x").expect("valid");
        let ms = migrations(&schema);
        assert!(ms.windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(ms.last().map(|m| m.version), Some(SCHEMA_VERSION));
    }
}
