//! The statements of the kept counts (`task_counts`, migration 7) for one
//! schema: read by inspection (`crate::inspect`, which says how the counts
//! are kept) and folded by maintenance.

use crate::schema::Schema;
use crate::statements::Predicates;

/// The statements of the kept counts, for one schema.
#[derive(Debug, Clone)]
pub(crate) struct CountStatements {
    /// Queue, state and count of every pair with tasks, and how many rows.
    pub(crate) read: String,
    /// Folds the rows into one per queue and state.
    pub(crate) compact: String,
    /// `$1` state codes, `$2` queue or NULL, `$3` handler or NULL → tasks
    /// in those states.
    pub(crate) kept: String,
    /// `$1` queue → the enqueue time of its available task with the lowest
    /// id, one index seek per priority level.
    pub(crate) oldest_available: String,
    /// `$1` queue, `$2` now → the enqueue time of its oldest due task not
    /// yet made available.
    pub(crate) oldest_due: String,
}

impl CountStatements {
    pub(crate) fn new(schema: &Schema) -> CountStatements {
        let t = schema.table("tasks");
        let c = schema.table("task_counts");
        let p = Predicates::new();
        let available = &p.available;
        let first = |more: &str| {
            format!(
                "SELECT priority FROM {t} WHERE queue = $1 AND {available}{more} \
                 ORDER BY priority DESC LIMIT 1"
            )
        };
        CountStatements {
            read: format!(
                "SELECT queue, state, sum(n)::bigint, (sum(count(*)) OVER ())::bigint FROM {c} \
                 GROUP BY queue, state"
            ),
            compact: format!(
                "WITH gone AS (DELETE FROM {c} RETURNING queue, handler, state, n)
                 INSERT INTO {c} (queue, handler, state, n)
                 SELECT queue, handler, state, sum(n) FROM gone
                 GROUP BY queue, handler, state HAVING sum(n) <> 0"
            ),
            kept: format!(
                "SELECT coalesce(sum(n), 0)::bigint FROM {c} \
                 WHERE state = ANY($1) AND ($2::text IS NULL OR queue = $2) \
                 AND ($3::text IS NULL OR handler = $3)"
            ),
            oldest_available: format!(
                "WITH RECURSIVE levels(p) AS (
                     SELECT ({top})
                     UNION ALL
                     SELECT ({below}) FROM levels WHERE p IS NOT NULL
                 )
                 SELECT min((SELECT greatest(run_at, created_at) FROM {t}
                             WHERE queue = $1 AND {available}
                             AND priority = levels.p ORDER BY id LIMIT 1))
                 FROM levels WHERE p IS NOT NULL",
                top = first(""),
                below = first(" AND priority < levels.p"),
            ),
            oldest_due: format!(
                "SELECT min(greatest(run_at, created_at)) FROM {t} \
                 WHERE {timed} AND run_at <= $2 AND queue = $1",
                timed = p.timed
            ),
        }
    }
}
