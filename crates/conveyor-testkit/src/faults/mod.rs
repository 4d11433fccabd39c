//! The fault suite: what a worker and its store do when something breaks
//! that nobody scripted, run over every backend the way the conformance suite
//! is ([`backend_faults!`](crate::backend_faults)).
//!
//! Each case runs a real [`Worker`](conveyor::Worker) on tasks of its own
//! against a real server, breaks something mid-run, mends it, and holds the
//! run to the same promises:
//!
//! - **nothing lost**: every task enqueued completes (the store says so);
//! - **duplicates ≤ the tasks in flight at the fault** (an attempt whose
//!   lease ran out while the worker was cut off may run again, nothing else);
//! - **work resumes within [`RESUME_WITHIN`]** of the server or network
//!   coming back (a task starts);
//! - **the worker stops within its grace + [`STOP_SLACK`]** of being told to,
//!   even mid-outage.
//!
//! The faults: the server killed and started again on the same data
//! ([`restart_mid_run`], on a private server the case may kill), and, through
//! a [`FaultProxy`] between the worker and the shared server, the network
//! black-holed (nothing passes, nothing is reset), slowed, and every
//! connection cut with a reset; and a stop while the server is unreachable
//! ([`stop_mid_outage`]); and a rolling deploy, workers with different
//! handler sets on one queue ([`rolling_deploy`]); and, on a store with
//! schedules, the server restarted under the schedules' leader
//! ([`restart_mid_schedule`]: each fire time once, none missing, firing
//! again within [`RESUME_WITHIN`]); and, on a store with a standby, the
//! primary killed mid-run and the standby promoted ([`failover_mid_run`]).
//! Each case prints one `FAULT` line with its figures
//! (`scripts/fault-rounds.sh` runs the suite in rounds and tabulates them).

mod cases;
mod proxy;
mod run;
mod schedules;
mod servers;

use std::net::SocketAddr;
use std::time::Duration;

use conveyor_core::Scheme;

pub use cases::{
    blackhole_mid_run, connections_cut_mid_run, failover_mid_run, restart_mid_chord,
    restart_mid_run, rolling_deploy, slow_network_mid_run, stop_mid_outage, FAILOVER_DETECTED,
};
pub use proxy::{FaultProxy, Traffic};
pub use schedules::restart_mid_schedule;
pub use servers::{FaultCluster, FaultServer};

/// How soon after the server or network is back a task must start.
pub const RESUME_WITHIN: Duration = Duration::from_secs(3);

/// How soon after a failover's promotion a task must start (what high
/// availability promises: `docs/high-availability.md`). Longer than
/// [`RESUME_WITHIN`]: a promoted store may still be electing or catching
/// up its parts (a NATS cluster's consumers) when its stream or queue
/// leaders are back.
pub const FAILOVER_RESUME_WITHIN: Duration = Duration::from_secs(10);

/// How much past its grace a worker may take to stop.
pub const STOP_SLACK: Duration = Duration::from_secs(2);

/// A backend with a server, as the fault suite sees it.
#[derive(Clone, Copy)]
pub struct FaultTarget {
    /// Its name in reports (`redis`, `postgres`, …).
    pub name: &'static str,
    /// The shared server every test may use (loopback).
    pub service: SocketAddr,
    /// The URL of a store at `addr` in the namespace `ns` (a key prefix, a
    /// schema, a stream or queue prefix): fresh for every case. `private`
    /// says the server is a private one ([`FaultTarget::private_server`]),
    /// not the shared service (maybe behind a proxy).
    pub url: fn(addr: SocketAddr, ns: &str, private: bool) -> String,
    /// Opens a URL (the backend crate's own scheme).
    pub scheme: Scheme,
    /// The scheme of the store that keeps task records for a backend whose
    /// URL names one (RabbitMQ's `results=redis://…`; see
    /// `Scheme::with_record_keeper`); `None` for a backend that keeps its own.
    pub keeper: Option<Scheme>,
    /// Starts a private server the case may kill and start again; `None`
    /// when the server's program is missing.
    pub private_server: fn() -> Option<Box<dyn FaultServer>>,
    /// The lease workers take (a broker with a lease floor says more).
    pub lease: Duration,
    /// Deletes the namespace `ns` from the shared server once a case is done
    /// with it (keys, a schema, streams, queues), so runs leave nothing
    /// behind. Blocking; run on a thread of its own.
    pub forget: fn(ns: &str),
    /// The server pushes deliveries ahead of reservations, up to the
    /// worker's slots (RabbitMQ's prefetch). A delivery buffered in the
    /// worker at a fault is as much in flight as a running task (the server
    /// hands it out again once the connection is gone), though no claim
    /// shows it; and until the worker hears of a reset connection it may
    /// still start one. Each fault then counts the worker's slots as in
    /// flight, the most the server can have handed out unsettled.
    pub prefetch: bool,
}

/// Deletes a case's namespace on the shared server when dropped (also when
/// the case panics).
pub(crate) struct Forget {
    pub(crate) forget: fn(&str),
    pub(crate) ns: String,
}

impl Drop for Forget {
    fn drop(&mut self) {
        let (forget, ns) = (self.forget, std::mem::take(&mut self.ns));
        let _ = std::thread::spawn(move || forget(&ns)).join();
    }
}

/// Runs `f` on a runtime of its own (for a [`FaultTarget::forget`]).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"))
        .block_on(f)
}

impl std::fmt::Debug for FaultTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultTarget")
            .field("name", &self.name)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// A namespace no other test uses: `fault_<case>_<pid>_<random>`.
pub(crate) fn namespace(case: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("fault_{case}_{}_{nanos:08x}", std::process::id())
}
