//! Lanes: where an attempt runs. `io` attempts are futures on the tokio
//! runtime and need nothing here; [`cpu`] attempts run on the pool's own OS
//! threads, so CPU work never stalls the runtime; [`process`] attempts run a
//! child process in its own process group, killed with it on timeout or
//! cancel.

pub(crate) mod cpu;
pub mod process;
