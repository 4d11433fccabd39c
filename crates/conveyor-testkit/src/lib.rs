//! Test support for conveyor: the backend conformance suite, the manual clock,
//! helpers to run, kill and restart real processes, and private Redis and
//! PostgreSQL servers a test may stop and start ([`servers`]), and the
//! Kafka-compatible test broker ([`kafka_broker`]).
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

pub mod conformance;
pub mod kafka_broker;
pub mod process;
mod scoped;
pub mod servers;

pub use scoped::Scoped;

pub use conveyor_core::{ManualClock, Timestamp};

/// Generates one `#[tokio::test]` per conformance case, each calling
/// `$make(clock).await` for a fresh backend.
#[macro_export]
macro_rules! backend_conformance {
    ($make:expr) => {
        $crate::backend_conformance!(@cases $make;
            enqueue_reserve_complete,
            priority_then_enqueue_order,
            delays_follow_the_clock,
            unique_keys,
            ordering_keys,
            retries_then_dead_letter,
            dead_letter_admin,
            requeued_dead_tasks_respect_keys,
            lease_expiry_redelivers,
            last_attempt_expiry_is_dead,
            fencing_refuses_stale_tokens,
            renew_extends_leases,
            release_does_not_count_the_attempt,
            cancel_waiting_tasks_only,
            results_and_discards,
            retention_prunes_finished_tasks,
            stats_per_queue,
            queues_are_separate,
            batches_are_atomic,
            concurrent_reservers_never_share_a_task,
            capabilities_are_honest,
            handler_concurrency_limits,
            concurrent_reservers_honour_handler_limits,
            handler_rate_limits
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let clock = ::std::sync::Arc::new($crate::ManualClock::default());
                let backend = ($make)(clock.clone()).await;
                $crate::conformance::$case(backend, clock).await;
            }
        )*
    };
}
