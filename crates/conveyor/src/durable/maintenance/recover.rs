//! The recover duty: tasks whose lease ran out (their worker died or lost
//! touch) become available again, or dead on their last attempt.

use std::time::Duration;

use conveyor_core::{Error, Maintenance};
use futures_util::future::BoxFuture;

use super::Duty;

/// Recovers expired leases every `every`.
pub(super) struct Recover {
    pub(super) every: Duration,
}

impl Duty for Recover {
    fn name(&self) -> &'static str {
        "recover expired leases"
    }

    fn every(&self) -> Duration {
        self.every
    }

    fn run<'a>(&'a self, store: &'a dyn Maintenance) -> BoxFuture<'a, Result<u64, Error>> {
        store.recover_expired()
    }
}
