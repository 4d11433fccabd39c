//! What one reservation asks for ([`ReserveParams`], taken by
//! [`Backend::reserve`](super::Backend::reserve)).
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
    /// Only tasks of these handlers (`None`: any). The others stay ready, in
    /// their place, for a worker that has their handler: during a rolling
    /// deploy, a worker of the old version leaves the new handler's tasks
    /// alone. A store filters them out (memory, embedded, PostgreSQL,
    /// Redis); RabbitMQ, which delivers what it delivers, sends such a
    /// delivery round a short delay unchanged; a backend that ignores the
    /// filter (NATS) returns them, and the worker hands them back unstarted.
    pub handlers: Option<&'a [String]>,
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
            handlers: None,
        }
    }

    /// Takes only tasks of `handlers` (see [`ReserveParams::handlers`]).
    pub fn handlers(mut self, handlers: &'a [String]) -> Self {
        self.handlers = Some(handlers);
        self
    }

    /// True when a task of `handler` may be taken.
    pub fn wants(&self, handler: &str) -> bool {
        self.handlers
            .is_none_or(|hs| hs.iter().any(|h| h == handler))
    }

    /// Names the worker reserving.
    pub fn worker(mut self, id: &'a str) -> Self {
        self.worker = Some(id);
        self
    }
}
