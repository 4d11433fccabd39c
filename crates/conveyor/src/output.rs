//! The type-erased value a handler returns, as carried to result handlers.

use std::any::Any;
use std::fmt;

/// A handler's return value with its type erased, so one job can mix handlers that
/// return different types. Read it back with [`Output::downcast`] or
/// [`Output::downcast_ref`]; the typed helpers ([`Pool::map`](crate::Pool::map),
/// pipelines) do that for you.
pub struct Output(Box<dyn Any + Send>);

impl Output {
    /// Wraps a value.
    pub fn new<T: Any + Send>(value: T) -> Self {
        Output(Box::new(value))
    }

    /// Takes the value out if it is a `T`; gives the `Output` back otherwise.
    pub fn downcast<T: Any>(self) -> Result<T, Output> {
        match self.0.downcast::<T>() {
            Ok(v) => Ok(*v),
            Err(b) => Err(Output(b)),
        }
    }

    /// Borrows the value if it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }

    /// True if the value is a `T`.
    pub fn is<T: Any>(&self) -> bool {
        self.0.is::<T>()
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Output(..)")
    }
}
