//! The type-erased value a handler returns, as carried to result handlers.
//!
//! A value of up to two words and word-aligned (a number, a small struct, an
//! `Arc`, a `Box`; not a `String` or a `Vec`, which take three) is kept
//! inline, not boxed: a box made on a worker and freed on the result thread
//! costs an allocation and a cross-thread free per task. Larger values are
//! boxed as before.

use std::any::Any;
use std::fmt;

use smallbox::space::S2;
use smallbox::{smallbox, SmallBox};

/// A handler's return value with its type erased, so one job can mix handlers that
/// return different types. Read it back with [`Output::downcast`] or
/// [`Output::downcast_ref`]; the typed helpers ([`Pool::map`](crate::Pool::map),
/// pipelines) do that for you.
pub struct Output(SmallBox<dyn Any + Send, S2>);

impl Output {
    /// Wraps a value.
    pub fn new<T: Any + Send>(value: T) -> Self {
        Output(smallbox!(value))
    }

    /// Takes the value out if it is a `T`; gives the `Output` back otherwise.
    pub fn downcast<T: Any>(self) -> Result<T, Output> {
        match self.0.downcast::<T>() {
            Ok(v) => Ok(v.into_inner()),
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::Output;

    #[test]
    fn small_and_large_values_come_back_as_they_went_in() {
        let small = Output::new(7u64);
        assert!(small.is::<u64>() && !small.is::<u32>());
        assert_eq!(small.downcast_ref::<u64>(), Some(&7));
        let small = small.downcast::<u32>().expect_err("not a u32");
        assert_eq!(small.downcast::<u64>().ok(), Some(7));
        let large = Output::new([9u64; 8]);
        assert_eq!(large.downcast_ref::<[u64; 8]>(), Some(&[9; 8]));
        assert_eq!(large.downcast::<[u64; 8]>().ok(), Some([9; 8]));
        let text = Output::new(String::from("kept"));
        assert_eq!(text.downcast::<String>().ok().as_deref(), Some("kept"));
        assert_eq!(Output::new(()).downcast::<()>().ok(), Some(()));
    }

    #[test]
    fn a_value_is_dropped_once_whether_inline_or_boxed() {
        struct Counted(Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let drops = Arc::new(AtomicUsize::new(0));
        drop(Output::new(Counted(drops.clone())));
        drop(Output::new((Counted(drops.clone()), [0u64; 8])));
        let back = Output::new(Counted(drops.clone())).downcast::<Counted>();
        assert_eq!(drops.load(Ordering::SeqCst), 2, "taken out: not dropped");
        drop(back);
        assert_eq!(drops.load(Ordering::SeqCst), 3);
    }
}
