//! A workflow's fields as its hash holds them (see
//! `lua/common/workflows.lua`): node rows, the tally, output and task
//! fields, and the class an ended workflow is pruned by.

use conveyor_core::workflow::ledger::{NodeRow, Tally};
use conveyor_core::workflow::{NodeState, WorkflowOutcome};
use conveyor_core::{Error, Timestamp};

use crate::reply::bad;

/// A node row's value: `STATE WAITING_ON`.
pub(super) fn row_value(row: NodeRow) -> String {
    format!("{} {}", row.state.code(), row.waiting_on)
}

/// A node row read back.
pub(super) fn parse_row(v: &[u8], wf: u64, node: usize) -> Result<NodeRow, Error> {
    let bad_row = || bad(format!("workflow {wf}: node {node}'s row does not decode"));
    let s = std::str::from_utf8(v).map_err(|_| bad_row())?;
    let (state, waiting) = s.split_once(' ').ok_or_else(bad_row)?;
    Ok(NodeRow {
        state: NodeState::from_code(state.parse().map_err(|_| bad_row())?, wf)?,
        waiting_on: waiting.parse().map_err(|_| bad_row())?,
    })
}

/// The tally's value: `BODY_LEFT LEFT FAILED OUTCOME` (-1: not ended).
pub(super) fn tally_value(t: Tally) -> String {
    format!(
        "{} {} {} {}",
        t.body_left,
        t.left,
        u8::from(t.failed),
        t.outcome.map_or(-1, |o| i64::from(o.code()))
    )
}

/// The tally read back.
pub(super) fn parse_tally(v: &[u8], wf: u64) -> Result<Tally, Error> {
    let bad_tally = || bad(format!("workflow {wf}: its tally does not decode"));
    let s = std::str::from_utf8(v).map_err(|_| bad_tally())?;
    let parts: Vec<&str> = s.split(' ').collect();
    let [body, left, failed, outcome] = parts[..] else {
        return Err(bad_tally());
    };
    let outcome: i64 = outcome.parse().map_err(|_| bad_tally())?;
    Ok(Tally {
        body_left: body.parse().map_err(|_| bad_tally())?,
        left: left.parse().map_err(|_| bad_tally())?,
        failed: failed == "1",
        outcome: WorkflowOutcome::from_code((outcome >= 0).then_some(outcome)),
    })
}

/// A node's field: `n` its row, `t` its task, `r` its result, `e` its error.
pub(super) fn field(kind: char, node: usize) -> String {
    format!("{kind}:{node}")
}

/// The field holding how many expansions workflow's hash keeps (see
/// [`expansion_field`]); absent: none.
pub(super) const EXPANSIONS: &str = "gn";

/// The field of the `k`-th expansion's document, in the order they were
/// made.
pub(super) fn expansion_field(k: usize) -> String {
    format!("g:{k}")
}

/// How many expansions a workflow keeps, from its [`EXPANSIONS`] field.
pub(super) fn expansion_count(v: Option<&[u8]>) -> Result<usize, Error> {
    v.map_or(Ok(0), |v| {
        parse_id(v, "a workflow's expansion count").map(|n| n as usize)
    })
}

/// How a workflow whose tally was `before` and is `after` ended, for
/// `wf.close`: `""` unless it ended just now (`before`: `None` for a new
/// one), then `"ok"` when its body succeeded and it was not `cancelled`,
/// else `"bad"`.
pub(super) fn class(before: Option<&Tally>, after: &Tally, cancelled: bool) -> &'static str {
    if before.is_some_and(|b| b.left == 0) || after.left > 0 {
        ""
    } else if after.outcome == Some(WorkflowOutcome::Succeeded) && !cancelled {
        "ok"
    } else {
        "bad"
    }
}

/// Time field `f` of workflow `wf` read back (ms since the epoch), if it
/// has one.
pub(super) fn parse_time(v: Option<&[u8]>, wf: u64, f: &str) -> Result<Option<Timestamp>, Error> {
    v.map(|v| {
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Timestamp)
            .ok_or_else(|| bad(format!("workflow {wf}: field {f} does not decode")))
    })
    .transpose()
}

/// A decimal id field read back.
pub(super) fn parse_id(v: &[u8], what: &str) -> Result<u64, Error> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("{what} does not decode")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_tallies_read_back_as_written() {
        let row = NodeRow {
            state: NodeState::Running,
            waiting_on: 7,
        };
        assert_eq!(parse_row(row_value(row).as_bytes(), 1, 0).unwrap(), row);
        for outcome in [
            None,
            Some(WorkflowOutcome::Succeeded),
            Some(WorkflowOutcome::Failed),
        ] {
            let t = Tally {
                body_left: 3,
                left: 4,
                failed: outcome == Some(WorkflowOutcome::Failed),
                outcome,
            };
            assert_eq!(parse_tally(tally_value(t).as_bytes(), 1).unwrap(), t);
        }
        assert!(parse_row(b"9 1", 1, 0).is_err());
        assert!(parse_row(b"1", 1, 0).is_err());
        assert!(parse_tally(b"1 2 0", 1).is_err());
    }

    #[test]
    fn a_workflow_is_classed_once_when_it_ends() {
        let t = |left, outcome| Tally {
            body_left: 0,
            left,
            failed: false,
            outcome,
        };
        let ok = Some(WorkflowOutcome::Succeeded);
        assert_eq!(class(Some(&t(2, None)), &t(1, None), false), "");
        assert_eq!(class(Some(&t(1, None)), &t(0, ok), false), "ok");
        assert_eq!(class(Some(&t(1, None)), &t(0, ok), true), "bad");
        assert_eq!(
            class(
                Some(&t(1, None)),
                &t(0, Some(WorkflowOutcome::Failed)),
                false
            ),
            "bad"
        );
        assert_eq!(class(Some(&t(0, ok)), &t(0, ok), false), "", "ended before");
        assert_eq!(class(None, &t(0, ok), false), "ok", "empty: ends at once");
        assert_eq!(class(None, &t(1, None), false), "");
    }
}
