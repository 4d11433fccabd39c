//! What [`Inspection::list`](super::Inspection::list) returns: the tasks of one
//! state, filtered, in an order, a page at a time.
//!
//! A params struct rather than arguments, so that a new filter is a new field
//! with a default and a setter, and no caller breaks. Paging is by key, never
//! by offset: a page starts strictly after the last task of the page before
//! it ([`ListParams::after`]), so reading page *n* costs what reading the first
//! one does, and tasks added or removed meanwhile never shift a page.

use crate::durable_task::TaskRecord;
use crate::task::TaskId;
use crate::task_state::TaskState;

/// The order of a listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ListOrder {
    /// Oldest first (the default). Oldest means lowest id, which is enqueue
    /// order, except where a backend documents otherwise (Redis lists
    /// completed and cancelled tasks in the order they finished).
    #[default]
    OldestFirst,
    /// Newest first: the reverse of [`ListOrder::OldestFirst`].
    NewestFirst,
}

/// What to list: tasks in one state (the stores index by state), optionally
/// of one queue and one handler, in an order, at most `limit` of them,
/// starting after a given task.
///
/// To read every matching task, ask again with [`ListParams::after`] set to
/// the last task of each page until a page comes back shorter than the limit:
///
/// ```
/// # use conveyor_core::{ListParams, TaskState, TaskId};
/// let first = ListParams::new(TaskState::Dead).queue("emails").limit(50);
/// // … list(&first) returned a full page whose last task is 1234:
/// let next = first.clone().after(TaskId(1234));
/// # let _ = next;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListParams {
    /// Only tasks in this state.
    pub state: TaskState,
    /// Only tasks of this queue (`None`: every queue).
    pub queue: Option<String>,
    /// Only tasks of this handler (`None`: every handler).
    pub handler: Option<String>,
    /// Oldest or newest first.
    pub order: ListOrder,
    /// Only tasks that come strictly after this one in `order` (`None`: from
    /// the first). The task need not match the other filters. Where the
    /// order is by id, that is every id above it (oldest first) or below it
    /// (newest first), whether or not the task still exists.
    pub after: Option<TaskId>,
    /// At most this many.
    pub limit: usize,
}

impl ListParams {
    /// Tasks in `state`, of every queue and handler, oldest first, from the
    /// first, at most 100.
    pub fn new(state: TaskState) -> Self {
        Self {
            state,
            queue: None,
            handler: None,
            order: ListOrder::default(),
            after: None,
            limit: 100,
        }
    }

    /// Only tasks of `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Only tasks of this queue, if one is given.
    pub fn queue_opt(mut self, queue: Option<&str>) -> Self {
        self.queue = queue.map(str::to_string);
        self
    }

    /// Only tasks of `handler`.
    pub fn handler(mut self, handler: impl Into<String>) -> Self {
        self.handler = Some(handler.into());
        self
    }

    /// Only tasks of this handler, if one is given.
    pub fn handler_opt(mut self, handler: Option<&str>) -> Self {
        self.handler = handler.map(str::to_string);
        self
    }

    /// In `order` (default [`ListOrder::OldestFirst`]).
    pub fn order(mut self, order: ListOrder) -> Self {
        self.order = order;
        self
    }

    /// Newest first: shorthand for `order(ListOrder::NewestFirst)`.
    pub fn newest_first(self) -> Self {
        self.order(ListOrder::NewestFirst)
    }

    /// Only tasks after `id` in the order: the next page after a page whose
    /// last task is `id`.
    pub fn after(mut self, id: TaskId) -> Self {
        self.after = Some(id);
        self
    }

    /// Only tasks after this one, if one is given (`None`: from the first).
    pub fn after_opt(mut self, id: Option<TaskId>) -> Self {
        self.after = id;
        self
    }

    /// At most `limit` tasks.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The cursor as a bound on ids for a store that keeps them as SQL
    /// `bigint`s: the page's `after`, or, for the first page, 0 (oldest
    /// first) or `i64::MAX` (newest first). Ids past `i64::MAX` cannot be
    /// stored, so they bound like `i64::MAX`.
    pub fn id_bound(&self) -> i64 {
        match (self.order, self.after) {
            (ListOrder::NewestFirst, None) => i64::MAX,
            (_, None) => 0,
            (_, Some(id)) => i64::try_from(id.0).unwrap_or(i64::MAX),
        }
    }

    /// The params for the page after `page` (a page these params returned):
    /// `None` when `page` was the last one (shorter than the limit).
    pub fn next_page(&self, page: &[TaskRecord]) -> Option<ListParams> {
        if page.len() < self.limit {
            return None;
        }
        let last = page.last()?;
        Some(self.clone().after(last.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_todays_listing() {
        let p = ListParams::new(TaskState::Dead);
        assert_eq!(p.order, ListOrder::OldestFirst);
        assert_eq!(
            (p.queue, p.handler, p.after, p.limit),
            (None, None, None, 100)
        );
    }

    #[test]
    fn setters_set() {
        let p = ListParams::new(TaskState::Available)
            .queue("q")
            .handler("h")
            .newest_first()
            .after(TaskId(9))
            .limit(3);
        assert_eq!(p.queue.as_deref(), Some("q"));
        assert_eq!(p.handler.as_deref(), Some("h"));
        assert_eq!(p.order, ListOrder::NewestFirst);
        assert_eq!(p.after, Some(TaskId(9)));
        assert_eq!(p.limit, 3);
        let p = p.queue_opt(None).handler_opt(None).after_opt(None);
        assert_eq!((p.queue, p.handler, p.after), (None, None, None));
    }
}
