//! `concurrent.futures`-style helpers: run a handler over many inputs with at most
//! N at once, and get outcomes in input order ([`Pool::map`]) or as they finish
//! ([`Pool::map_unordered`]); [`Pool::map_batched`] groups tiny inputs into
//! batches so per-task overhead vanishes.
//!
//! Inputs are pulled lazily: at most `limit` are submitted and not yet consumed,
//! so an endless input stream runs in bounded memory. Each call goes through the
//! pool's dispatcher, so the handler's lane, limits, retries and timeouts apply.

use std::sync::Arc;

use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::oneshot;

use conveyor_core::{Outcome, TaskError, TaskId, TaskOptions};

use crate::engine::job_state::JobState;
use crate::handler::Handler;
use crate::pool::Pool;

/// Submits one input and waits for its typed outcome.
pub(crate) async fn call<In, Out>(
    job: Arc<JobState>,
    handler: Handler<In, Out>,
    input: In,
) -> Outcome<Out>
where
    In: Clone + Send + 'static,
    Out: Send + 'static,
{
    {
        let (tx, rx) = oneshot::channel();
        let opts = TaskOptions::default();
        if let Err(rejected) = JobState::submit(
            Some(&job),
            TaskId::next(),
            &handler.core,
            input,
            opts,
            Some(tx),
        )
        .await
        {
            return Outcome::Failed(TaskError::permanent(rejected.reason.to_string()));
        }
        match rx.await {
            Ok(result) => match result.outcome {
                Outcome::Succeeded(out) => match out.downcast::<Out>() {
                    Ok(v) => Outcome::Succeeded(v),
                    Err(_) => Outcome::Failed(TaskError::permanent("output of an unexpected type")),
                },
                Outcome::Failed(e) => Outcome::Failed(e),
                Outcome::Cancelled => Outcome::Cancelled,
                Outcome::TimedOut => Outcome::TimedOut,
                Outcome::Panicked(m) => Outcome::Panicked(m),
            },
            Err(_) => Outcome::Cancelled,
        }
    }
}

/// A copy of a non-success outcome for another item of the same batch.
fn replicate<A, B>(outcome: &Outcome<A>) -> Outcome<B> {
    match outcome {
        Outcome::Succeeded(_) => Outcome::Failed(TaskError::permanent("batch item lost")),
        Outcome::Failed(e) => Outcome::Failed(e.clone()),
        Outcome::Cancelled => Outcome::Cancelled,
        Outcome::TimedOut => Outcome::TimedOut,
        Outcome::Panicked(m) => Outcome::Panicked(m.clone()),
    }
}

impl Pool {
    /// Runs `handler` over `inputs`, at most `limit` at once; outcomes come in
    /// input order.
    pub fn map<In, Out, I>(
        &self,
        handler: &Handler<In, Out>,
        inputs: I,
        limit: usize,
    ) -> impl Stream<Item = Outcome<Out>> + Send + 'static
    where
        In: Clone + Send + 'static,
        Out: Send + 'static,
        I: IntoIterator<Item = In>,
        I::IntoIter: Send + 'static,
    {
        self.map_stream(handler, stream::iter(inputs), limit)
    }

    /// Like [`Pool::map`] over an async stream of inputs.
    pub fn map_stream<In, Out, S>(
        &self,
        handler: &Handler<In, Out>,
        inputs: S,
        limit: usize,
    ) -> impl Stream<Item = Outcome<Out>> + Send + 'static
    where
        In: Clone + Send + 'static,
        Out: Send + 'static,
        S: Stream<Item = In> + Send + 'static,
    {
        let limit = limit.max(1);
        let job = JobState::detached(&self.engine, limit);
        let handler = handler.clone();
        inputs
            .map(move |input| call(job.clone(), handler.clone(), input))
            .buffered(limit)
    }

    /// Runs `handler` over `inputs`, at most `limit` at once; yields
    /// `(input index, outcome)` as each finishes.
    pub fn map_unordered<In, Out, I>(
        &self,
        handler: &Handler<In, Out>,
        inputs: I,
        limit: usize,
    ) -> impl Stream<Item = (usize, Outcome<Out>)> + Send + 'static
    where
        In: Clone + Send + 'static,
        Out: Send + 'static,
        I: IntoIterator<Item = In>,
        I::IntoIter: Send + 'static,
    {
        let limit = limit.max(1);
        let job = JobState::detached(&self.engine, limit);
        let handler = handler.clone();
        stream::iter(inputs.into_iter().enumerate())
            .map(move |(i, input)| {
                let fut = call(job.clone(), handler.clone(), input);
                async move { (i, fut.await) }
            })
            .buffer_unordered(limit)
    }

    /// Runs `handler` over `inputs` in batches of `batch` items (one task per
    /// batch, see [`Handler::batched`]), at most `limit` batches at once; outcomes
    /// come one per input, in input order.
    pub fn map_batched<In, Out, I>(
        &self,
        handler: &Handler<In, Out>,
        inputs: I,
        limit: usize,
        batch: usize,
    ) -> impl Stream<Item = Outcome<Out>> + Send + 'static
    where
        In: Clone + Send + 'static,
        Out: Send + 'static,
        I: IntoIterator<Item = In>,
        I::IntoIter: Send + 'static,
    {
        let batched = handler.batched();
        let chunks = stream::iter(inputs).chunks(batch.max(1));
        let limit = limit.max(1);
        let job = JobState::detached(&self.engine, limit);
        chunks
            .map(move |chunk| {
                let len = chunk.len();
                let fut = call(job.clone(), batched.clone(), chunk);
                async move {
                    match fut.await {
                        Outcome::Succeeded(outcomes) => outcomes,
                        other => (0..len).map(|_| replicate(&other)).collect(),
                    }
                }
            })
            .buffered(limit)
            .flat_map(stream::iter)
    }
}
