//! `conveyor run`'s progress bar: on stderr, only when stderr is a terminal and
//! `--quiet` is off. Shows done/total, rate, ETA, failures and items in flight;
//! the total appears once the input's end is known.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const WITH_TOTAL: &str =
    "{bar:28.cyan/blue} {pos}/{len} {per_sec:.dim} eta {eta} {msg} [{elapsed_precise}]";
const NO_TOTAL: &str = "{spinner} {pos} done {per_sec:.dim} {msg} [{elapsed_precise}]";

/// The bar, or nothing.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar when stderr is a terminal and not `quiet`; `total` when known.
    pub fn new(quiet: bool, total: Option<u64>) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self { bar: None };
        }
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        set_style(&bar, total.is_some());
        bar.enable_steady_tick(Duration::from_millis(120));
        Self { bar: Some(bar) }
    }

    /// Sets the total once the input's end is reached.
    pub fn set_total(&self, total: u64) {
        if let Some(bar) = &self.bar {
            if bar.length() != Some(total) {
                bar.set_length(total);
                set_style(bar, true);
            }
        }
    }

    /// Updates position and the counters in the message.
    pub fn update(&self, done: u64, failed: u64, in_flight: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.set_message(format!("| {failed} failed | {in_flight} running"));
        }
    }

    /// Runs `f` (which writes to the terminal) with the bar out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn set_style(bar: &ProgressBar, with_total: bool) {
    let template = if with_total { WITH_TOTAL } else { NO_TOTAL };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
}
