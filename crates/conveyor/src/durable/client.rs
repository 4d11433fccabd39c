//! The client: enqueue typed tasks into a backend and wait for their results,
//! like Celery's `delay()` and `AsyncResult.get()`.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

use conveyor_core::{
    finished_record, Backend, Codec, Enqueued, Error, Json, TaskId, TaskRecord, TaskState,
};

use crate::events::{Event, EventBus, TaskEvent};

use super::task_type::{EnqueueOptions, TaskType};

/// Enqueues tasks into a backend and reads their results.
#[derive(Clone)]
pub struct Client<C: Codec = Json> {
    backend: Arc<dyn Backend>,
    codec: C,
    events: Option<EventBus>,
}

impl<C: Codec> fmt::Debug for Client<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("backend", &self.backend.kind())
            .finish()
    }
}

impl Client<Json> {
    /// A client encoding params and results as JSON.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            codec: Json,
            events: None,
        }
    }
}

impl<C: Codec> Client<C> {
    /// The same client with another codec (workers must use the same one).
    pub fn with_codec<D: Codec>(self, codec: D) -> Client<D> {
        Client {
            backend: self.backend,
            codec,
            events: self.events,
        }
    }

    /// The same client, emitting a
    /// [`TaskEventKind::Enqueued`](crate::events::TaskEventKind::Enqueued) event on `bus`
    /// for every task it enqueues (a duplicate of a unique key is not one).
    pub fn with_events(mut self, bus: EventBus) -> Self {
        self.events = Some(bus);
        self
    }

    /// Tells the event bus, if any, that these tasks were enqueued.
    fn enqueued(&self, done: &[Enqueued], handler: &str, queue: &str) {
        let Some(bus) = &self.events else {
            return;
        };
        if !bus.is_listened() {
            return;
        }
        let (handler, queue): (Arc<str>, Arc<str>) = (Arc::from(handler), Arc::from(queue));
        for e in done.iter().filter(|e| !e.duplicate) {
            bus.emit(|| Event::Task(TaskEvent::enqueued(e.id, handler.clone(), queue.clone())));
        }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Enqueues a task with default options.
    pub async fn enqueue<In: Serialize, Out>(
        &self,
        ty: &TaskType<In, Out>,
        params: &In,
    ) -> Result<DurableHandle<Out, C>, Error> {
        self.enqueue_with(ty, params, &EnqueueOptions::default())
            .await
    }

    /// Enqueues a task with options.
    pub async fn enqueue_with<In: Serialize, Out>(
        &self,
        ty: &TaskType<In, Out>,
        params: &In,
        opts: &EnqueueOptions,
    ) -> Result<DurableHandle<Out, C>, Error> {
        #[allow(unused_mut)] // mutated with the `otel` feature
        let mut task = opts.to_task(ty.name(), self.codec.encode(params)?);
        let queue = task.queue.clone();
        #[cfg(feature = "otel")]
        let span = {
            let cx = crate::otel::enqueue_span(&queue, 1);
            task.trace = crate::otel::trace_context(&cx).or(task.trace);
            cx
        };
        let done = self.backend.enqueue(task).await;
        #[cfg(feature = "otel")]
        crate::otel::end_enqueue(
            &span,
            done.as_ref().map(|e| vec![e.id]).as_deref().unwrap_or(&[]),
            done.as_ref().err(),
        );
        let e = done?;
        self.enqueued(&[e], ty.name(), &queue);
        Ok(self.handle_for(e.id, e.duplicate))
    }

    /// Enqueues many tasks of one type in one atomic batch.
    pub async fn enqueue_many<'a, In, Out, I>(
        &self,
        ty: &TaskType<In, Out>,
        params: I,
        opts: &EnqueueOptions,
    ) -> Result<Vec<DurableHandle<Out, C>>, Error>
    where
        In: Serialize + 'a,
        I: IntoIterator<Item = &'a In>,
    {
        #[allow(unused_mut)] // mutated with the `otel` feature
        let mut tasks = params
            .into_iter()
            .map(|p| Ok(opts.to_task(ty.name(), self.codec.encode(p)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let queue = opts.to_task(ty.name(), Vec::new()).queue;
        #[cfg(feature = "otel")]
        let span = {
            let cx = crate::otel::enqueue_span(&queue, tasks.len());
            if let Some(trace) = crate::otel::trace_context(&cx) {
                for t in &mut tasks {
                    t.trace = Some(trace.clone());
                }
            }
            cx
        };
        let done = self.backend.enqueue_many(tasks).await;
        #[cfg(feature = "otel")]
        {
            let ids: Vec<TaskId> = done
                .as_ref()
                .map(|d| d.iter().map(|e| e.id).collect())
                .unwrap_or_default();
            crate::otel::end_enqueue(&span, &ids, done.as_ref().err());
        }
        let done = done?;
        self.enqueued(&done, ty.name(), &queue);
        Ok(done
            .into_iter()
            .map(|e| self.handle_for(e.id, e.duplicate))
            .collect())
    }

    /// A handle on a task enqueued earlier (by id, for example from another process).
    pub fn handle<In, Out>(&self, _ty: &TaskType<In, Out>, id: TaskId) -> DurableHandle<Out, C> {
        self.handle_for(id, false)
    }

    /// Cancels a waiting task; returns its state afterwards (see [`Administration::cancel`](conveyor_core::Administration::cancel)).
    pub async fn cancel(&self, id: TaskId) -> Result<TaskState, Error> {
        self.backend.cancel(id).await
    }

    /// Reads a task's record.
    pub async fn status(&self, id: TaskId) -> Result<Option<TaskRecord>, Error> {
        self.backend.get(id).await
    }

    fn handle_for<Out>(&self, id: TaskId, duplicate: bool) -> DurableHandle<Out, C> {
        DurableHandle {
            id,
            duplicate,
            backend: self.backend.clone(),
            codec: self.codec.clone(),
            _out: PhantomData,
        }
    }
}

/// A task in a backend, typed by its result.
pub struct DurableHandle<Out, C: Codec = Json> {
    id: TaskId,
    duplicate: bool,
    backend: Arc<dyn Backend>,
    codec: C,
    _out: PhantomData<fn() -> Out>,
}

impl<Out, C: Codec> fmt::Debug for DurableHandle<Out, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableHandle")
            .field("id", &self.id)
            .field("duplicate", &self.duplicate)
            .finish()
    }
}

impl<Out: DeserializeOwned, C: Codec> DurableHandle<Out, C> {
    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// True when enqueueing found an unfinished task with the same unique key and
    /// this handle is that task's.
    pub fn is_duplicate(&self) -> bool {
        self.duplicate
    }

    /// Waits for the task to finish: its result, or [`Error::TaskFailed`] when it
    /// was dead-lettered or cancelled.
    pub async fn wait(&self) -> Result<Out, Error> {
        self.wait_until(None).await
    }

    /// [`DurableHandle::wait`], giving up with [`Error::WaitTimeout`] after `timeout`.
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<Out, Error> {
        self.wait_until(Some(Instant::now() + timeout)).await
    }

    /// The task's result if it has finished, without waiting.
    pub async fn try_result(&self) -> Result<Option<Out>, Error> {
        let rec = self.record().await?;
        self.decode(rec)
    }

    /// Cancels the task if it is still waiting.
    pub async fn cancel(&self) -> Result<TaskState, Error> {
        self.backend.cancel(self.id).await
    }

    /// The task's current state.
    pub async fn state(&self) -> Result<TaskState, Error> {
        Ok(self.record().await?.state)
    }

    /// The task's record; `NotFound` once pruned (or never enqueued).
    async fn record(&self) -> Result<TaskRecord, Error> {
        self.backend
            .get(self.id)
            .await?
            .ok_or(Error::NotFound(self.id))
    }

    /// Reads the task until it has finished, or `deadline` has passed
    /// ([`finished_record`]: woken by the store's finish notifications where
    /// it has them).
    async fn wait_until(&self, deadline: Option<Instant>) -> Result<Out, Error> {
        let store = self.backend.result_store()?;
        let timeout = deadline.map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        });
        let record = finished_record(store, self.id, timeout).await?;
        self.decode(record)?.ok_or(Error::WaitTimeout(self.id))
    }

    fn decode(&self, rec: TaskRecord) -> Result<Option<Out>, Error> {
        match rec.state {
            TaskState::Completed => {
                let bytes = rec.result.unwrap_or_else(|| b"null".to_vec());
                self.codec.decode(&bytes).map(Some)
            }
            TaskState::Dead | TaskState::Cancelled => Err(Error::TaskFailed {
                id: self.id,
                state: rec.state,
                error: rec.error.unwrap_or_else(|| rec.state.to_string()),
            }),
            _ => Ok(None),
        }
    }
}
