//! Lanes: where an attempt runs. `io` attempts are futures on the tokio
//! runtime and need nothing here; `cpu` attempts run on the pool's own OS
//! threads, so CPU work never stalls the runtime; [`process`] attempts run a
//! child process in its own process group, killed with it on timeout or
//! cancel; [`persistent`] handlers keep long-lived children that take task
//! after task over a line protocol. Every child's process group is watched by the reaper, so
//! children die with this process even when it is killed with `SIGKILL`.

pub(crate) mod command;
pub(crate) mod cpu;
pub mod persistent;
pub mod process;
pub(crate) mod reaper;
