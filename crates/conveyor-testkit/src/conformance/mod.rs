//! The backend conformance cases. Each takes a fresh backend and the manual
//! clock it reads, and panics (failing the test) on the first broken promise.
//! `backend_conformance!` runs them all; they are public so a backend can also
//! call one on its own.

mod admin;
mod basics;
mod expansion;
mod failover;
mod failures;
mod follow_ups;
mod history;
mod keys;
mod leadership;
mod limits;
mod listing;
mod pause;
mod record_keeper;
mod registry;
mod results;
mod retention;
mod schedules;
mod search;
mod trace;
mod workflows;

pub use admin::{
    batches_are_atomic, capabilities_are_honest, dead_letter_admin, declared_parts,
    requeued_dead_tasks_respect_keys, retention_prunes_finished_tasks, stats_per_queue,
};
pub use basics::{
    concurrent_reservers_never_share_a_task, delays_follow_the_clock, enqueue_reserve_complete,
    many_reports_in_one_finish_call, priority_then_enqueue_order, queues_are_separate,
    reserve_takes_only_wanted_handlers, results_and_discards, results_in_one_finish_call,
    unwanted_handlers_wait_unspent,
};
pub use conveyor_core::Part;
pub use expansion::{
    a_failed_expansion_fails_its_node_and_retries, a_running_node_expands_its_workflow,
    an_expansion_is_seen_from_another_handle, concurrent_expansions_each_happen_once,
};
pub use failover::failover_modes_match_the_docs;
pub use failures::{
    a_completed_task_shows_no_earlier_error, a_finish_racing_a_renewal_applies_once,
    cancel_a_running_task, cancel_waiting_and_running_tasks, fencing_refuses_stale_tokens,
    last_attempt_expiry_is_dead, lease_expiry_redelivers, release_does_not_count_the_attempt,
    renew_extends_leases, retries_then_dead_letter,
};
pub use follow_ups::{
    a_crash_before_the_finish_enqueues_nothing, follow_ups_are_enqueued_with_the_finish,
    follow_ups_carry_their_ordering_key, follow_ups_go_with_their_own_report,
};
pub use history::{history_of_a_dead_task, history_of_retries, history_shows_lease_expiry};
pub use keys::{ordering_keys, unique_keys};
pub use leadership::{a_leader_steps_down_with_a_zero_term, one_leader_at_a_time};
pub use limits::{
    concurrent_reservers_honour_handler_limits, handler_concurrency_limits, handler_rate_limits,
};
pub use listing::{
    kept_tasks_list_in_finish_order, list_by_handler, list_newest_first,
    list_pages_through_each_state, list_pages_with_filters, page_through,
};
pub use pause::{
    concurrent_reservers_honour_a_pause, pause_before_any_task, pause_holds_a_queue_back,
    pause_is_durable, pause_is_shared, pause_is_shared_by_handles,
};
pub use record_keeper::{
    expire_kept_drops_expired_records_alone, forgotten_records_are_gone,
    keeping_again_replaces_the_record, kept_entries_change_only_at_their_revision,
    kept_finishes_wake_result_waiters, kept_records_are_listed_and_counted_apart,
    kept_records_are_never_work, kept_records_expire, kept_records_read_back_whole,
    own_tasks_are_never_overwritten,
};
pub use registry::workers_register_by_heartbeat;
pub use results::{finish_wakes_result_waiters, result_waits};
pub use retention::finished_tasks_expire_one_by_one;
pub use schedules::{
    a_schedule_fires_once_per_fire_time, a_schedule_removed_as_it_fires_is_gone,
    missed_fires_follow_the_misfire_policy, overlapping_fires_follow_the_overlap_policy,
    pause_resume_trigger_and_remove, redeclaring_keeps_progress_unless_the_timing_changes,
};
pub use search::{
    counts_match_the_filters, pages_stop_at_their_budget, search_finds_params_and_errors,
    search_through, stats_match_a_recount,
};
pub use trace::{follow_ups_carry_their_trace_context, trace_context_travels};
pub use workflows::{
    a_cancelled_workflow_retried_runs_again, a_chain_passes_each_result_to_the_next,
    a_chord_body_gets_the_header_results_in_order, a_failed_dependency_skips_its_dependents,
    a_wide_chord_fires_once, a_zombie_finish_or_a_retry_fires_the_body_once,
    an_empty_group_ends_at_once, bad_workflows_are_refused_whole,
    cancelling_a_node_task_settles_its_node, cancelling_a_workflow_stops_it,
    concurrent_finishes_fire_the_body_once, ended_workflows_go_with_their_retention,
    ignore_and_continue_run_after_a_failure, retrying_a_workflow_runs_its_failed_part_once,
    workflows_are_listed_newest_first_by_state,
};

use std::sync::Arc;
use std::time::Duration;

use conveyor_core::{
    Backend, Finish, FinishAction, Lease, NewTask, ReserveParams, Reserved, TaskId, TaskRecord,
    TaskState,
};

/// The backend under test.
pub type Subject = Arc<dyn Backend>;

/// The lease every case reserves with unless it says otherwise.
pub(crate) const LEASE: Duration = Duration::from_secs(30);

pub(crate) fn task(handler: &str) -> NewTask {
    NewTask::new(handler, format!("{{\"h\":\"{handler}\"}}").into_bytes())
}

pub(crate) fn default_queue() -> Vec<String> {
    vec![conveyor_core::DEFAULT_QUEUE.to_string()]
}

pub(crate) async fn enqueue(b: &Subject, t: NewTask) -> TaskId {
    b.enqueue(t).await.expect("enqueue").id
}

pub(crate) async fn reserve(b: &Subject, max: usize) -> Vec<Reserved> {
    b.reserve(ReserveParams::new(&default_queue(), max, LEASE))
        .await
        .expect("reserve")
}

pub(crate) async fn report(b: &Subject, lease: Lease, action: FinishAction) -> Result<(), String> {
    let mut out = b
        .finish(vec![Finish::new(lease, action)])
        .await
        .expect("finish (store)");
    assert_eq!(out.len(), 1, "one result per report");
    out.pop().unwrap_or(Ok(())).map_err(|e| e.to_string())
}

pub(crate) async fn complete(b: &Subject, lease: Lease) {
    report(b, lease, FinishAction::Complete { result: None })
        .await
        .expect("complete");
}

pub(crate) async fn get(b: &Subject, id: TaskId) -> TaskRecord {
    b.get(id)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("task {id} is missing"))
}

pub(crate) async fn state(b: &Subject, id: TaskId) -> TaskState {
    get(b, id).await.state
}

/// Reserves until `want` tasks came (or 10 s passed), `per_call` at a time.
/// A store hands them out at the first call; a message broker pushes tasks
/// to its consumers, so one enqueued a moment ago may still be on its way.
pub(crate) async fn reserve_until(b: &Subject, want: usize, per_call: usize) -> Vec<Reserved> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < want && tokio::time::Instant::now() < deadline {
        let more = b
            .reserve(ReserveParams::new(
                &default_queue(),
                per_call.min(want - got.len()),
                LEASE,
            ))
            .await
            .expect("reserve");
        if more.is_empty()
            && !b
                .wait_for_work(&default_queue(), Duration::from_millis(50))
                .await
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        got.extend(more);
    }
    got
}

pub(crate) fn ids(r: &[Reserved]) -> Vec<TaskId> {
    r.iter().map(|t| t.lease.id).collect()
}
