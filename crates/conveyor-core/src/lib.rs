//! Contracts and plain data shared by every part of conveyor.
//!
//! This crate owns the vocabulary of `shared/DESIGN.md` as types: a [`TaskId`],
//! the per-task [`TaskOptions`], the [`Lane`] a handler runs in, the closed set of
//! [`Outcome`]s, the [`TaskError`] a handler returns, the [`RetryPolicy`] and the
//! crate-wide [`Error`]. It has no runtime and does no I/O, so backends and the
//! runtime can both depend on it without depending on each other.

mod error;
mod lane;
mod outcome;
mod retry;
mod task;
mod task_error;

pub use error::Error;
pub use lane::Lane;
pub use outcome::{Outcome, OutcomeKind};
pub use retry::RetryPolicy;
pub use task::{TaskId, TaskOptions};
pub use task_error::{ErrorKind, TaskError};
