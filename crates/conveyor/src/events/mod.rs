//! The lifecycle event stream: facts about tasks, workers and sources, for
//! whoever listens — callbacks, metrics, a dashboard, traces.
//!
//! An [`EventBus`] fans events out to any number of [`Subscription`]s, each
//! with a bounded queue of its own. Emitting never waits: a subscriber that
//! falls behind loses the events that do not fit and is told how many
//! ([`Subscription::lagged`]). An [`Observer`] instead is called in place on
//! every event and never misses one. The metrics count in place too, from
//! a fact that borrows the task's names: where only they listen, a task's
//! event is never built. With nobody listening an emit is one atomic load.

mod bus;
mod event;

pub use bus::{EventBus, Observer, Subscription};
pub(crate) use event::TaskFact;
pub use event::{Event, SourceEvent, TaskEvent, TaskEventKind, WorkerEvent};
