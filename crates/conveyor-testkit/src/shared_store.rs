//! A store a whole test binary shares (a cluster, a Sentinel set): started
//! on first use, stopped when the binary exits.

use std::sync::{Mutex, OnceLock, PoisonError};

/// One shared store of type `T`, in a `static`.
pub(crate) struct SharedStore<T> {
    cell: OnceLock<Mutex<T>>,
}

impl<T: Send> SharedStore<T> {
    /// None yet.
    pub(crate) const fn new() -> Self {
        Self {
            cell: OnceLock::new(),
        }
    }

    /// What `f` reads of the store, started with `start` on first use;
    /// `at_exit` (which calls [`SharedStore::stop`] on this same static)
    /// is registered then to stop it when the binary exits. Blocking.
    pub(crate) fn with<R>(
        &'static self,
        start: fn() -> T,
        at_exit: extern "C" fn(),
        f: impl FnOnce(&T) -> R,
    ) -> R {
        let store = self.cell.get_or_init(|| {
            let store = start();
            // SAFETY: registers a plain function without arguments, run
            // once by exit(3) after the tests; it only touches the
            // initialised store.
            unsafe { libc::atexit(at_exit) };
            Mutex::new(store)
        });
        f(&store.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Stops the store with `stop` (its processes killed and reaped before
    /// their folders go), if it was started.
    pub(crate) fn stop(&'static self, stop: impl FnOnce(&mut T)) {
        if let Some(store) = self.cell.get() {
            stop(&mut store.lock().unwrap_or_else(PoisonError::into_inner));
        }
    }
}
