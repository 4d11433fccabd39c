//! The handler's name as a [`TaskResult`](crate::TaskResult) carries it.
//!
//! A result names its handler without touching, on the worker, a reference
//! count that other threads write: it takes over the task's own reference
//! to the handler, and the thread that hands the result to user code (the
//! job's result thread, a source's callback thread) swaps that for the
//! name ([`HandlerName::detach`]) before it does. Before, every result
//! cloned the name's `Arc<str>` on the worker (an atomic add on a counter
//! the result thread decrements) and dropped the task's handler reference
//! there (an atomic add on a counter the producer increments); measured,
//! those two writes were the largest part of settling a no-op task.
//!
//! Once detached, or cloned, a name holds nothing but the name: a result
//! the user keeps never keeps its handler (its closure, a persistent
//! handler's idle children) alive.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::engine::work::HandlerCore;

/// The name of the handler that ran a task: a `str` ([`Deref`]), compared
/// with strings, printed as the name. Cloning it copies no string.
pub struct HandlerName(Repr);

enum Repr {
    /// Still the task's reference to its handler (not yet handed out).
    Handler(Arc<HandlerCore>),
    /// The name alone.
    Name(Arc<str>),
}

impl HandlerName {
    /// Takes over a task's reference to its handler; [`HandlerName::detach`]
    /// must run before the result reaches user code.
    pub(crate) fn new(core: Arc<HandlerCore>) -> Self {
        Self(Repr::Handler(core))
    }

    /// Keeps the name and lets go of the handler.
    pub(crate) fn detach(&mut self) {
        drop(self.take_handler());
    }

    /// Keeps the name and moves the handler reference into `spent`, for a
    /// thread that hands out many results to let go of them together (the
    /// producer increments that count for every task: dropping references one
    /// at a time would move its cache line between the two cores each time).
    pub(crate) fn detach_into(&mut self, spent: &mut Vec<Arc<HandlerCore>>) {
        spent.extend(self.take_handler());
    }

    /// Swaps the handler reference, if the name still holds one, for the
    /// name alone, and returns it.
    fn take_handler(&mut self) -> Option<Arc<HandlerCore>> {
        let Repr::Handler(core) = &self.0 else {
            return None;
        };
        let name = Repr::Name(core.name.clone());
        match std::mem::replace(&mut self.0, name) {
            Repr::Handler(core) => Some(core),
            Repr::Name(_) => None,
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Handler(core) => &core.name,
            Repr::Name(name) => name,
        }
    }

    /// The name as a shared string.
    pub fn to_arc(&self) -> Arc<str> {
        match &self.0 {
            Repr::Handler(core) => core.name.clone(),
            Repr::Name(name) => name.clone(),
        }
    }
}

impl Clone for HandlerName {
    /// A clone holds the name alone.
    fn clone(&self) -> Self {
        Self(Repr::Name(self.to_arc()))
    }
}

impl Deref for HandlerName {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for HandlerName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for HandlerName {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for HandlerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for HandlerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for HandlerName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for HandlerName {}

impl std::hash::Hash for HandlerName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialEq<str> for HandlerName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for HandlerName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for HandlerName {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl From<HandlerName> for Arc<str> {
    fn from(name: HandlerName) -> Self {
        match name.0 {
            Repr::Handler(core) => core.name.clone(),
            Repr::Name(name) => name,
        }
    }
}

impl From<HandlerName> for String {
    fn from(name: HandlerName) -> Self {
        name.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::{Handler, TaskError};

    use super::HandlerName;

    fn handler() -> Handler<u32, u32> {
        Handler::io(
            "resize",
            |i: u32, _ctx| async move { Ok::<_, TaskError>(i) },
        )
    }

    #[test]
    fn reads_compares_and_prints_as_the_name() {
        let h = handler();
        let name = HandlerName::new(h.core.clone());
        assert_eq!(name, "resize");
        assert_eq!(name, *"resize");
        assert_eq!(name, String::from("resize"));
        assert_eq!(name.len(), 6, "derefs to the str");
        assert_eq!(format!("{name} {name:?}"), "resize \"resize\"");
        let shared: Arc<str> = name.clone().into();
        assert_eq!(&*shared, "resize");
        let mut set = std::collections::HashSet::new();
        set.insert(name);
        assert!(set.contains("resize"), "looked up by str");
    }

    #[test]
    fn a_detached_or_cloned_name_does_not_keep_its_handler() {
        let h = handler();
        let weak = Arc::downgrade(&h.core);
        let mut name = HandlerName::new(h.core.clone());
        let copy = name.clone();
        drop(h);
        assert!(weak.upgrade().is_some(), "held until detached");
        name.detach();
        assert!(weak.upgrade().is_none(), "detached: the handler is gone");
        assert_eq!((name.as_str(), copy.as_str()), ("resize", "resize"));
        name.detach();
        assert_eq!(name, "resize", "detaching twice changes nothing");
    }

    #[test]
    fn detaching_into_a_list_hands_the_handler_over_once() {
        let h = handler();
        let weak = Arc::downgrade(&h.core);
        let mut name = HandlerName::new(h.core.clone());
        drop(h);
        let mut spent = Vec::new();
        name.detach_into(&mut spent);
        name.detach_into(&mut spent);
        assert_eq!(spent.len(), 1, "the one reference, moved once");
        assert_eq!(name, "resize");
        assert!(weak.upgrade().is_some(), "held by the list");
        spent.clear();
        assert!(weak.upgrade().is_none(), "let go with the list");
        assert_eq!(name, "resize", "the name stays");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn results_kept_by_the_user_do_not_keep_their_handler() {
        let pool = crate::Pool::builder().workers(4).build().expect("pool");
        let h = handler();
        let weak = Arc::downgrade(&h.core);
        let kept = Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = kept.clone();
        let job = pool
            .job()
            .on_task_complete(move |r| into.lock().expect("kept").push(r))
            .start()
            .expect("job");
        for i in 0..100 {
            job.submit(&h, i).await.expect("submit");
        }
        // A task that replies on its own channel (as `map` and pipelines do).
        let alone = crate::engine::job_state::JobState::detached(&pool.engine, 1);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let opts = conveyor_core::TaskOptions::default();
        let id = conveyor_core::TaskId::next();
        crate::engine::job_state::JobState::submit(Some(&alone), id, &h.core, 7, opts, Some(tx))
            .await
            .expect("submit");
        drop(alone);
        let replied = rx.await.expect("reply");
        assert_eq!(job.await.succeeded, 100);
        drop(h);
        let kept = kept.lock().expect("kept");
        assert_eq!(kept.len(), 100);
        assert!(kept.iter().all(|r| r.handler == "resize"));
        assert_eq!(replied.handler, "resize");
        assert!(weak.upgrade().is_none(), "no result holds the handler");
    }
}
