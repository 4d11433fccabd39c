//! The SQL text of every statement the backend runs, built once per schema.
//!
//! Every `state IN (…)` clause comes from [`Transition::sources`] (through
//! [`Transition::source_codes`]) and every state written is a
//! [`Transition::target`], so the task state machine stays written down in one
//! place, `conveyor-core`. Times are never the server's `now()`: each statement
//! takes the backend clock's reading as a parameter (milliseconds since the
//! epoch), so a manual clock drives delays, leases and retention in tests.
//!
//! The partial indexes created by the migrations use the same clauses
//! ([`Predicates`]), which is what lets the planner match a query to its index.

use conveyor_core::attempt::{ERROR_CHARS, HISTORY_LIMIT};
use conveyor_core::{codes, TaskState, Transition, CANCELLED_WHILE_RUNNING};

use crate::schema::Schema;

/// Kinds of report in the `finish` arrays (private to this crate; never stored).
pub(crate) mod kind {
    /// `FinishAction::Complete`.
    pub const COMPLETE: i16 = 0;
    /// `FinishAction::Retry`.
    pub const RETRY: i16 = 1;
    /// `FinishAction::DeadLetter`.
    pub const DEAD_LETTER: i16 = 2;
    /// `FinishAction::Discard`.
    pub const DISCARD: i16 = 3;
    /// `FinishAction::Release`.
    pub const RELEASE: i16 = 4;
}

/// The error stored on a task whose lease ran out with attempts left.
pub(crate) const EXPIRED: &str = "lease expired";
/// The error stored on a task whose lease ran out on its last attempt.
pub(crate) const EXPIRED_FINAL: &str = "lease expired on the last attempt";

/// The token a reservation draws: random, not the last one plus one. With
/// asynchronous replication a failover can lose a reservation the old
/// primary committed (and a counter with it), and a counter would then hand
/// the next reservation the lost one's token, letting its worker, still
/// running, settle the new attempt. A 52-bit random draw repeats one token
/// about once in 4.5 × 10¹⁵ (`docs/high-availability.md`).
pub(crate) const NEW_TOKEN: &str = "(random() * 4503599627370496)::bigint";

/// Longest queue name carried in a notification payload (PostgreSQL caps a
/// payload under 8000 bytes; listeners compare the same prefix).
pub(crate) const NOTIFY_QUEUE_CHARS: usize = 1000;

/// Longest list of finished ids one notification carries (PostgreSQL refuses
/// a payload of 8000 bytes or more); a statement that finished more sends an
/// empty payload, "something finished", and every result waiter looks again.
pub(crate) const NOTIFY_IDS_BYTES: usize = 7900;

/// The columns of a [`TaskRecord`](conveyor_core::TaskRecord), in the order
/// `row::record` reads them.
pub(crate) const RECORD_COLUMNS: &str = "id, queue, handler, state, payload, priority, attempts, \
     max_attempts, run_at, unique_key, ordering_key, result, error, created_at, finished_at, trace, \
     worker, started_at, history::text, keep_ms, expires_at";

/// The `history` column of the task `t` with its latest attempt (its
/// `attempts`, `worker` and `started_at` before the update) appended, ended
/// at `end` as `outcome` with the error `text` (SQL expressions), keeping the
/// latest [`HISTORY_LIMIT`] and clipping the text to [`ERROR_CHARS`]
/// characters: the stored form `conveyor_core::attempt` reads. A history
/// that is not a JSON array starts again empty rather than failing the
/// update.
pub(crate) fn append_history(end: &str, outcome: &str, text: &str) -> String {
    let base = "(CASE WHEN jsonb_typeof(t.history) = 'array' THEN t.history ELSE '[]'::jsonb END)";
    format!(
        "(CASE WHEN jsonb_array_length({base}) >= {HISTORY_LIMIT} THEN {base} - 0 ELSE {base} END)
         || jsonb_build_array(jsonb_build_object('n', t.attempts, 'w', t.worker,
              's', t.started_at, 'e', ({end})::bigint, 'o', ({outcome})::text,
              'x', left(({text})::text, {ERROR_CHARS})))"
    )
}

/// The `WHERE` clauses shared by the partial indexes and the queries they serve.
pub(crate) struct Predicates {
    /// Tasks a worker may reserve.
    pub available: String,
    /// Tasks waiting for their run-at (scheduled, retrying).
    pub timed: String,
    /// Tasks under a lease.
    pub leased: String,
    /// The lease-expiry index's predicate. `lease_until` is set exactly while a
    /// task runs; predicating on it rather than on `state` keeps that index out
    /// of reach of the statements that look tasks up by id (`finish`, `renew`),
    /// whose check `state IN (running)` would otherwise match it and tempt the
    /// planner into scanning every lease.
    pub lease_index: &'static str,
    /// Tasks that hold their unique and ordering keys.
    pub unfinished: String,
    /// Tasks whose outcome is decided (pruned by retention).
    pub finished: String,
}

impl Predicates {
    pub(crate) fn new() -> Self {
        Self {
            available: format!("state IN ({})", Transition::Reserve.source_codes()),
            timed: format!("state IN ({})", Transition::Due.source_codes()),
            leased: format!("state IN ({})", Transition::Expire.source_codes()),
            lease_index: "lease_until IS NOT NULL",
            unfinished: format!("state IN ({})", codes(&TaskState::UNFINISHED)),
            finished: format!("state IN ({})", codes(&TaskState::FINISHED)),
        }
    }
}

/// Every statement, as text for one schema.
#[derive(Debug, Clone)]
pub(crate) struct Statements {
    pub enqueue: String,
    pub enqueue_quiet: String,
    pub find_unique: String,
    pub promote: String,
    pub reserve: String,
    pub renew: String,
    pub finish: String,
    pub finish_retained: String,
    pub cancel: String,
    pub state_of: String,
    pub get: String,
    pub recover: String,
    pub prune_finished: String,
    pub prune_dead: String,
    pub prune_expired: String,
    pub list_oldest: String,
    pub list_newest: String,
    pub requeue: String,
    pub purge: String,
}

/// `SELECT count(pg_notify(channel, queue))` over the distinct queues of `rows`
/// whose state is `state`: a scalar that, when read, sends one wake-up per queue
/// inside the statement's transaction (delivered at commit).
fn notify(rows: &str, state: TaskState, channel_param: &str) -> String {
    notify_queues(
        &format!("{rows} WHERE state = {code}", code = state.code()),
        channel_param,
    )
}

/// A scalar that sends one wake-up on the channel `channel_param` per
/// distinct `queue` of `from` (a `FROM` clause), each cut to the
/// [`NOTIFY_QUEUE_CHARS`] characters listeners compare.
pub(crate) fn notify_queues(from: &str, channel_param: &str) -> String {
    format!(
        "(SELECT count(pg_notify({channel_param}, n.q)) FROM \
           (SELECT DISTINCT left(queue, {NOTIFY_QUEUE_CHARS}) AS q FROM {from}) n)"
    )
}

/// `SELECT count(pg_notify(channel, ids))`: one notification listing the ids
/// (comma-separated) of the rows of `rows` that are now finished, none when
/// there are none. A scalar evaluated once per statement, so a batch costs one
/// notification, sent inside the statement's transaction (delivered at
/// commit).
fn notify_finished(rows: &str, channel_param: &str) -> String {
    format!(
        "(SELECT count(pg_notify({channel_param},
                 CASE WHEN length(f.ids) <= {NOTIFY_IDS_BYTES} THEN f.ids ELSE '' END))
          FROM (SELECT string_agg(id::text, ',') AS ids FROM {rows}
                WHERE state IN ({finished})) f
          WHERE f.ids IS NOT NULL)",
        finished = codes(&TaskState::FINISHED)
    )
}

/// A data-modifying CTE (`, ended AS (…)`) recording, in the statement that
/// ended them, the workflow node tasks among `rows` that reached a final
/// state, for their nodes to be settled (`crate::workflows`): the same
/// statement, so an end is recorded exactly when it happens. Tasks outside
/// workflows pass the `IS NOT NULL` test and nothing more.
fn record_node_ends(rows: &str, settles: &str) -> String {
    format!(
        ",
             ended AS (
                INSERT INTO {settles} (task)
                SELECT {rows}.id FROM {rows}
                WHERE {rows}.workflow IS NOT NULL AND {rows}.state IN ({finished})
                ON CONFLICT DO NOTHING
             )",
        finished = codes(&TaskState::FINISHED)
    )
}

/// The condition on a candidate `t` for reserving: only the head of an
/// ordering key (no unfinished task of the key with a lower id) may start, and
/// only while no task of the key runs (a requeued dead task can be older than
/// the one that runs).
pub(crate) fn eligible(t: &str, unfinished: &str) -> String {
    format!(
        "(t.ordering_key IS NULL OR NOT EXISTS (
            SELECT 1 FROM {t} h
            WHERE h.queue = t.queue AND h.ordering_key = t.ordering_key
              AND h.{unfinished}
              AND (h.id < t.id OR h.state IN ({running}))))",
        running = Transition::Reserve.target().code()
    )
}

/// The condition that the queue named by `queue` (a parameter) is not
/// paused: uncorrelated with the candidate rows, so PostgreSQL evaluates it
/// once per statement (an InitPlan probing the `paused_queues` primary key)
/// and skips the scan altogether for a paused queue.
pub(crate) fn not_paused(schema: &Schema, queue: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM {paused} pq WHERE pq.queue = {queue})",
        paused = schema.table("paused_queues")
    )
}

impl Statements {
    pub(crate) fn new(schema: &Schema) -> Self {
        let t = schema.table("tasks");
        let seq = schema.table("tasks_id_seq");
        let settles = schema.table("workflow_settles");
        let p = Predicates::new();
        let running = Transition::Complete.source_codes();
        let code = |tr: Transition| tr.target().code();
        let unfinished = &p.unfinished;

        // $1..$10 task columns as arrays, $11 now, $12 ordering-key lock keys,
        // $13 trace contexts, $14 keeps (ms), and for the waking form $15 the
        // channel. The
        // lock CTE runs first (a one-time filter gates the
        // input on it) so ids of one ordering key are drawn, and committed, in
        // order; a conflicting unique key leaves the row out and reports the
        // task that holds the key, as the statement's snapshot sees it.
        let enqueue_sql = |wake: &str| {
            format!(
                "WITH locks AS MATERIALIZED (
                SELECT pg_advisory_xact_lock(k) FROM unnest($12::bigint[]) AS k
             ),
             input AS MATERIALIZED (
                SELECT u.*, nextval('{seq}') AS id
                FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int[], $5::int[],
                            $6::bigint[], $7::text[], $8::text[], $9::bigint[], $10::smallint[],
                            $13::text[], $14::bigint[])
                     WITH ORDINALITY AS u(queue, handler, payload, priority, max_attempts,
                                          timeout_ms, unique_key, ordering_key, run_at, state,
                                          trace, keep_ms, ord)
                WHERE (SELECT count(*) FROM locks) >= 0
             ),
             ins AS (
                INSERT INTO {t} (id, queue, handler, payload, priority, max_attempts, timeout_ms,
                                 unique_key, ordering_key, run_at, state, created_at, trace,
                                 keep_ms)
                SELECT id, queue, handler, payload, priority, max_attempts, timeout_ms,
                       unique_key, ordering_key, run_at, state, $11, trace, keep_ms
                FROM input ORDER BY ord
                ON CONFLICT (queue, unique_key) WHERE unique_key IS NOT NULL AND {unfinished}
                DO NOTHING
                RETURNING id, queue, state
             )
             SELECT i.ord, i.id, ins.id IS NOT NULL AS inserted,
                    CASE WHEN ins.id IS NULL THEN
                        (SELECT e.id FROM {t} e
                         WHERE e.queue = i.queue AND e.unique_key = i.unique_key AND e.{unfinished}
                         LIMIT 1)
                    END AS existing{wake}
             FROM input i LEFT JOIN ins ON ins.id = i.id
             ORDER BY i.ord"
            )
        };
        // In the caller's transaction (`enqueue_in`) and with follow-ups, the
        // wake-up is sent at that transaction's commit; `enqueue_many` sends
        // it after its own commit instead (`crate::notifier`).
        let enqueue = enqueue_sql(&format!(
            ", {}",
            notify("ins", Transition::Enqueue.target(), "$15")
        ));
        let enqueue_quiet = enqueue_sql("");

        // The task that holds (or last held) a unique key, for the rare
        // conflict with a task committed after the enqueue's snapshot.
        let find_unique = format!(
            "SELECT id FROM {t} WHERE queue = $1 AND unique_key = $2
             ORDER BY ({unfinished}) DESC, id DESC LIMIT 1"
        );

        let promote = format!(
            "UPDATE {t} SET state = {due}
             WHERE id = ANY(ARRAY(SELECT id FROM {t} WHERE {timed} AND run_at <= $1
                                  FOR NO KEY UPDATE SKIP LOCKED))
               AND {timed}",
            due = code(Transition::Due),
            timed = p.timed,
        );

        // $1 queue, $2 max, $3 lease_until, $4 worker, $5 now (the attempt's
        // worker and start, in the same write). Only the head of an ordering key
        // (no unfinished task of the key with a lower id) may start, and only
        // while no task of the key runs (a requeued dead task can be older than
        // the one that runs).
        // The gate `NOT EXISTS (… limits)` (evaluated once) makes this fast
        // path reserve nothing while any handler has global limits: the caller
        // then takes the limited path (`crate::limits`). The gate on the
        // paused queues (one primary-key probe, evaluated once) reserves
        // nothing from a paused queue; the statement's snapshot is taken
        // when it starts, so it sees every pause committed before.
        let reserve = format!(
            "WITH picked AS (
                SELECT t.id FROM {t} t
                WHERE t.{available} AND t.queue = $1 AND {eligible}
                  AND NOT EXISTS (SELECT 1 FROM {limits})
                  AND {not_paused}
                ORDER BY t.priority DESC, t.id
                LIMIT $2
                FOR NO KEY UPDATE SKIP LOCKED
             )
             UPDATE {t} t
             SET state = {running_to}, attempts = t.attempts + 1, token = {NEW_TOKEN},
                 lease_until = $3, worker = $4::text, started_at = $5::bigint
             WHERE t.id = ANY(ARRAY(SELECT id FROM picked))
             RETURNING t.id, t.token, t.queue, t.handler, t.payload, t.attempts, t.max_attempts,
                       t.timeout_ms, t.ordering_key, t.created_at, t.run_at, t.lease_until,
                       t.priority, t.trace",
            available = p.available,
            running_to = code(Transition::Reserve),
            eligible = eligible(&t, unfinished),
            limits = schema.table("handler_limits"),
            not_paused = not_paused(schema, "$1"),
        );

        // $1 ids, $2 tokens, $3 lease_until.
        let renew = format!(
            "UPDATE {t} t SET lease_until = $3
             FROM unnest($1::bigint[], $2::bigint[]) AS r(id, token)
             WHERE t.id = r.id AND t.token = r.token AND t.{leased}
             RETURNING t.id, t.token",
            leased = p.leased,
        );

        // $1 ids, $2 tokens, $3 kinds, $4 results, $5 errors, $6 retry-at,
        // $7 now, $8 channel, $9 finished channel, $10 and $11 the reports'
        // keeps (ms) for a completed or cancelled task and for a dead one
        // (NULL: none; the task's own keep wins, see `expires_at` below).
        // A report applies only to a
        // running task holding its token; the caller maps missing ids to
        // StaleLease. Released tasks wake workers; finished ones, result
        // waiters (one notification each per batch). A completion leaves the
        // history alone (its attempt is read from the row); any other report
        // appends the attempt. Two forms: `finish` for reports without a
        // retention of their own (the hot path: no $10 and $11, a task's
        // own keep alone sets the expiry), `finish_retained` with them.
        let last = "t.attempts >= t.max_attempts";
        let finish_sql = |retained: bool| {
            let (keeps_in, keeps_as) = if retained {
                (", $10::bigint[], $11::bigint[]", ", keep_done, keep_dead")
            } else {
                ("", "")
            };
            let keep = |which: &str| {
                if retained {
                    format!("COALESCE(t.keep_ms, r.{which})")
                } else {
                    "t.keep_ms".to_string()
                }
            };
            format!(
                "WITH r AS (
                SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::smallint[], $4::bytea[],
                                     $5::text[], $6::bigint[]{keeps_in})
                         AS r(id, token, kind, result, error, retry_at{keeps_as})
             ),
             u AS (
                UPDATE {t} t SET
                  state = CASE r.kind
                      WHEN {complete} THEN {completed}
                      WHEN {retry} THEN CASE WHEN {last} THEN {dead} ELSE {retrying} END
                      WHEN {dead_letter} THEN {dead}
                      WHEN {discard} THEN {discarded}
                      ELSE {released} END,
                  result = CASE WHEN r.kind = {complete} THEN r.result ELSE t.result END,
                  error = CASE WHEN r.kind IN ({retry}, {dead_letter}, {discard}) THEN r.error
                               WHEN r.kind = {complete} THEN NULL
                               ELSE t.error END,
                  run_at = CASE WHEN r.kind = {retry} AND NOT ({last}) THEN r.retry_at
                                ELSE t.run_at END,
                  attempts = CASE WHEN r.kind = {release} THEN greatest(t.attempts - 1, 0)
                                  ELSE t.attempts END,
                  finished_at = CASE WHEN r.kind = {release} OR (r.kind = {retry} AND NOT ({last}))
                                     THEN t.finished_at ELSE $7 END,
                  expires_at = CASE
                      WHEN r.kind = {release} OR (r.kind = {retry} AND NOT ({last}))
                          THEN t.expires_at
                      WHEN r.kind = {complete} THEN $7 + {keep_done}
                      WHEN r.kind = {discard} THEN $7 + {keep_discarded}
                      ELSE $7 + {keep_dead} END,
                  history = CASE WHEN r.kind = {complete} THEN t.history ELSE {history} END,
                  lease_until = NULL
                FROM r
                WHERE t.id = r.id AND t.token = r.token AND t.state IN ({running})
                RETURNING t.id, t.token, t.state, t.queue, t.workflow
             ){ended}
             SELECT u.id, u.token, {notify}, {notify_finished}, u.workflow IS NOT NULL FROM u",
                ended = record_node_ends("u", &settles),
                complete = kind::COMPLETE,
                retry = kind::RETRY,
                dead_letter = kind::DEAD_LETTER,
                discard = kind::DISCARD,
                release = kind::RELEASE,
                completed = code(Transition::Complete),
                dead = code(Transition::DeadLetter),
                retrying = code(Transition::Retry),
                discarded = code(Transition::Discard),
                keep_done = keep("keep_done"),
                keep_dead = keep("keep_dead"),
                keep_discarded = keep(if Transition::Discard.target() == TaskState::Dead {
                    "keep_dead"
                } else {
                    "keep_done"
                }),
                released = code(Transition::Release),
                notify = notify("u", Transition::Release.target(), "$8"),
                notify_finished = notify_finished("u", "$9"),
                history = append_history(
                    "$7",
                    &format!(
                    "CASE r.kind WHEN {retry} THEN CASE WHEN {last} THEN 'dead' ELSE 'failed' END
                       WHEN {dead_letter} THEN 'dead' WHEN {discard} THEN 'discarded'
                       ELSE 'released' END",
                    retry = kind::RETRY,
                    dead_letter = kind::DEAD_LETTER,
                    discard = kind::DISCARD,
                ),
                    &format!(
                        "CASE WHEN r.kind = {} THEN NULL ELSE r.error END",
                        kind::RELEASE
                    ),
                ),
            )
        };
        let finish = finish_sql(false);
        let finish_retained = finish_sql(true);

        // $1 id, $2 now, $3 finished channel.
        // A running task's attempt is settled as cancelled and its lease
        // ended (the right-hand sides read the row before the update).
        let cancel = format!(
            "WITH u AS (
                UPDATE {t} t SET state = {cancelled}, finished_at = $2, lease_until = NULL,
                  expires_at = $2 + t.keep_ms,
                  error = CASE WHEN t.state = {running} THEN '{CANCELLED_WHILE_RUNNING}'
                               ELSE t.error END,
                  history = CASE WHEN t.state = {running} THEN {history} ELSE t.history END
                WHERE t.id = $1 AND t.state IN ({sources})
                RETURNING t.id, t.state, t.workflow
             ){ended}
             SELECT u.id, {notify_finished}, u.workflow IS NOT NULL FROM u",
            ended = record_node_ends("u", &settles),
            notify_finished = notify_finished("u", "$3"),
            cancelled = code(Transition::Cancel),
            running = TaskState::Running.code(),
            history = append_history("$2", "'cancelled'", "NULL"),
            sources = Transition::Cancel.source_codes(),
        );
        let state_of = format!("SELECT state FROM {t} WHERE id = $1");
        let get = format!("SELECT {RECORD_COLUMNS} FROM {t} WHERE id = $1");

        // $1 now, $2 batch size, $3 channel, $4 finished channel.
        let recover = format!(
            "WITH x AS (
                SELECT id FROM {t} WHERE {leased} AND lease_until < $1
                ORDER BY lease_until LIMIT $2
                FOR NO KEY UPDATE SKIP LOCKED
             ),
             u AS (
                UPDATE {t} t SET
                  state = CASE WHEN {last} THEN {expire_final} ELSE {expire} END,
                  error = CASE WHEN {last} THEN '{EXPIRED_FINAL}' ELSE '{EXPIRED}' END,
                  finished_at = CASE WHEN {last} THEN $1 ELSE t.finished_at END,
                  expires_at = CASE WHEN {last} THEN $1 + t.keep_ms ELSE t.expires_at END,
                  run_at = $1,
                  history = {history},
                  lease_until = NULL
                WHERE t.id = ANY(ARRAY(SELECT id FROM x)) AND t.{leased}
                RETURNING t.id, t.state, t.queue, t.workflow
             ){ended}
             SELECT count(*), {notify}, {notify_finished} FROM u",
            ended = record_node_ends("u", &settles),
            leased = p.leased,
            expire_final = code(Transition::ExpireFinal),
            expire = code(Transition::Expire),
            notify = notify("u", Transition::Expire.target(), "$3"),
            notify_finished = notify_finished("u", "$4"),
            history = append_history("$1", "'expired'", "NULL"),
        );

        // $1 finished before, $2 batch size.
        let finished_states: Vec<TaskState> = TaskState::FINISHED
            .into_iter()
            .filter(|s| *s != TaskState::Dead)
            .collect();
        let prune = |states: &str| {
            format!(
                "DELETE FROM {t} WHERE id = ANY(ARRAY(
                    SELECT id FROM {t} WHERE state IN ({states}) AND finished_at < $1
                      AND expires_at IS NULL LIMIT $2))"
            )
        };
        let prune_finished = prune(&codes(&finished_states));
        let prune_dead = prune(&codes(&[TaskState::Dead]));
        // $1 now, $2 batch size: finished tasks past their own expiry.
        let prune_expired = format!(
            "DELETE FROM {t} WHERE id = ANY(ARRAY(
                SELECT id FROM {t} WHERE expires_at < $1 LIMIT $2))"
        );

        // $1 now.
        // $1 state, $2 queue or NULL, $3 limit, $4 handler or NULL, $5 the
        // cursor id. Keyset paging on the primary key: a page starts at its
        // cursor in the id index, never by skipping rows. Only for a state
        // too common for its own index, so the limit is read through a
        // sub-select that keeps the planner walking the key (see
        // `walk_limit`).
        let list = |keyset: &str| {
            format!(
                "SELECT {RECORD_COLUMNS} FROM {t}
                 WHERE state = $1 AND ($2::text IS NULL OR queue = $2)
                   AND ($4::text IS NULL OR handler = $4) AND {keyset}
                 LIMIT {limit}",
                limit = walk_limit(3),
            )
        };
        let list_oldest = list("id > $5 ORDER BY id");
        let list_newest = list("id < $5 ORDER BY id DESC");

        // $1 ids, $2 now, $3 channel. A dead task whose unique key another
        // unfinished task holds now (or an earlier one of the same call) stays
        // dead: the key maps to at most one unfinished task.
        let requeue = format!(
            "WITH cand AS (
                SELECT id, queue, unique_key FROM {t}
                WHERE id = ANY($1) AND state IN ({dead})
                FOR NO KEY UPDATE
             ),
             ok AS (
                SELECT c.id FROM cand c
                WHERE c.unique_key IS NULL OR (
                  NOT EXISTS (SELECT 1 FROM {t} o
                              WHERE o.queue = c.queue AND o.unique_key = c.unique_key
                                AND o.{unfinished})
                  AND c.id = (SELECT min(c2.id) FROM cand c2
                              WHERE c2.queue = c.queue AND c2.unique_key = c.unique_key))
             ),
             u AS (
                UPDATE {t} t SET state = {available_to}, attempts = 0, finished_at = NULL,
                                 expires_at = NULL,
                                 run_at = $2
                WHERE t.id = ANY(ARRAY(SELECT id FROM ok))
                RETURNING t.state, t.queue
             )
             SELECT count(*), {notify} FROM u",
            dead = Transition::Requeue.source_codes(),
            available_to = code(Transition::Requeue),
            notify = notify("u", Transition::Requeue.target(), "$3"),
        );

        // $1 queue or NULL.
        let purge = format!(
            "DELETE FROM {t} WHERE state = {dead} AND ($1::text IS NULL OR queue = $1)",
            dead = TaskState::Dead.code(),
        );

        Self {
            enqueue,
            enqueue_quiet,
            find_unique,
            promote,
            reserve,
            renew,
            finish,
            finish_retained,
            cancel,
            state_of,
            get,
            recover,
            prune_finished,
            prune_dead,
            prune_expired,
            list_oldest,
            list_newest,
            requeue,
            purge,
        }
    }
}

/// The limit of a walk along the primary key, parameter `$param`, read
/// through a sub-select so that the planner does not know it. Knowing it, the planner plans each
/// call for its values (PostgreSQL's custom plans, the first five calls of
/// a prepared statement on each connection): it takes `state + 0 = …` to
/// match 0.5% of the tasks, expects the walk to reach the end of the table
/// before the limit, and prefers reading every task and sorting them —
/// measured at a million tasks, 100–150 ms a page instead of 15, so a
/// dashboard's first pages on each connection came out that slow (p95
/// 106 ms). A limit it does not know it takes to cut early (10% of the
/// rows), and it walks the key: checked with statistics at 100,000,
/// 200,000 and 1,000,000 tasks, and without at 1,000,000.
pub(crate) fn walk_limit(param: u8) -> String {
    format!("(SELECT ${param}::bigint)")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `enqueue_many`'s statement notifies nobody: a notifying transaction
    /// holds the server's notification lock through its commit's flush, and
    /// the hint is sent after the commit instead (`crate::notifier`). The one
    /// for a caller's transaction, and for follow-ups, still notifies.
    #[test]
    fn only_the_transactional_enqueue_notifies_inside_its_statement() {
        let sql = Statements::new(&Schema::new("s").expect("valid"));
        assert!(!sql.enqueue_quiet.contains("pg_notify"));
        assert!(!sql.enqueue_quiet.contains("$15"));
        assert!(sql.enqueue.contains("pg_notify($15"));
    }
}
