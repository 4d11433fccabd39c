//! The fault cases. Each takes the backend's [`FaultTarget`], runs a worker
//! on tasks of its own, breaks something mid-run, mends it, and checks the
//! promises in [`Run::verdict`]; they panic (failing the test) on the first
//! broken one.

use std::time::{Duration, Instant};

use super::proxy::{FaultProxy, Traffic};
use super::run::{Run, TASKS};
use super::servers::Shared;
use super::{namespace, FaultTarget, Forget};

/// How long an outage lasts: past the lease, so leases taken before it run
/// out while the worker cannot renew them.
fn outage(target: &FaultTarget) -> Duration {
    target.lease + Duration::from_secs(1)
}

/// How long a killed server stays down at least.
pub(super) const SERVER_DOWN: Duration = Duration::from_secs(8);

/// Tasks started before the fault: mid-run, some done, most waiting.
const BEFORE_FAULT: usize = (TASKS / 5) as usize;

/// Runs `f` off the async runtime (server starts and stops block).
pub(super) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| panic!("blocking step: {e}"))
}

/// The server is killed mid-run (tasks enqueued, reserved, renewed and
/// settled) and started again on the same data after longer than a lease.
pub async fn restart_mid_run(target: FaultTarget) {
    restart(target, false).await;
}

/// [`restart_mid_run`] with the tasks as the header of a chord: besides
/// nothing lost, the body runs once, with every header's result in order,
/// and the workflow succeeds (ends recorded before the restart and settled
/// after it, nodes made ready across it).
pub async fn restart_mid_chord(target: FaultTarget) {
    restart(target, true).await;
}

/// A private server killed and started again mid-run, the tasks plain or
/// the header of a chord.
async fn restart(target: FaultTarget, chord: bool) {
    let Some(server) = blocking(target.private_server).await else {
        panic!("{}: the private server's program is missing", target.name);
    };
    let server = Shared::new(server);
    let addr = server.read(|s| s.addr());
    let (case, ns) = if chord {
        ("restart_chord", "restartchord")
    } else {
        ("restart", "restart")
    };
    let url = (target.url)(addr, &namespace(ns), true);
    let mut run = if chord {
        Run::start_chord(target, case, &url, &url).await
    } else {
        Run::start(target, case, &url, &url).await
    };
    run.started(BEFORE_FAULT).await;
    run.fault_begins();
    server.step(|s| s.stop()).await;
    run.fault_applied();
    // Long enough that a worker backing off its failed calls for longer
    // than a second or two would be caught resuming late.
    tokio::time::sleep(outage(&target).max(SERVER_DOWN)).await;
    server.step(|s| s.start()).await;
    run.recovered(Instant::now()).await;
    run.all_done().await;
    if chord {
        run.chord_done().await;
    }
    run.stop().await;
    run.verdict();
    server.drop_off_runtime().await;
}

/// The primary of a store with a standby is killed mid-run and, after
/// [`FAILOVER_DETECTED`], the standby promoted: the worker, whose URL names
/// both, follows the promotion by itself. With the standby replicated
/// synchronously, nothing acknowledged is lost; the other promises hold as
/// for a restart, work resuming within
/// [`FAILOVER_RESUME_WITHIN`](super::FAILOVER_RESUME_WITHIN) of the promotion.
pub async fn failover_mid_run(target: FaultTarget, cluster: fn() -> Box<dyn super::FaultCluster>) {
    let cluster = Shared::new(blocking(cluster).await);
    let url = cluster.read(|c| c.url(&namespace("failover")));
    let mut run = Run::start_tasks(target, "failover", &url, &url, 0, FAILOVER_TASKS).await;
    run.resume_within(super::FAILOVER_RESUME_WITHIN);
    run.started((FAILOVER_TASKS / 5) as usize).await;
    run.fault_begins();
    cluster.step(|c| c.kill_primary()).await;
    run.fault_applied();
    tokio::time::sleep(FAILOVER_DETECTED).await;
    cluster.step(|c| c.promote()).await;
    run.recovered(Instant::now()).await;
    run.all_done().await;
    run.stop().await;
    run.verdict();
    cluster.drop_off_runtime().await;
}

/// Tasks a failover case runs: the primary dies after a fifth of them
/// started.
pub const FAILOVER_TASKS: u64 = 2_000;

/// How long after the primary's death its standby is promoted: what a
/// failover manager takes to decide, short on loopback.
pub const FAILOVER_DETECTED: Duration = Duration::from_secs(1);

/// The network between the worker and the server black-holes mid-run:
/// nothing passes and nothing is reset, for longer than a lease.
pub async fn blackhole_mid_run(target: FaultTarget) {
    let proxy = FaultProxy::start(target.service);
    let ns = namespace("blackhole");
    let url = (target.url)(proxy.addr(), &ns, false);
    let direct = (target.url)(target.service, &ns, false);
    let _forget = Forget {
        forget: target.forget,
        ns: ns.clone(),
    };
    let mut run = Run::start(target, "blackhole", &direct, &url).await;
    run.started(BEFORE_FAULT).await;
    run.fault_begins();
    proxy.set(Traffic::Blackhole);
    // Bytes already on their way still arrive: look once they have.
    tokio::time::sleep(Duration::from_millis(50)).await;
    run.fault_applied();
    tokio::time::sleep(outage(&target)).await;
    proxy.set(Traffic::Pass);
    run.recovered(Instant::now()).await;
    run.all_done().await;
    run.stop().await;
    run.verdict();
}

/// Every connection is cut with a reset mid-run, three times in a row.
pub async fn connections_cut_mid_run(target: FaultTarget) {
    let proxy = FaultProxy::start(target.service);
    let ns = namespace("cut");
    let url = (target.url)(proxy.addr(), &ns, false);
    let direct = (target.url)(target.service, &ns, false);
    let _forget = Forget {
        forget: target.forget,
        ns: ns.clone(),
    };
    let mut run = Run::start(target, "cut", &direct, &url).await;
    run.started(BEFORE_FAULT).await;
    for _ in 0..3 {
        run.fault_begins();
        proxy.cut_all();
        run.fault_applied();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    run.recovered(Instant::now()).await;
    run.all_done().await;
    run.stop().await;
    run.verdict();
}

/// The network turns slow mid-run (every chunk held 100 ms each way), then
/// fast again: nothing is lost and no lease is lost to the slowness alone.
pub async fn slow_network_mid_run(target: FaultTarget) {
    let proxy = FaultProxy::start(target.service);
    let ns = namespace("slow");
    let url = (target.url)(proxy.addr(), &ns, false);
    let direct = (target.url)(target.service, &ns, false);
    let _forget = Forget {
        forget: target.forget,
        ns: ns.clone(),
    };
    let mut run = Run::start(target, "slow", &direct, &url).await;
    run.started(BEFORE_FAULT).await;
    run.fault_begins();
    proxy.set(Traffic::Slow(Duration::from_millis(100)));
    run.fault_applied();
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.set(Traffic::Pass);
    run.recovered(Instant::now()).await;
    run.all_done().await;
    run.stop().await;
    run.verdict();
}

/// The worker is told to stop while the server is unreachable (black-holed:
/// its calls hang rather than fail): it stops within its grace + the slack
/// all the same, and the tasks it held run once the network is back.
pub async fn stop_mid_outage(target: FaultTarget) {
    let proxy = FaultProxy::start(target.service);
    let ns = namespace("stop");
    let url = (target.url)(proxy.addr(), &ns, false);
    let direct = (target.url)(target.service, &ns, false);
    let _forget = Forget {
        forget: target.forget,
        ns: ns.clone(),
    };
    let mut run = Run::start(target, "stop_mid_outage", &direct, &url).await;
    run.started(BEFORE_FAULT).await;
    run.fault_begins();
    proxy.set(Traffic::Blackhole);
    tokio::time::sleep(Duration::from_millis(50)).await;
    run.fault_applied();
    tokio::time::sleep(Duration::from_millis(450)).await;
    run.stop().await;
    proxy.set(Traffic::Pass);
    // A second worker finishes the rest, the first one's leases included.
    run.new_worker(&url).await;
    run.all_done().await;
    run.stop().await;
    run.verdict();
}

/// A rolling deploy: a worker of the old version (without the new handler)
/// and one of the new version (with it) share one queue holding tasks of
/// both. Every task completes; none is failed, dead-lettered or spent an
/// attempt for lack of a handler on the worker that reserved it.
pub async fn rolling_deploy(target: FaultTarget) {
    let ns = namespace("deploy");
    let url = (target.url)(target.service, &ns, false);
    let _forget = Forget {
        forget: target.forget,
        ns: ns.clone(),
    };
    // Every third task is the new handler's.
    let mut run = Run::start_with(target, "rolling_deploy", &url, &url, 3).await;
    run.started(BEFORE_FAULT / 2).await;
    let (newer, newer_run) = run.newer_worker(&url).await;
    run.all_done().await;
    run.stop().await;
    newer.stop();
    let report = newer_run
        .await
        .unwrap_or_else(|e| panic!("{}: newer worker panicked: {e}", target.name))
        .unwrap_or_else(|e| panic!("{}: newer worker: {}", target.name, e.chain()));
    assert_eq!(report.stats.dead, 0, "{}: {:?}", target.name, report.stats);
    run.first_attempts_only().await;
    run.verdict();
}
