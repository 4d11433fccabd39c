//! Test support for conveyor: the backend conformance suite, the fault suite
//! ([`faults`], [`backend_faults!`]), the manual clock,
//! helpers to run, kill and restart real processes, and private Redis and
//! PostgreSQL servers a test may stop and start ([`servers`]), the
//! Kafka-compatible test broker ([`kafka_broker`]), and the fuzz harness
//! every crate's fuzz tests run on ([`fuzz`]).
//!
//! A backend is done when it passes [`backend_conformance!`]: one test per
//! case, each on a fresh backend built by the caller's factory (its own
//! namespace: a new file, key prefix or schema), with a [`ManualClock`] the case
//! moves by hand so delays, leases and retention are tested without sleeping.
//! Wrap a backend in [`Scoped`] to drop its namespace when the case ends.
//!
//! ```ignore
//! async fn make(clock: Arc<ManualClock>) -> Arc<dyn Backend> { /* fresh backend */ }
//! conveyor_testkit::backend_conformance!(make);
//! ```

pub mod browser;
pub mod certs;
pub mod conformance;
mod counts;
mod cut_short;
pub mod faults;
pub mod fires;
pub mod fuzz;
pub mod kafka_broker;
pub mod lost_claims;
pub mod nats_cluster;
pub mod nats_server;
pub mod notifications;
pub mod postgres_pair;
pub mod process;
pub mod programs;
pub mod python;
pub mod rabbitmq_cluster;
pub mod rabbitmq_server;
pub mod redis_cluster;
pub mod redis_sentinels;
mod scoped;
pub mod servers;
mod shared_store;
pub mod value_limits;

pub use counts::count_in;
pub use cut_short::CutShort;
pub use scoped::Scoped;

pub use conveyor_core::{ManualClock, Timestamp};

/// Generates one `#[tokio::test]` per fault case ([`faults`]), each calling
/// the case with the backend's [`FaultTarget`](faults::FaultTarget):
///
/// ```ignore
/// fn target() -> conveyor_testkit::faults::FaultTarget { /* … */ }
/// conveyor_testkit::backend_faults!(target();
///     private_server: has_redis_server, "redis-server is not installed (Debian package redis-server)");
/// ```
///
/// `restart_mid_run` starts a private server of its own: the `cfg` named
/// after `private_server` (set by the crate's build script where the
/// server's program is installed, and always under `CI=true`) says whether
/// it can, and without it the case is ignored with the reason given, never
/// passed. The other cases use the shared server behind a proxy.
#[macro_export]
macro_rules! backend_faults {
    ($target:expr; private_server: $has:meta, $missing:literal) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr(not($has), ignore = $missing)]
        async fn restart_mid_run() {
            $crate::faults::restart_mid_run($target).await;
        }
        $crate::backend_faults!(@cases $target;
            blackhole_mid_run, connections_cut_mid_run, slow_network_mid_run,
            stop_mid_outage, rolling_deploy);
    };
    // A backend with the workflows part adds the chord under a restart.
    ($target:expr; private_server: $has:meta, $missing:literal; workflows) => {
        $crate::backend_faults!($target; private_server: $has, $missing);
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr(not($has), ignore = $missing)]
        async fn restart_mid_chord() {
            $crate::faults::restart_mid_chord($target).await;
        }
    };
    // A backend with the schedules part too adds the restart under the
    // schedules' leader.
    ($target:expr; private_server: $has:meta, $missing:literal; workflows, schedules) => {
        $crate::backend_faults!($target; private_server: $has, $missing; workflows);
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr(not($has), ignore = $missing)]
        async fn restart_mid_schedule() {
            $crate::faults::restart_mid_schedule($target).await;
        }
    };
    (@cases $target:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::faults::$case($target).await;
            }
        )*
    };
}

/// Generates one `#[tokio::test]` per conformance case, each calling
/// `$make(clock).await` for a fresh backend.
///
/// `backend_conformance!(make)` declares every optional part and every core
/// capability. A backend that lacks some says which, with `yes`/`no` for
/// each part in this order:
///
/// ```ignore
/// conveyor_testkit::backend_conformance!(make;
///     result_store: yes, inspection: no, administration: no, maintenance: yes, global_limits: no,
///     registry: no, queue_control: no);
/// ```
///
/// and, when its core lacks priorities, unique keys or ordering keys (a
/// message broker), those too after a `;`:
///
/// ```ignore
/// conveyor_testkit::backend_conformance!(make;
///     result_store: no, inspection: no, administration: no, maintenance: no, global_limits: no,
///     registry: no, queue_control: no; priority: no, unique_keys: no, ordering_keys: no);
/// ```
///
/// A backend whose delays and leases run on a broker's own clock (TTLs, ack
/// waits), which a test cannot move by hand, adds `manual_time: no`: the
/// cases that move the [`ManualClock`] to make a delayed task due are then
/// ignored too, and the backend tests its delays in real time instead.
/// A backend whose administration part requeues and purges dead tasks but
/// refuses to cancel (a message broker that cannot take a waiting message
/// back) adds `cancel: no` after it: the cancel case is then ignored.
///
/// A case that needs a part or capability the backend lacks is generated
/// `#[ignore]`d with the reason, so `cargo test` lists it as ignored (never
/// as passed), and the case `declared_parts_are_the_real_ones` fails if the
/// declaration differs from what the backend answers at run time.
#[macro_export]
macro_rules! backend_conformance {
    ($make:expr) => {
        $crate::backend_conformance!($make;
            result_store: yes, inspection: yes, administration: yes, maintenance: yes,
            global_limits: yes, registry: yes, queue_control: yes);
    };
    ($make:expr; result_store: $rs:ident, inspection: $ins:ident, administration: $adm:ident,
     maintenance: $mnt:ident, global_limits: $lim:ident, registry: $reg:ident,
     queue_control: $qc:ident $(,)?) => {
        $crate::backend_conformance!($make;
            result_store: $rs, inspection: $ins, administration: $adm, maintenance: $mnt,
            global_limits: $lim, registry: $reg, queue_control: $qc;
            priority: yes, unique_keys: yes, ordering_keys: yes);
    };
    ($make:expr; result_store: $rs:ident, inspection: $ins:ident, administration: $adm:ident,
     maintenance: $mnt:ident, global_limits: $lim:ident, registry: $reg:ident,
     queue_control: $qc:ident;
     priority: $pr:ident, unique_keys: $uk:ident, ordering_keys: $ok:ident $(,)?) => {
        $crate::backend_conformance!($make;
            result_store: $rs, inspection: $ins, administration: $adm, maintenance: $mnt,
            global_limits: $lim, registry: $reg, queue_control: $qc; priority: $pr,
            unique_keys: $uk, ordering_keys: $ok, manual_time: yes);
    };
    ($make:expr; result_store: $rs:ident, inspection: $ins:ident, administration: $adm:ident,
     maintenance: $mnt:ident, global_limits: $lim:ident, registry: $reg:ident,
     queue_control: $qc:ident;
     priority: $pr:ident, unique_keys: $uk:ident, ordering_keys: $ok:ident,
     manual_time: $mt:ident $(,)?) => {
        $crate::backend_conformance!($make;
            result_store: $rs, inspection: $ins, administration: $adm, maintenance: $mnt,
            global_limits: $lim, registry: $reg, queue_control: $qc; priority: $pr,
            unique_keys: $uk, ordering_keys: $ok, manual_time: $mt, cancel: yes);
    };
    ($make:expr; result_store: $rs:ident, inspection: $ins:ident, administration: $adm:ident,
     maintenance: $mnt:ident, global_limits: $lim:ident, registry: $reg:ident,
     queue_control: $qc:ident;
     priority: $pr:ident, unique_keys: $uk:ident, ordering_keys: $ok:ident,
     manual_time: $mt:ident, cancel: $cn:ident $(,)?) => {
        $crate::backend_conformance!(@cases $make; [];
            "";
            queues_are_separate, concurrent_reservers_never_share_a_task,
            batches_are_atomic, capabilities_are_honest, failover_modes_match_the_docs, trace_context_travels,
            unwanted_handlers_wait_unspent);
        $crate::backend_conformance!(@cases $make; [$pr];
            "needs priorities, which this backend's core does not declare";
            priority_then_enqueue_order);
        $crate::backend_conformance!(@cases $make; [$uk];
            "needs unique keys, which this backend's core does not declare";
            unique_keys);
        $crate::backend_conformance!(@cases $make; [$ok $mt];
            "needs ordering keys and delays on a clock the test moves, which this backend does not both declare";
            ordering_keys);
        $crate::backend_conformance!(@cases $make; [$rs];
            "needs the result store part (reading tasks), which this backend does not declare";
            enqueue_reserve_complete, results_and_discards, release_does_not_count_the_attempt,
            follow_ups_go_with_their_own_report, finish_wakes_result_waiters,
            follow_ups_carry_their_trace_context, many_reports_in_one_finish_call);
        $crate::backend_conformance!(@cases $make; [$rs $mt];
            "needs the result store part and delays on a clock the test moves, which this backend does not both declare";
            delays_follow_the_clock, retries_then_dead_letter, history_of_retries,
            history_of_a_dead_task);
        $crate::backend_conformance!(@cases $make; [$rs $mnt $mt];
            "needs the result store and maintenance parts and delays on a clock the test moves, which this backend does not all declare";
            history_shows_lease_expiry, a_completed_task_shows_no_earlier_error);
        $crate::backend_conformance!(@cases $make; [$rs $uk $mt];
            "needs the result store part, unique keys and delays on a clock the test moves, which this backend does not all declare";
            follow_ups_are_enqueued_with_the_finish);
        $crate::backend_conformance!(@cases $make; [$rs $ok];
            "needs the result store part and ordering keys, which this backend does not both declare";
            follow_ups_carry_their_ordering_key, results_in_one_finish_call);
        $crate::backend_conformance!(@cases $make; [$rs $mnt];
            "needs the result store and maintenance parts, which this backend does not both declare";
            lease_expiry_redelivers, last_attempt_expiry_is_dead, fencing_refuses_stale_tokens,
            renew_extends_leases, a_crash_before_the_finish_enqueues_nothing,
            a_finish_racing_a_renewal_applies_once);
        $crate::backend_conformance!(@cases $make; [$mnt];
            "needs the maintenance part, which this backend does not declare";
            one_leader_at_a_time, a_leader_steps_down_with_a_zero_term);
        $crate::backend_conformance!(@cases $make; [$rs $adm $mnt];
            "needs the result store, administration and maintenance parts, which this backend does not all declare";
            retention_prunes_finished_tasks, finished_tasks_expire_one_by_one);
        $crate::backend_conformance!(@cases $make; [$ins];
            "needs the inspection part, which this backend does not declare";
            list_by_handler, counts_match_the_filters);
        $crate::backend_conformance!(@cases $make; [$rs $ins];
            "needs the result store and inspection parts, which this backend does not both declare";
            search_finds_params_and_errors);
        $crate::backend_conformance!(@cases $make; [$rs $ins $adm $mnt $mt];
            "needs the result store, inspection, administration and maintenance parts and delays on a clock the test moves, which this backend does not all declare";
            stats_match_a_recount);
        $crate::backend_conformance!(@cases $make; [$ins $mt];
            "needs the inspection part and delays on a clock the test moves, which this backend does not both declare";
            stats_per_queue);
        $crate::backend_conformance!(@cases $make; [$ins $pr];
            "needs the inspection part and priorities, which this backend does not both declare";
            list_newest_first, list_pages_through_each_state, list_pages_with_filters,
            kept_tasks_list_in_finish_order);
        $crate::backend_conformance!(@cases $make; [$rs $ins $adm];
            "needs the result store, inspection and administration parts, which this backend does not all declare";
            dead_letter_admin);
        $crate::backend_conformance!(@cases $make; [$rs $adm $cn];
            "needs the result store and administration parts and cancelling, which this backend does not all declare";
            cancel_waiting_and_running_tasks);
        $crate::backend_conformance!(@cases $make; [$rs $adm $cn $mnt $mt];
            "needs the result store, administration and maintenance parts, cancelling, and leases on a clock the test moves, which this backend does not all declare";
            cancel_a_running_task);
        $crate::backend_conformance!(@cases $make; [$rs $adm $uk $ok];
            "needs the result store and administration parts, unique keys and ordering keys, which this backend does not all declare";
            requeued_dead_tasks_respect_keys);
        $crate::backend_conformance!(@cases $make; [$lim $mnt];
            "needs the global limits and maintenance parts, which this backend does not both declare";
            handler_concurrency_limits);
        $crate::backend_conformance!(@cases $make; [$lim];
            "needs the global limits part, which this backend does not declare";
            concurrent_reservers_honour_handler_limits, handler_rate_limits);
        $crate::backend_conformance!(@cases $make; [$lim $ok $rs];
            "needs the global limits part (a store that skips tasks by handler as it reserves), ordering keys and the result store, which this backend does not all declare";
            reserve_takes_only_wanted_handlers);
        $crate::backend_conformance!(@cases $make; [$reg];
            "needs the worker registry part, which this backend does not declare";
            workers_register_by_heartbeat);
        $crate::backend_conformance!(@cases $make; [$qc];
            "needs the queue control part (pausing queues), which this backend does not declare";
            pause_before_any_task, pause_is_shared_by_handles, concurrent_reservers_honour_a_pause);
        $crate::backend_conformance!(@cases $make; [$qc $mt];
            "needs the queue control part and delays on a clock the test moves, which this backend does not both declare";
            pause_holds_a_queue_back);

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn declared_parts_are_the_real_ones() {
            let clock = ::std::sync::Arc::new($crate::ManualClock::default());
            let backend = ($make)(clock.clone()).await;
            let caps = backend.capabilities();
            assert_eq!(
                (caps.priority, caps.unique_keys, caps.ordering_keys),
                (
                    $crate::backend_conformance!(@bool $pr),
                    $crate::backend_conformance!(@bool $uk),
                    $crate::backend_conformance!(@bool $ok),
                ),
                "the declared capabilities (priority, unique_keys, ordering_keys) differ from the backend's"
            );
            $crate::conformance::declared_parts(
                backend,
                &[
                    ($crate::conformance::Part::ResultStore, $crate::backend_conformance!(@bool $rs)),
                    ($crate::conformance::Part::Inspection, $crate::backend_conformance!(@bool $ins)),
                    ($crate::conformance::Part::Administration, $crate::backend_conformance!(@bool $adm)),
                    ($crate::conformance::Part::Maintenance, $crate::backend_conformance!(@bool $mnt)),
                    ($crate::conformance::Part::GlobalLimits, $crate::backend_conformance!(@bool $lim)),
                    ($crate::conformance::Part::Registry, $crate::backend_conformance!(@bool $reg)),
                    ($crate::conformance::Part::QueueControl, $crate::backend_conformance!(@bool $qc)),
                ],
            )
            .await;
        }
    };
    (@bool yes) => { true };
    (@bool no) => { false };
    // Every part the cases need is declared: run them.
    (@cases $make:expr; [$(yes)*]; $why:literal; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let clock = ::std::sync::Arc::new($crate::ManualClock::default());
                let backend = ($make)(clock.clone()).await;
                $crate::conformance::$case(backend, clock).await;
            }
        )*
    };
    // A part is missing: the cases are listed as ignored, with the reason.
    (@cases $make:expr; [$($flag:ident)*]; $why:literal; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = $why]
            async fn $case() {
                let clock = ::std::sync::Arc::new($crate::ManualClock::default());
                let backend = ($make)(clock.clone()).await;
                $crate::conformance::$case(backend, clock).await;
            }
        )*
    };
}

/// The workflows part's conformance cases, for a backend that has it (see
/// [`conveyor_core::Workflows`]), from the same `make` as
/// [`backend_conformance!`]: chains, chords, failure policies, callbacks,
/// an empty group, a zombie finish and a retried header firing the body
/// once, cancel, refusals, a wide chord, pruning of ended workflows,
/// listing by state, retrying the failed part. The
/// backend needs the result store
/// and maintenance parts and delays on a clock the test moves.
#[macro_export]
macro_rules! workflow_conformance {
    ($make:expr) => {
        $crate::workflow_conformance!($make; maintenance: yes, cancel: yes);
    };
    ($make:expr; maintenance: $mnt:ident, cancel: $cn:ident $(,)?) => {
        $crate::backend_conformance!(@cases $make; [];
            "";
            a_chain_passes_each_result_to_the_next, a_chord_body_gets_the_header_results_in_order,
            a_failed_dependency_skips_its_dependents, ignore_and_continue_run_after_a_failure,
            an_empty_group_ends_at_once,
            cancelling_a_workflow_stops_it,
            bad_workflows_are_refused_whole,
            a_wide_chord_fires_once, concurrent_finishes_fire_the_body_once,
            workflows_are_listed_newest_first_by_state,
            retrying_a_workflow_runs_its_failed_part_once,
            a_cancelled_workflow_retried_runs_again);
        $crate::backend_conformance!(@cases $make; [$mnt];
            "needs the maintenance part (leases and pruning on a clock the test moves), which this backend does not declare";
            a_zombie_finish_or_a_retry_fires_the_body_once,
            ended_workflows_go_with_their_retention);
        $crate::backend_conformance!(@cases $make; [$cn];
            "needs cancelling a task, which this backend does not support";
            cancelling_a_node_task_settles_its_node);
    };
}

/// The dynamic expansion cases (a running node adding nodes to its own
/// workflow), for a backend whose workflows expand, from the same `make`
/// as [`backend_conformance!`].
#[macro_export]
macro_rules! expansion_conformance {
    ($make:expr) => {
        $crate::backend_conformance!(@cases $make; [];
            "";
            a_running_node_expands_its_workflow, a_failed_expansion_fails_its_node_and_retries,
            concurrent_expansions_each_happen_once);
    };
}

/// The schedules part's conformance cases, for a backend that has it (see
/// [`conveyor_core::Schedules`]), from the same `make` as
/// [`backend_conformance!`]: one fire per fire time under racing callers,
/// the misfire and overlap policies, pause, resume, trigger, remove, and a
/// redeclaration keeping progress. The backend needs the result store part
/// and a clock the test moves.
#[macro_export]
macro_rules! schedule_conformance {
    ($make:expr) => {
        $crate::backend_conformance!(@cases $make; [];
            "";
            a_schedule_fires_once_per_fire_time, missed_fires_follow_the_misfire_policy,
            pause_resume_trigger_and_remove, overlapping_fires_follow_the_overlap_policy,
            redeclaring_keeps_progress_unless_the_timing_changes,
            a_schedule_removed_as_it_fires_is_gone);
    };
}

/// The record keeper part's conformance cases, for a backend that has it
/// (see [`conveyor_core::RecordKeeper`]), from the same `make` as
/// [`backend_conformance!`]: records read back whole, replaced, waking
/// result waiters, expiring, never the keeper's work, never over its own
/// tasks. Every case fails on a backend without the part.
#[macro_export]
macro_rules! record_keeper_conformance {
    ($make:expr) => {
        $crate::backend_conformance!(@cases $make; [];
            "";
            kept_records_read_back_whole, keeping_again_replaces_the_record,
            kept_finishes_wake_result_waiters, kept_records_are_never_work,
            own_tasks_are_never_overwritten, forgotten_records_are_gone, kept_records_expire, expire_kept_drops_expired_records_alone,
            kept_records_are_listed_and_counted_apart, kept_entries_change_only_at_their_revision);
    };
}
