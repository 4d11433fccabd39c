//! What a source may ask of the runner that runs its tasks.
//!
//! A source that loses the right to settle some of its tasks while they run
//! (a Kafka partition revoked, a broker channel closed) cancels their
//! attempts through its [`Control`], given to it by [`Source::attach`] when
//! the run begins. A cancelled attempt settles as handed back.
//!
//! [`Source::attach`]: super::Source::attach

use std::sync::Weak;

use conveyor_core::TaskId;

use crate::events::{Event, EventBus};

/// The runner's side of a [`Control`].
pub(crate) trait ControlOps: Send + Sync {
    /// Cancels the running attempt of task `id`; true if it was held.
    fn cancel(&self, id: TaskId) -> bool;
    /// The runner's event bus.
    fn events(&self) -> &EventBus;
}

/// Lets a source cancel its own running tasks. Cheap to clone; does nothing
/// once the runner is gone.
#[derive(Clone)]
pub struct Control {
    pub(crate) ops: Weak<dyn ControlOps>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("running", &(self.ops.strong_count() > 0))
            .finish()
    }
}

impl Control {
    /// Cancels the running (or waiting) attempt of task `id`: it ends
    /// cancelled and is settled as handed back. False when the runner does
    /// not hold the task (already settled) or is gone.
    pub fn cancel(&self, id: TaskId) -> bool {
        self.ops.upgrade().is_some_and(|ops| ops.cancel(id))
    }

    /// Emits an event on the runner's bus (built only if someone listens).
    pub fn emit(&self, make: impl FnOnce() -> Event) {
        if let Some(ops) = self.ops.upgrade() {
            ops.events().emit(make);
        }
    }
}
