//! The handler's name as a [`TaskResult`](crate::TaskResult) carries it.
//!
//! A result names its handler without copying the name and without touching
//! a reference count the other threads share: it takes over the task's own
//! reference to the handler. Before, every result cloned the name's
//! `Arc<str>` on the worker (one atomic add on a cache line every worker and
//! the result thread write) and dropped the task's handler reference there
//! (another); measured, those two contended writes were the largest part of
//! settling a no-op task.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::handler::HandlerCore;

/// The name of the handler that ran a task: a `str` ([`Deref`]), compared
/// with strings, printed as the name. Cloning it copies no string.
#[derive(Clone)]
pub struct HandlerName(Arc<HandlerCore>);

impl HandlerName {
    pub(crate) fn new(core: Arc<HandlerCore>) -> Self {
        Self(core)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0.name
    }

    /// The name as a shared string (one reference count added).
    pub fn to_arc(&self) -> Arc<str> {
        self.0.name.clone()
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
        name.to_arc()
    }
}

impl From<HandlerName> for String {
    fn from(name: HandlerName) -> Self {
        name.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use crate::{Handler, TaskError};

    use super::HandlerName;

    #[test]
    fn reads_compares_and_prints_as_the_name() {
        let h = Handler::io(
            "resize",
            |i: u32, _ctx| async move { Ok::<_, TaskError>(i) },
        );
        let name = HandlerName::new(h.core.clone());
        assert_eq!(name, "resize");
        assert_eq!(name, *"resize");
        assert_eq!(name, String::from("resize"));
        assert_eq!(name.len(), 6, "derefs to the str");
        assert_eq!(format!("{name} {name:?}"), "resize \"resize\"");
        let shared: std::sync::Arc<str> = name.clone().into();
        assert_eq!(&*shared, "resize");
        let mut set = std::collections::HashSet::new();
        set.insert(name);
        assert!(set.contains("resize"), "looked up by str");
    }
}
