//! `--keep-order`'s memory bound: the reader may run at most `width` items ahead
//! of the last item printed, so one slow item cannot make the reporter hold the
//! output of an unbounded number of finished items behind it.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

/// Items started versus items printed.
#[derive(Debug)]
pub struct Window {
    width: Option<u64>,
    state: Mutex<(u64, bool)>,
    moved: Condvar,
}

impl Window {
    /// A window `width` items wide, or none (`None`: the reader never waits).
    pub fn new(width: Option<u64>) -> Self {
        Self {
            width,
            state: Mutex::new((0, false)),
            moved: Condvar::new(),
        }
    }

    /// Waits until item `seq` may start; false once the run stops.
    pub fn admit(&self, seq: u64) -> bool {
        let Some(width) = self.width else {
            return true;
        };
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let (printed, stopped) = *st;
            if stopped {
                return false;
            }
            if seq <= printed + width {
                return true;
            }
            st = self
                .moved
                .wait_timeout(st, Duration::from_millis(200))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Every item up to `seq` is printed.
    pub fn printed(&self, seq: u64) {
        if self.width.is_some() {
            let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if seq > st.0 {
                st.0 = seq;
                self.moved.notify_all();
            }
        }
    }

    /// The run stops: release a waiting reader.
    pub fn stop(&self) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.1 = true;
        self.moved.notify_all();
    }
}
