//! Listing workflows, newest first, by state.

use conveyor_core::workflow::{
    WorkflowFilter, WorkflowId, WorkflowOutcome, WorkflowState, WorkflowSummary,
};
use conveyor_core::{Error, Timestamp};

use super::workflows::count;
use super::Store;
use crate::error::db_err;

/// The condition on `workflows` for workflows in `state`.
fn state_condition(state: Option<WorkflowState>) -> &'static str {
    match state {
        None => "1",
        Some(WorkflowState::Running) => "ended_at IS NULL",
        Some(WorkflowState::Succeeded) => "ended_at IS NOT NULL AND cancelled = 0 AND outcome = 0",
        Some(WorkflowState::Failed) => {
            "ended_at IS NOT NULL AND cancelled = 0 AND (outcome IS NULL OR outcome <> 0)"
        }
        Some(WorkflowState::Cancelled) => "cancelled <> 0",
    }
}

impl Store {
    /// The workflows `filter` admits, newest first.
    pub(crate) fn list_workflows(
        &mut self,
        filter: &WorkflowFilter,
    ) -> Result<Vec<WorkflowSummary>, Error> {
        let before = filter
            .before
            .map_or(i64::MAX, |b| i64::try_from(b.0).unwrap_or(i64::MAX));
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT id, cancelled, outcome, created_at, ended_at, nodes_left, \
                    (SELECT count(*) FROM workflow_nodes n WHERE n.workflow = w.id) \
             FROM workflows w WHERE id < ?1 AND {} ORDER BY id DESC LIMIT ?2",
            state_condition(filter.state)
        );
        type Row = (i64, bool, Option<i64>, i64, Option<i64>, i64, i64);
        let rows: Vec<Row> = self
            .conn
            .prepare_cached(&sql)
            .and_then(|mut s| {
                s.query_map([before, limit], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })
                .and_then(|rows| rows.collect())
            })
            .map_err(db_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, cancelled, outcome, created_at, ended_at, left, nodes) in rows {
            let left = count(left, id)?;
            let summary = WorkflowSummary {
                id: WorkflowId(id.unsigned_abs()),
                state: WorkflowState::of(cancelled, left, WorkflowOutcome::from_code(outcome)),
                nodes: count(nodes, id)?,
                left,
                created_at: Timestamp(created_at),
                ended_at: ended_at.map(Timestamp),
            };
            if filter.admits(&summary) {
                out.push(summary);
            }
        }
        Ok(out)
    }
}
