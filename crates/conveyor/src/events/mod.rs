//! The lifecycle event stream: facts about tasks, workers and sources, for
//! whoever listens — callbacks, metrics, a dashboard, traces.
//!
//! An [`EventBus`] fans events out to any number of [`Subscription`]s, each
//! with a bounded queue of its own. Emitting never waits: a subscriber that
//! falls behind loses the events that do not fit and is told how many
//! ([`Subscription::lagged`]). With no subscriber an emit is one atomic load,
//! and the event is never even built.

mod bus;
mod event;

pub use bus::{EventBus, Subscription};
pub use event::{Event, SourceEvent, TaskEvent, TaskEventKind, WorkerEvent};
