//! The handlers a durable worker runs, keyed by name, with their codecs bound.
//!
//! A registered handler is the engine's typed [`Handler`] plus two erased
//! functions: one that decodes a payload and submits it to the engine, one that
//! encodes the handler's output. The worker deals only in names and bytes.

use std::collections::HashMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use conveyor_core::{Codec, Error, RetryPolicy, TaskId, TaskOptions};

use crate::handler::Handler;
use crate::job::{Producer, TaskHandle};
use crate::output::Output;

/// Why a reserved task could not be handed to the engine.
pub(crate) enum StartError {
    /// The payload is not the handler's params: dead-letter it.
    Decode(Error),
    /// The engine refused it (shutting down): hand the lease back.
    Refused(Error),
}

type StartFn =
    dyn Fn(&Producer, TaskId, &[u8], TaskOptions) -> Result<TaskHandle, StartError> + Send + Sync;
type EncodeFn = dyn Fn(&Output) -> Result<Vec<u8>, Error> + Send + Sync;

/// One handler as the worker sees it.
pub(crate) struct Registered {
    pub(crate) retry: RetryPolicy,
    /// The handler's own attempt limit, when it set a retry policy: the task
    /// gets the smaller of this and its enqueued `max_attempts`.
    pub(crate) attempt_cap: Option<u32>,
    start: Box<StartFn>,
    encode: Box<EncodeFn>,
}

impl Registered {
    fn new<In, Out, C>(handler: Handler<In, Out>, codec: C) -> Self
    where
        In: DeserializeOwned + Clone + Send + 'static,
        Out: Serialize + Send + 'static,
        C: Codec,
    {
        let retry = handler.config().retry.clone();
        let attempt_cap = (retry != RetryPolicy::default()).then_some(retry.max_attempts);
        let dec = codec.clone();
        let name: Arc<str> = Arc::from(handler.name());
        let start = move |producer: &Producer, id: TaskId, payload: &[u8], opts: TaskOptions| {
            let params: In = dec
                .decode(payload)
                .map_err(|e| StartError::Decode(Error::Codec(format!("handler {name}: {e}"))))?;
            producer
                .try_submit_as(id, &handler, params, opts)
                .map_err(|r| StartError::Refused(r.reason))
        };
        let encode = move |out: &Output| match out.downcast_ref::<Out>() {
            Some(v) => codec.encode(v),
            None => Err(Error::Codec(
                "the handler returned an unexpected type".into(),
            )),
        };
        Self {
            retry,
            attempt_cap,
            start: Box::new(start),
            encode: Box::new(encode),
        }
    }

    /// Decodes the payload and submits the task to the engine under `id`.
    pub(crate) fn start(
        &self,
        producer: &Producer,
        id: TaskId,
        payload: &[u8],
        opts: TaskOptions,
    ) -> Result<TaskHandle, StartError> {
        (self.start)(producer, id, payload, opts)
    }

    /// Encodes a successful output.
    pub(crate) fn encode(&self, out: &Output) -> Result<Vec<u8>, Error> {
        (self.encode)(out)
    }
}

/// Handlers by name.
#[derive(Default)]
pub(crate) struct Registry {
    by_name: HashMap<String, Arc<Registered>>,
}

impl Registry {
    /// Adds a handler under its name, replacing one of the same name.
    pub(crate) fn add<In, Out, C>(&mut self, handler: Handler<In, Out>, codec: C)
    where
        In: DeserializeOwned + Clone + Send + 'static,
        Out: Serialize + Send + 'static,
        C: Codec,
    {
        let name = handler.name().to_string();
        self.by_name
            .insert(name, Arc::new(Registered::new(handler, codec)));
    }

    /// The handler registered under `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Arc<Registered>> {
        self.by_name.get(name)
    }

    /// The registered names, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_name.keys().cloned().collect();
        v.sort();
        v
    }

    /// True when nothing is registered.
    pub(crate) fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}
