//! One pool of children shared by the persistent handlers one program serves.

use std::fmt;
use std::sync::Arc;

use super::pool::ChildPool;
use super::spec::PersistentProcess;

/// The children of one [`PersistentProcess`], shared by every handler made
/// with [`Handler::persistent_in`](crate::Handler::persistent_in): a program
/// serving several handlers (a Python module with many tasks) starts at most
/// [`PersistentProcess::processes`] children in all, not that many per
/// handler, and a child idle after one handler's task takes the next
/// handler's. Each request names its handler, so the program knows which
/// function to run.
#[derive(Clone)]
pub struct PersistentPool {
    pub(crate) pool: Arc<ChildPool>,
}

impl PersistentPool {
    /// A pool of `spec`'s children; `label` names it in the log (the program,
    /// or the handlers it serves).
    pub fn new(label: &str, spec: PersistentProcess) -> Self {
        Self {
            pool: Arc::new(ChildPool::new(label, spec)),
        }
    }

    /// The most children at once, if capped.
    pub fn max_processes(&self) -> Option<usize> {
        self.pool.spec().max_processes()
    }
}

impl fmt::Debug for PersistentPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistentPool")
            .field("processes", &self.max_processes())
            .finish_non_exhaustive()
    }
}
