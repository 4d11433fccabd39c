//! The PostgreSQL floor under conveyor's PostgreSQL backend: the leanest
//! leased queue one would write by hand, on the same server, with bare
//! tokio-postgres. A schema of its own (dropped after) holds one table with
//! a primary key and two partial indexes (ready tasks by id, running tasks by
//! lease end); `n` rows are inserted by one server-side statement, then
//! [`LOOPS`] connections each repeat, until the table has nothing ready:
//!
//! - reserve: `UPDATE … FROM (SELECT id … ORDER BY id LIMIT 256 FOR UPDATE
//!   SKIP LOCKED)` setting the state, a new fencing token and the lease end,
//!   returning id, token and payload;
//! - finish: one `UPDATE … FROM unnest(ids, tokens)` that completes the rows
//!   whose token still matches.
//!
//! Each statement commits on its own, as the server is configured (fsync on
//! by default), as conveyor's reserve and finish do. Only this loop is timed,
//! as conveyor's `processed` rows time only the worker. What conveyor keeps
//! beyond it per task (queues, handlers, attempts and their history, kept
//! counts, results, ordering keys, handler limits, wake-ups for result
//! waiters) is the distance between the two figures.

use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use crate::report::Report;

/// Connections reserving and finishing side by side (two measured fastest
/// here: one leaves the server idle during each round trip, four wait on
/// each other's locks).
const LOOPS: usize = 2;
/// Tasks per reservation.
const BATCH: i64 = 256;
/// The longest the timed loop may take.
const LIMIT: Duration = Duration::from_secs(300);

/// Inserts `n` tasks, then reserves and finishes them all: tasks/s of the
/// second half, or why it could not run.
pub async fn measure(url: &str, n: usize) -> Result<f64, String> {
    // conveyor's own options (`?schema=`) mean nothing to a bare client.
    let base = url.split('?').next().unwrap_or(url);
    let admin = connect(base).await?;
    let schema = crate::namespace::unique("conveyor_bench_floor", '_');
    let result = run(base, &admin, &schema, n).await;
    let _ = admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await;
    result
}

async fn connect(url: &str) -> Result<Client, String> {
    let (client, connection) =
        tokio::time::timeout(Duration::from_secs(10), tokio_postgres::connect(url, NoTls))
            .await
            .map_err(|_| format!("no PostgreSQL server answered at {url}"))?
            .map_err(|e| format!("connect: {e}"))?;
    tokio::spawn(connection);
    Ok(client)
}

async fn run(url: &str, admin: &Client, schema: &str, n: usize) -> Result<f64, String> {
    let n = i64::try_from(n).map_err(|_| "too many tasks".to_string())?;
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.tasks (
                 id bigserial PRIMARY KEY,
                 state smallint NOT NULL DEFAULT 0,
                 token bigint NOT NULL DEFAULT 0,
                 lease_until timestamptz,
                 finished_at timestamptz,
                 payload bytea NOT NULL
             );
             CREATE INDEX ON {schema}.tasks (id) WHERE state = 0;
             CREATE INDEX ON {schema}.tasks (lease_until) WHERE state = 1;
             INSERT INTO {schema}.tasks (payload)
                 SELECT convert_to(g::text, 'UTF8') FROM generate_series(1, {n}) g;
             ANALYZE {schema}.tasks;"
        ))
        .await
        .map_err(|e| format!("create the floor's table: {e}"))?;
    let mut loops = Vec::with_capacity(LOOPS);
    for _ in 0..LOOPS {
        loops.push(connect(url).await?);
    }
    let t = Instant::now();
    let runs = loops.into_iter().map(|client| {
        let schema = schema.to_string();
        tokio::spawn(async move { drain(&client, &schema, t).await })
    });
    let mut done = 0;
    for run in futures_util::future::join_all(runs).await {
        done += run.map_err(|e| format!("a loop panicked: {e}"))??;
    }
    let rate = done as f64 / t.elapsed().as_secs_f64();
    if done != n as u64 {
        return Err(format!("{done} of {n} tasks finished"));
    }
    Ok(rate)
}

/// One connection's loop until nothing is ready; how many tasks it finished.
async fn drain(client: &Client, schema: &str, t: Instant) -> Result<u64, String> {
    // Planned for each call's own arrays: a generic plan of the finish joins
    // every running row with the arrays instead of looking ids up by key.
    client
        .batch_execute("SET plan_cache_mode = force_custom_plan")
        .await
        .map_err(|e| format!("set the plan mode: {e}"))?;
    let reserve = client
        .prepare(&format!(
            "UPDATE {schema}.tasks t
                SET state = 1, token = t.token + 1, lease_until = now() + interval '30 s'
               FROM (SELECT id FROM {schema}.tasks WHERE state = 0
                     ORDER BY id LIMIT {BATCH} FOR UPDATE SKIP LOCKED) picked
              WHERE t.id = picked.id
          RETURNING t.id, t.token, t.payload"
        ))
        .await
        .map_err(|e| format!("prepare the reserve: {e}"))?;
    let finish = client
        .prepare(&format!(
            "UPDATE {schema}.tasks t
                SET state = 2, finished_at = now(), lease_until = NULL
               FROM unnest($1::bigint[], $2::bigint[]) AS f(id, token)
              WHERE t.id = f.id AND t.token = f.token AND t.state = 1"
        ))
        .await
        .map_err(|e| format!("prepare the finish: {e}"))?;
    let mut done = 0u64;
    loop {
        let rows = client
            .query(&reserve, &[])
            .await
            .map_err(|e| format!("reserve: {e}"))?;
        if rows.is_empty() {
            return Ok(done);
        }
        let mut ids = Vec::with_capacity(rows.len());
        let mut tokens = Vec::with_capacity(rows.len());
        for row in &rows {
            let payload: &[u8] = row.get(2);
            std::hint::black_box(payload);
            ids.push(row.get::<_, i64>(0));
            tokens.push(row.get::<_, i64>(1));
        }
        let finished = client
            .execute(&finish, &[&ids, &tokens])
            .await
            .map_err(|e| format!("finish: {e}"))?;
        if finished != ids.len() as u64 {
            return Err(format!(
                "{finished} of {} reserved tasks finished",
                ids.len()
            ));
        }
        done += finished;
        if t.elapsed() > LIMIT {
            return Err(format!("still draining after {LIMIT:?}"));
        }
    }
}

/// The floor on the server of `url` for `n` tasks, printed beside conveyor's
/// 500-slot `processed` rate with its ratio to it (the floor holds up to 512
/// tasks at once; a 50-slot worker is not the same workload).
pub async fn beside(
    report: &mut Report,
    bench: &str,
    url: &str,
    n: usize,
    processed: &[crate::queue::Processed],
) {
    let floor = crate::queue::Floor {
        subject: "bare tokio-postgres reserve+finish, 2 loops",
        unit: "tasks/s",
        versus: "vs bare PostgreSQL",
        baseline: "bare tokio-postgres",
    };
    let rows = processed.iter().filter(|row| row.slots >= 500);
    floor.report(report, bench, measure(url, n).await, rows);
}
