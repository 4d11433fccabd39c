//! Pause points for tests: where a custody move can be held still, so a test
//! can make a race (a finish arriving while a renewal is half done) happen
//! every time instead of once in a while.
//!
//! A hook is installed only through `AmqpBackend::set_hook`, which exists
//! with the `test-hooks` feature (the crate's own tests turn it on); without
//! it no hook can be set and each point costs one check of an empty cell.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use conveyor_core::TaskId;

/// A point a custody move passes, handed to the hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Point {
    /// Custody generation `generation` of `task` holds its new copy and the
    /// previous place (the delivery, or the generation before) is not let
    /// go yet: for generation 1 the copy and the delivery's ack are sent but
    /// not committed; for later ones the copy is confirmed and the previous
    /// generation not deleted.
    Copied {
        /// The task.
        task: TaskId,
        /// The generation just written.
        generation: u64,
    },
    /// An operation on `task`'s claim (a renewal, a report, the move to
    /// custody) found another one in flight and waits for it to end.
    Contended {
        /// The task.
        task: TaskId,
    },
    /// `task`'s delivery moved into custody (committed).
    InCustody {
        /// The task.
        task: TaskId,
    },
}

/// What a hook returns: the move goes on when it resolves.
pub type Pause = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A hook: called at each [`Point`]; the operation waits for its future.
pub type Hook = Arc<dyn Fn(Point) -> Pause + Send + Sync>;

/// The hook of one backend, if a test set one.
#[derive(Default)]
pub(crate) struct Hooks(OnceLock<Hook>);

impl Hooks {
    /// Waits for the hook at `point` (nothing without a hook).
    pub(crate) async fn at(&self, point: Point) {
        if let Some(hook) = self.0.get() {
            hook(point).await;
        }
    }

    /// Installs `hook`; false when one was set already.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub(crate) fn set(&self, hook: Hook) -> bool {
        self.0.set(hook).is_ok()
    }
}
