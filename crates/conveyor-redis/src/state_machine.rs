//! The task state machine, written out as Lua constants for the scripts.
//!
//! conveyor's one state machine lives in `conveyor-core` ([`TaskState`] codes
//! and [`Transition`] edges). The Lua scripts must move tasks along exactly
//! those edges, so rather than copying numbers by hand this module generates the
//! prelude every script starts with: the state codes, the sources and target of
//! each transition, and which sorted set is each state's "home" in Redis. A new
//! state or edge in core is a compile error here (the matches are exhaustive),
//! not a silently diverging script.

use std::fmt::Write as _;

use conveyor_core::{TaskState, Transition};

/// The name a transition has in the Lua table `TR`.
pub(crate) fn lua_name(t: Transition) -> &'static str {
    match t {
        Transition::Enqueue => "Enqueue",
        Transition::Schedule => "Schedule",
        Transition::Due => "Due",
        Transition::Reserve => "Reserve",
        Transition::Complete => "Complete",
        Transition::Retry => "Retry",
        Transition::DeadLetter => "DeadLetter",
        Transition::Discard => "Discard",
        Transition::Release => "Release",
        Transition::Expire => "Expire",
        Transition::ExpireFinal => "ExpireFinal",
        Transition::Cancel => "Cancel",
        Transition::Requeue => "Requeue",
    }
}

/// The sorted set a task in `state` is kept in, besides its queue's per-state
/// index. See `docs/redis.md` for the layout.
pub(crate) fn home(state: TaskState) -> &'static str {
    match state {
        // Per queue, by priority then id: what `reserve` takes from.
        TaskState::Available => "ready",
        // Global, by run-at: what `reserve` promotes when due.
        TaskState::Scheduled | TaskState::Retrying => "timers",
        // Per queue, by lease expiry: what `recover_expired` scans.
        TaskState::Running => "leases",
        // Per queue and state, a list in finish order: counts (`LLEN`),
        // `list` (earliest finished first) and what `prune` cuts from its start.
        TaskState::Completed | TaskState::Cancelled => "finished",
        // Global, by finish time: what `prune` deletes from.
        TaskState::Dead => "dead",
    }
}

/// Whether tasks in `state` are also kept in their queue's per-state id index
/// (for counts and `list` in id order). Available, running, completed and
/// cancelled tasks are not: their homes are per queue and hold exactly them,
/// so counting is a `ZCARD` (`LLEN`) of the home, and the hot path saves four
/// sorted-set writes per task. Available tasks are in their queue's ready set
/// or, while they wait behind their ordering key's head, in its parked set;
/// running ones in the lease set (bounded by the work in flight); completed and
/// cancelled ones in per-state lists in finish order.
pub(crate) fn id_indexed(state: TaskState) -> bool {
    match state {
        TaskState::Available | TaskState::Running | TaskState::Completed | TaskState::Cancelled => {
            false
        }
        TaskState::Scheduled | TaskState::Retrying | TaskState::Dead => true,
    }
}

fn set_of(states: &[TaskState]) -> String {
    let items: Vec<String> = states
        .iter()
        .map(|s| format!("[{}]=true", s.code()))
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// The Lua prelude: state constants, `STATE_NAME`, `ALL_STATES`, `STATE_STR`
/// (each code as a string, so key names need no number formatting), `FINISHED`,
/// `UNFINISHED`, the transition table `TR`, the `HOME` of each state and which
/// states are `INDEXED` by id.
pub(crate) fn lua_prelude() -> String {
    let mut out =
        String::from("-- Generated from conveyor_core::TaskState and conveyor_core::Transition.\n");
    let names: Vec<String> = TaskState::ALL
        .iter()
        .map(|s| s.as_str().to_uppercase())
        .collect();
    let codes: Vec<String> = TaskState::ALL
        .iter()
        .map(|s| s.code().to_string())
        .collect();
    let _ = writeln!(out, "local {} = {}", names.join(", "), codes.join(", "));
    let named: Vec<String> = TaskState::ALL
        .iter()
        .map(|s| format!("[{}]='{}'", s.code(), s.as_str()))
        .collect();
    let _ = writeln!(out, "local STATE_NAME = {{{}}}", named.join(", "));
    let _ = writeln!(out, "local ALL_STATES = {{{}}}", codes.join(", "));
    let strs: Vec<String> = TaskState::ALL
        .iter()
        .map(|s| format!("[{0}]='{0}'", s.code()))
        .collect();
    let _ = writeln!(out, "local STATE_STR = {{{}}}", strs.join(", "));
    let _ = writeln!(out, "local FINISHED = {}", set_of(&TaskState::FINISHED));
    let _ = writeln!(out, "local UNFINISHED = {}", set_of(&TaskState::UNFINISHED));
    out.push_str("local TR = {\n");
    for t in Transition::ALL {
        let _ = writeln!(
            out,
            "  {} = {{to = {}, from = {}}},",
            lua_name(t),
            t.target().code(),
            set_of(t.sources())
        );
    }
    out.push_str("}\n");
    let homes: Vec<String> = TaskState::ALL
        .iter()
        .map(|s| format!("[{}]='{}'", s.code(), home(*s)))
        .collect();
    let _ = writeln!(out, "local HOME = {{{}}}", homes.join(", "));
    let indexed: Vec<TaskState> = TaskState::ALL
        .into_iter()
        .filter(|s| id_indexed(*s))
        .collect();
    let _ = writeln!(out, "local INDEXED = {}", set_of(&indexed));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prelude_lists_every_edge_from_core() {
        let lua = lua_prelude();
        assert!(lua.contains("local SCHEDULED, AVAILABLE, RUNNING, RETRYING, COMPLETED, DEAD, CANCELLED = 0, 1, 2, 3, 4, 5, 6"));
        assert!(lua.contains("Cancel = {to = 6, from = {[0]=true, [1]=true, [2]=true, [3]=true}},"));
        assert!(lua.contains("Enqueue = {to = 1, from = {}},"));
        for t in Transition::ALL {
            assert!(lua.contains(&format!("  {} = {{", lua_name(t))));
        }
    }
}
