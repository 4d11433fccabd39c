//! Shutting an engine down: gracefully (nothing new, what waits is let go,
//! what runs gets a grace period) or at once.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::engine::attempt::deliver_unstarted;
use crate::engine::envelope::{Event, Ready};
use crate::engine::instance::Engine;

/// What a shutdown did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Tasks that were waiting and never started (reported as cancelled).
    pub not_started: u64,
    /// Attempts running when shutdown began.
    pub in_flight_at_start: u64,
    /// Attempts still running when the grace period ended, then cancelled.
    pub cancelled_in_flight: u64,
    /// Attempts (cpu closures that ignore cancellation) still running when
    /// shutdown gave up waiting for them.
    pub abandoned: u64,
}

impl Engine {
    /// Graceful shutdown: accept nothing new, cancel what has not started, let
    /// running attempts finish within `grace`, then cancel what still runs.
    pub(crate) async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.closing.store(true, Ordering::SeqCst);
        self.board.drain();
        let mut report = ShutdownReport {
            in_flight_at_start: self.board.busy(),
            ..Default::default()
        };
        let (tx, rx) = oneshot::channel();
        let from_dispatcher = if self.events.send(Event::Drain(tx)).is_ok() {
            rx.await.unwrap_or(0)
        } else {
            0
        };
        self.take_back_ready();
        if !self.wait_idle(grace).await {
            report.cancelled_in_flight = self.board.busy();
            self.stop();
            if !self.wait_idle(grace.max(Duration::from_secs(1))).await {
                report.abandoned = self.board.busy();
            }
        }
        self.take_back_ready();
        report.not_started = from_dispatcher + self.board.not_started();
        self.stop();
        report
    }

    /// Reports every task no worker has picked up as never started.
    fn take_back_ready(&self) {
        while let Ok(Ready { env, slot }) = self.ready_rx.try_recv() {
            self.board.count_not_started(1);
            if let Some(release) = env.release(slot) {
                let _ = self.events.send(Event::Released(release));
            }
            tokio::spawn(deliver_unstarted(env));
        }
    }

    /// Waits until no attempt runs, at most `limit`.
    async fn wait_idle(&self, limit: Duration) -> bool {
        let board = &self.board;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = board.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if board.busy() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return board.busy() == 0;
            }
        }
    }
}
