//! The prune duty: finished tasks past their retention are deleted, so the
//! store does not grow without bound. Only the leader of the `prune` role
//! runs it.

use std::time::Duration;

use conveyor_core::{Error, Maintenance, Retention};
use futures_util::future::BoxFuture;

use super::Duty;

/// Prunes by `retention` every `every`.
pub(super) struct Prune {
    pub(super) every: Duration,
    pub(super) retention: Retention,
}

impl Duty for Prune {
    fn name(&self) -> &'static str {
        "prune finished tasks"
    }

    fn every(&self) -> Duration {
        self.every
    }

    fn role(&self) -> Option<&'static str> {
        Some("prune")
    }

    fn run<'a>(&'a self, store: &'a dyn Maintenance) -> BoxFuture<'a, Result<u64, Error>> {
        store.prune(self.retention)
    }
}
