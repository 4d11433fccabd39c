//! The worker's own series, read from its counts at each scrape: slots, tasks
//! in flight and running, lost leases, backend errors and reconnects, stale
//! settlements and dropped callbacks. Read rather than counted, so they agree with what the
//! worker reports at its stop.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::encode::{counter, gauge};

use crate::durable::WorkerProbe;

/// Encodes one worker's series on every scrape.
#[derive(Debug)]
pub(crate) struct WorkerGauges {
    pub(crate) probe: WorkerProbe,
}

impl Collector for WorkerGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.probe.stats();
        let e = &mut encoder;
        gauge(
            e,
            "worker_slots",
            "Tasks the worker runs at once at most",
            self.probe.slots() as u64,
        )?;
        gauge(
            e,
            "worker_in_flight",
            "Tasks the worker holds: running, or fetched and waiting for a limit or a lane",
            stats.in_flight as u64,
        )?;
        gauge(
            e,
            "worker_running",
            "Tasks whose attempt is running now",
            stats.running,
        )?;
        counter(
            e,
            "worker_tasks_reserved",
            "Tasks the worker fetched from its backend",
            stats.reserved,
        )?;
        counter(
            e,
            "lease_renewals_lost",
            "Claims found lost while renewing (another worker may run the task now)",
            stats.lost_leases,
        )?;
        counter(
            e,
            "backend_errors",
            "Calls to the backend that failed and were retried",
            stats.backend_errors,
        )?;
        if let Some(reconnects) = self.probe.reconnects() {
            counter(
                e,
                "backend_reconnects",
                "Times the backend lost a connection to its server and connected again",
                reconnects,
            )?;
        }
        counter(
            e,
            "settlements_stale",
            "Outcomes the backend refused because the claim had moved on (fencing)",
            stats.stale,
        )?;
        counter(
            e,
            "callbacks_dropped",
            "Results not given to a slow on_task_complete callback",
            stats.callbacks_dropped,
        )
    }
}
