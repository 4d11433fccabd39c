//! Persistent handler processes: a pool of long-lived children per handler,
//! each fed one task at a time over a line protocol, so a Python, Node or
//! shell handler pays its start-up once instead of once per task.
//!
//! [`protocol`] says what travels on the pipes; [`PersistentProcess`] what
//! runs and how children are recycled; the pool starts, reuses, replaces and
//! retires them; each child's stderr goes to the log tagged with its task.

mod child;
mod pool;
pub mod protocol;
mod spec;

pub(crate) use pool::{Call, ChildPool};
pub use spec::PersistentProcess;
