//! Persistent handler processes: a pool of long-lived children per program
//! (one handler's, or shared by several handlers the same program serves),
//! each fed one task at a time over a line protocol, so a Python, Node or
//! shell handler pays its start-up once instead of once per task.
//!
//! [`protocol`] says what travels on the pipes; [`PersistentProcess`] what
//! runs and how children are recycled; the pool starts, reuses, replaces and
//! retires them; each child's stderr goes to the log tagged with its task.

mod child;
mod pool;
pub mod protocol;
mod shared;
mod spec;

pub(crate) use pool::Call;
pub use shared::PersistentPool;
pub use spec::PersistentProcess;
