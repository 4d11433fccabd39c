//! What one reservation asks for ([`ReserveParams`], taken by
//! [`Backend::reserve_with`](super::Backend::reserve_with)).
//!
//! A params struct rather than arguments, so that a new field is a new
//! field with a default and never breaks a caller.

use std::time::Duration;

/// One reservation: up to `max` tasks of `queues` (scanned in that order)
/// under a lease of `lease`, for `worker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReserveParams<'a> {
    /// The queues, in order of preference.
    pub queues: &'a [String],
    /// Most tasks to take.
    pub max: usize,
    /// How long the lease lasts without renewal.
    pub lease: Duration,
    /// The id of the worker reserving ([`WorkerInfo::id`](super::WorkerInfo)),
    /// recorded as the attempts' worker; `None` for none.
    pub worker: Option<&'a str>,
}

impl<'a> ReserveParams<'a> {
    /// Up to `max` tasks of `queues` under a lease of `lease`, for no
    /// named worker.
    pub fn new(queues: &'a [String], max: usize, lease: Duration) -> Self {
        ReserveParams {
            queues,
            max,
            lease,
            worker: None,
        }
    }

    /// Names the worker reserving.
    pub fn worker(mut self, id: &'a str) -> Self {
        self.worker = Some(id);
        self
    }
}
