//! Forking a process that has durable handles open, for a child that goes on
//! running this process's code (Python's `os.fork`, `multiprocessing`'s fork
//! start method, a pre-forking server) rather than `exec`ing a program.
//!
//! A child inherits its parent's memory but not its threads: a handle the
//! parent opened is unusable in the child (open a new one there), and a
//! lock one of the parent's threads held at that moment stays held for
//! ever. Most backends need nothing more than that new handle. The embedded
//! store does: SQLite's connections must not cross a fork, so around it the
//! process's database threads commit what they are running, close their
//! connections and wait (see `conveyor_embedded::fork`).
//!
//! Call [`before`] just before `fork()`, and [`after_in_parent`] or
//! [`after_in_child`] just after, in the thread that forks.

/// Makes this process's handles ready to be forked (returns once they are).
pub fn before() {
    #[cfg(feature = "embedded")]
    conveyor_embedded::fork::before();
}

/// In the parent after the fork: its handles go on.
pub fn after_in_parent() {
    #[cfg(feature = "embedded")]
    conveyor_embedded::fork::after_in_parent();
}

/// In the child after the fork: its own handles open as in a new process.
pub fn after_in_child() {
    #[cfg(feature = "embedded")]
    conveyor_embedded::fork::after_in_child();
}
