//! The JSON API under `/api/v1`, one file per resource.

pub(crate) mod dead;
pub(crate) mod overview;
pub(crate) mod queues;
pub(crate) mod schedules;
pub(crate) mod tasks;
pub(crate) mod workflows;
