//! The statements of the workflows part, built once per schema.
//!
//! A statement that joins a list of nodes (or tasks) with their rows also
//! names the list with `= ANY(...)` on the indexed column, though the join
//! says the same: the rows are then found through the index whatever the
//! planner estimates. Without it, on a node table whose statistics do not
//! know a large workflow yet (a new table, or one such a workflow just
//! filled), PostgreSQL planned a scan of every running node of the workflow
//! per node settled, and of every task per batch of ends: a group of
//! 10,000 spent 19 ms per settle in the output's update alone, a cost that
//! grows with the workflow's size.

use conveyor_core::workflow::{NodeState, WorkflowState};

use crate::schema::Schema;

/// Every statement the workflows part runs, with its schema's names.
pub(crate) struct WorkflowStatements {
    /// $1 spec, $2 body left, $3 nodes left, $4 now, $5 outcome → id.
    pub insert: String,
    /// $1 workflow, $2 nodes, $3 states, $4 waiting on.
    pub insert_nodes: String,
    /// $1 workflow → its tally and `cancelled`, the row locked.
    pub lock: String,
    /// $1 workflow, $2 nodes → node, state, waiting on.
    pub rows: String,
    /// $1 workflow, $2 nodes, $3 states, $4 waiting on.
    pub write_rows: String,
    /// $1 workflow, $2 body left, $3 nodes left, $4 failed, $5 outcome.
    pub write_tally: String,
    /// $1 workflow, $2 now.
    pub end: String,
    /// $1 workflow, $2 nodes → node, state, result, error.
    pub outputs: String,
    /// $1 workflow, $2 nodes, $3 tasks.
    pub set_tasks: String,
    /// $1 workflow, $2 tasks: the tasks carry their workflow.
    pub mark_tasks: String,
    /// $1 workflow, $2 node, $3 error.
    pub node_error: String,
    /// $1 workflow, $2 nodes, $3 results, $4 errors: each kept while its
    /// node runs (the end that settles it).
    pub keep_output: String,
    /// $1 tasks or NULL for any, $2 limit → the ended node tasks taken.
    pub take_ended: String,
    /// $1 tasks: their recorded ends dropped (nodes already settled).
    pub forget_ended: String,
    /// $1 tasks → workflow, node, the task's state, result and error.
    pub ended_nodes: String,
    /// $1 workflow → spec.
    pub spec: String,
    /// $1 workflow → its expansions' specs, in order.
    pub expansions: String,
    /// $1 workflow, $2 spec: the next expansion.
    pub add_expansion: String,
    /// $1 workflow → cancelled, outcome, created at, ended at, nodes left.
    pub head: String,
    /// $1 workflow → state, task, by node.
    pub all_rows: String,
    /// $1 workflow, $2 now.
    pub cancelled: String,
    /// $1 workflow: running again after a retry.
    pub retried: String,
    /// $1 workflow, $2 nodes: put back, they forget their task and output.
    pub forget_nodes: String,
    /// $1 finished before, $2 dead before, $3 the later of the two.
    pub prune: String,
    /// $1 before id, $2 limit → id, cancelled, outcome, created at, ended
    /// at, nodes left, nodes; newest first. One per state filter: any,
    /// then each state ([`WorkflowStatements::list`]).
    list: [String; 5],
}

/// The states a listing filters by, in the order of `list`.
const LISTED: [Option<WorkflowState>; 5] = [
    None,
    Some(WorkflowState::Running),
    Some(WorkflowState::Succeeded),
    Some(WorkflowState::Failed),
    Some(WorkflowState::Cancelled),
];

/// The condition on the workflows table for workflows in `state`.
fn state_condition(state: Option<WorkflowState>) -> &'static str {
    match state {
        None => "true",
        Some(WorkflowState::Running) => "ended_at IS NULL",
        Some(WorkflowState::Succeeded) => "ended_at IS NOT NULL AND NOT cancelled AND outcome = 0",
        Some(WorkflowState::Failed) => {
            "ended_at IS NOT NULL AND NOT cancelled AND outcome IS DISTINCT FROM 0"
        }
        Some(WorkflowState::Cancelled) => "cancelled",
    }
}

impl WorkflowStatements {
    /// The listing of workflows in `state` (any when `None`).
    pub(crate) fn list(&self, state: Option<WorkflowState>) -> &str {
        let at = LISTED.iter().position(|s| *s == state).unwrap_or(0);
        &self.list[at]
    }

    pub(crate) fn new(schema: &Schema) -> Self {
        let w = schema.table("workflows");
        let n = schema.table("workflow_nodes");
        let s = schema.table("workflow_settles");
        let t = schema.table("tasks");
        let x = schema.table("workflow_expansions");
        WorkflowStatements {
            insert: format!(
                "INSERT INTO {w} (spec, body_left, nodes_left, created_at, outcome)
                 VALUES ($1, $2, $3, $4, $5) RETURNING id"
            ),
            insert_nodes: format!(
                "INSERT INTO {n} (workflow, node, state, waiting_on)
                 SELECT $1, x.node, x.state, x.waiting_on
                 FROM unnest($2::integer[], $3::smallint[], $4::integer[])
                      AS x(node, state, waiting_on)"
            ),
            lock: format!(
                "SELECT body_left, nodes_left, failed, outcome, cancelled FROM {w}
                 WHERE id = $1 FOR UPDATE"
            ),
            rows: format!(
                "SELECT node, state, waiting_on FROM {n}
                 WHERE workflow = $1 AND node = ANY($2::integer[])"
            ),
            write_rows: format!(
                "UPDATE {n} n SET state = x.state, waiting_on = x.waiting_on
                 FROM unnest($2::integer[], $3::smallint[], $4::integer[])
                      AS x(node, state, waiting_on)
                 WHERE n.workflow = $1 AND n.node = ANY($2::integer[]) AND n.node = x.node"
            ),
            write_tally: format!(
                "UPDATE {w} SET body_left = $2, nodes_left = $3, failed = $4, outcome = $5
                 WHERE id = $1"
            ),
            end: format!("UPDATE {w} SET ended_at = $2 WHERE id = $1"),
            outputs: format!(
                "SELECT node, state, result, error FROM {n}
                 WHERE workflow = $1 AND node = ANY($2::integer[])"
            ),
            set_tasks: format!(
                "UPDATE {n} n SET task = x.task
                 FROM unnest($2::integer[], $3::bigint[]) AS x(node, task)
                 WHERE n.workflow = $1 AND n.node = ANY($2::integer[]) AND n.node = x.node"
            ),
            mark_tasks: format!("UPDATE {t} SET workflow = $1 WHERE id = ANY($2::bigint[])"),
            node_error: format!("UPDATE {n} SET error = $3 WHERE workflow = $1 AND node = $2"),
            keep_output: format!(
                "UPDATE {n} n SET result = x.result, error = x.error
                 FROM unnest($2::integer[], $3::bytea[], $4::text[]) AS x(node, result, error)
                 WHERE n.workflow = $1 AND n.node = ANY($2::integer[]) AND n.node = x.node
                   AND n.state = {running}",
                running = NodeState::Running.code()
            ),
            take_ended: format!(
                "DELETE FROM {s} WHERE task IN (
                     SELECT task FROM {s} WHERE $1::bigint[] IS NULL OR task = ANY($1)
                     ORDER BY task LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING task"
            ),
            forget_ended: format!("DELETE FROM {s} WHERE task = ANY($1::bigint[])"),
            ended_nodes: format!(
                "SELECT n.workflow, n.node, t.state, t.result, t.error FROM {n} n
                 LEFT JOIN {t} t ON t.id = n.task AND t.id = ANY($1::bigint[])
                 WHERE n.task = ANY($1::bigint[])
                 ORDER BY n.workflow, n.node"
            ),
            spec: format!("SELECT spec FROM {w} WHERE id = $1"),
            expansions: format!("SELECT spec FROM {x} WHERE workflow = $1 ORDER BY seq"),
            add_expansion: format!(
                "INSERT INTO {x} (workflow, seq, spec)
                 VALUES ($1, (SELECT count(*) FROM {x} WHERE workflow = $1), $2)"
            ),
            head: format!(
                "SELECT cancelled, outcome, created_at, ended_at, nodes_left FROM {w}
                 WHERE id = $1"
            ),
            all_rows: format!("SELECT state, task FROM {n} WHERE workflow = $1 ORDER BY node"),
            cancelled: format!("UPDATE {w} SET cancelled = true, ended_at = $2 WHERE id = $1"),
            retried: format!("UPDATE {w} SET cancelled = false, ended_at = NULL WHERE id = $1"),
            forget_nodes: format!(
                "UPDATE {n} SET task = NULL, result = NULL, error = NULL
                 WHERE workflow = $1 AND node = ANY($2::integer[])"
            ),
            // Bounded by the later cutoff, so the scan walks `workflows_ended`;
            // the nodes go with their workflow (ON DELETE CASCADE).
            prune: format!(
                "DELETE FROM {w} WHERE ended_at IS NOT NULL AND ended_at < $3 AND (
                     (NOT cancelled AND outcome = 0 AND ended_at < $1)
                     OR ((cancelled OR outcome IS DISTINCT FROM 0) AND ended_at < $2))"
            ),
            list: LISTED.map(|state| {
                format!(
                    "SELECT id, cancelled, outcome, created_at, ended_at, nodes_left,
                            (SELECT count(*) FROM {n} WHERE workflow = w.id)
                     FROM {w} w WHERE id < $1 AND {}
                     ORDER BY id DESC LIMIT $2",
                    state_condition(state)
                )
            }),
        }
    }
}
