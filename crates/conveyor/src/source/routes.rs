//! Routes: the handlers a runner knows, by name, each bound to how its params
//! are decoded from a source's payload and how its output is encoded for the
//! source.
//!
//! A route is the engine's typed [`Handler`] plus two erased functions, so the
//! runner deals only in names, payloads and bytes. A payload that does not
//! decode never reaches the engine: the task is dead-lettered with the
//! decoder's error and the worker goes on.

use std::collections::HashMap;
use std::sync::Arc;

use conveyor_core::{Error, RetryPolicy, TaskId, TaskOptions};

use crate::handler::Handler;
use crate::job::Producer;
use crate::output::Output;

/// Why a fetched task could not be handed to the engine.
pub(crate) enum StartError {
    /// The payload is not the handler's params: dead-letter it.
    Decode(String),
    /// The engine refused it (shutting down): hand it back.
    Refused(Error),
}

type StartFn<P> =
    dyn Fn(&Producer, TaskId, &P, TaskOptions) -> Result<(), StartError> + Send + Sync;
type EncodeFn = dyn Fn(&Output) -> Result<Option<Vec<u8>>, Error> + Send + Sync;

/// One handler as the runner sees it.
pub(crate) struct Route<P> {
    /// The handler's name.
    pub(crate) name: Arc<str>,
    /// The handler's retry policy: backoff, and whether timeouts and panics
    /// are retried.
    pub(crate) retry: RetryPolicy,
    /// The handler's own attempt limit, when it set a retry policy: a task
    /// gets the smaller of this and what its source allows.
    pub(crate) attempt_cap: Option<u32>,
    start: Box<StartFn<P>>,
    encode: Box<EncodeFn>,
}

impl<P> Route<P> {
    /// Decodes the payload and submits the task to the engine under `id`.
    pub(crate) fn start(
        &self,
        producer: &Producer,
        id: TaskId,
        payload: &P,
        opts: TaskOptions,
    ) -> Result<(), StartError> {
        (self.start)(producer, id, payload, opts)
    }

    /// Encodes a successful output for the source (`None`: nothing to store).
    pub(crate) fn encode(&self, out: &Output) -> Result<Option<Vec<u8>>, Error> {
        (self.encode)(out)
    }

    /// Attempts a task may have: the source's limit, capped by the handler's.
    pub(crate) fn max_attempts(&self, source: Option<u32>) -> u32 {
        match (source, self.attempt_cap) {
            (Some(s), Some(cap)) => s.min(cap),
            (Some(s), None) => s,
            (None, _) => self.retry.max_attempts,
        }
        .max(1)
    }
}

/// The handlers of a runner, by name, for payloads of type `P`.
pub struct Routes<P> {
    by_name: HashMap<String, Arc<Route<P>>>,
}

impl<P> Default for Routes<P> {
    fn default() -> Self {
        Self {
            by_name: HashMap::new(),
        }
    }
}

impl<P> std::fmt::Debug for Routes<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("handlers", &self.names())
            .finish()
    }
}

impl<P: Send + Sync + 'static> Routes<P> {
    /// No handlers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `handler` under its name (replacing one of the same name): its
    /// params come from `decode(payload)` (an `Err` dead-letters the task with
    /// that text), and a successful output is given to the source as
    /// `encode(output)`.
    pub fn add<In, Out>(
        &mut self,
        handler: Handler<In, Out>,
        decode: impl Fn(&P) -> Result<In, String> + Send + Sync + 'static,
        encode: impl Fn(&Out) -> Result<Option<Vec<u8>>, Error> + Send + Sync + 'static,
    ) where
        In: Clone + Send + 'static,
        Out: Send + 'static,
    {
        let retry = handler.config().retry.clone();
        let attempt_cap = handler.config().retry_chosen.then_some(retry.max_attempts);
        let name = handler.name().to_string();
        let start = move |producer: &Producer, id: TaskId, payload: &P, opts: TaskOptions| {
            let params = decode(payload).map_err(StartError::Decode)?;
            producer
                .try_submit_as(id, &handler, params, opts)
                .map(|_| ())
                .map_err(|r| StartError::Refused(r.reason))
        };
        let encode = move |out: &Output| match out.downcast_ref::<Out>() {
            Some(v) => encode(v),
            None => Err(Error::Codec(
                "the handler returned an unexpected type".into(),
            )),
        };
        let route = Route {
            name: Arc::from(name.as_str()),
            retry,
            attempt_cap,
            start: Box::new(start),
            encode: Box::new(encode),
        };
        self.by_name.insert(name, Arc::new(route));
    }
}

impl<P> Routes<P> {
    /// The route of handler `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Arc<Route<P>>> {
        self.by_name.get(name)
    }

    /// The handler names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_name.keys().cloned().collect();
        v.sort();
        v
    }

    /// True when no handler is registered.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}
