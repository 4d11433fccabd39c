//! Child processes die with the process that started them — even when that
//! process is killed with `SIGKILL` and runs no code of its own at the end.
//!
//! A process killed with `SIGKILL` cannot clean up, and Linux's
//! `PR_SET_PDEATHSIG` is no answer: it reaches only the direct child (not the
//! grandchildren a shell or a build tool starts) and fires when the *thread*
//! that forked exits, not the process. So the first time this process starts
//! a child, it forks a tiny **reaper**: a copy of itself that runs no Rust
//! code beyond a loop of raw system calls. The two share a pipe. The process
//! writes `+pgid` when a child's process group starts and `-pgid` when it is
//! gone; the reaper keeps the live groups in a table allocated before the
//! fork. When the pipe reports end-of-file — this process has exited, however
//! it died, because the kernel closes its descriptors — the reaper sends
//! `SIGKILL` to every group still in its table and exits.
//!
//! The reaper sits in a process group of its own and ignores `SIGINT`,
//! `SIGTERM`, `SIGHUP` and `SIGQUIT`, so a Ctrl-C or a `kill` of the worker's
//! group leaves it alive to do its one job. After the fork it only calls
//! functions that are async-signal-safe (`close`, `sigaction`, `setpgid`,
//! `read`, `kill`, `_exit`), which is what POSIX allows in the child of a
//! multi-threaded process; it allocates nothing and cannot panic.

use std::sync::OnceLock;

/// How many process groups the reaper can hold at once; past that a group is
/// not watched (it is still killed on timeout, cancellation and drop).
const CAPACITY: usize = 65_536;

/// The write end of the pipe to the reaper, or `None` when it could not be
/// started (the process then runs without it).
static REAPER: OnceLock<Option<i32>> = OnceLock::new();

/// Asks the reaper to kill process group `pgid` if this process dies first.
/// Starts the reaper on first use.
pub(crate) fn watch(pgid: i32) {
    send(pgid);
}

/// Tells the reaper that process group `pgid` is gone.
pub(crate) fn unwatch(pgid: i32) {
    send(-pgid);
}

fn send(message: i32) {
    if message == 0 {
        return;
    }
    if let Some(fd) = reaper_fd() {
        let bytes = message.to_ne_bytes();
        loop {
            // SAFETY: writes 4 bytes from a live buffer to a descriptor we own.
            // Writes of at most PIPE_BUF bytes are atomic, so callers on
            // several threads never interleave.
            let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
            if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break;
            }
        }
    }
}

fn reaper_fd() -> Option<i32> {
    *REAPER.get_or_init(|| match start() {
        Ok(fd) => Some(fd),
        Err(e) => {
            tracing::warn!(
                "cannot start the child-process reaper ({e}): children of this process \
                 will outlive it if it is killed with SIGKILL"
            );
            None
        }
    })
}

/// Forks the reaper; returns the pipe's write end.
fn start() -> std::io::Result<i32> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills the two-element array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let [read_end, write_end] = fds;
    // Everything the child needs is allocated before the fork.
    let mut table = vec![0i32; CAPACITY];
    // SAFETY: sysconf has no preconditions.
    let max_fd = match unsafe { libc::sysconf(libc::_SC_OPEN_MAX) } {
        n if n > 0 => n.min(1 << 20) as i32,
        _ => 4096,
    };
    // SAFETY: the child runs only async-signal-safe calls (see `reap`) and
    // never returns into Rust code that could allocate or unwind.
    match unsafe { libc::fork() } {
        -1 => {
            let e = std::io::Error::last_os_error();
            // SAFETY: closing descriptors we own.
            unsafe {
                libc::close(read_end);
                libc::close(write_end);
            }
            Err(e)
        }
        0 => {
            // SAFETY: we are the freshly forked child; see `reap`.
            unsafe { reap(read_end, max_fd, &mut table) }
        }
        _child => {
            // SAFETY: the parent keeps only the write end.
            unsafe { libc::close(read_end) };
            Ok(write_end)
        }
    }
}

/// The reaper's whole life, in the forked child.
///
/// # Safety
/// Call only in the child of `fork`, with `table` allocated before it.
unsafe fn reap(read_end: i32, max_fd: i32, table: &mut [i32]) -> ! {
    // SAFETY (whole body): only async-signal-safe calls on plain integers and
    // the pre-allocated table; indexing is checked with `get`/`get_mut`, so
    // nothing here can panic.
    unsafe {
        for fd in 0..max_fd {
            if fd != read_end {
                libc::close(fd);
            }
        }
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGPIPE,
        ] {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = libc::SIG_IGN;
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
        libc::setpgid(0, 0);
        let mut used = 0usize;
        let mut buf = [0u8; 4096];
        let mut carry = [0u8; 4];
        let mut carried = 0usize;
        loop {
            let n = libc::read(read_end, buf.as_mut_ptr().cast(), buf.len());
            if n < 0 {
                // Reads errno; allocates nothing.
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                break;
            }
            if n == 0 {
                break;
            }
            for &byte in buf.iter().take(n as usize) {
                if let Some(slot) = carry.get_mut(carried) {
                    *slot = byte;
                }
                carried += 1;
                if carried == 4 {
                    carried = 0;
                    let message = i32::from_ne_bytes(carry);
                    if message > 0 {
                        used = remember(table, used, message);
                    } else {
                        forget(table, used, -message);
                    }
                }
            }
        }
        for &pgid in table.iter().take(used) {
            if pgid > 0 {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        libc::_exit(0)
    }
}

/// Puts `pgid` in the first free place; returns the new high-water mark.
fn remember(table: &mut [i32], used: usize, pgid: i32) -> usize {
    if let Some(slot) = table.iter_mut().take(used).find(|s| **s == 0) {
        *slot = pgid;
        return used;
    }
    match table.get_mut(used) {
        Some(slot) => {
            *slot = pgid;
            used + 1
        }
        None => used,
    }
}

/// Clears `pgid`'s place, if it has one.
fn forget(table: &mut [i32], used: usize, pgid: i32) {
    if let Some(slot) = table.iter_mut().take(used).find(|s| **s == pgid) {
        *slot = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_reuses_freed_places() {
        let mut table = vec![0; 3];
        let mut used = remember(&mut table, 0, 10);
        used = remember(&mut table, used, 11);
        forget(&mut table, used, 10);
        used = remember(&mut table, used, 12);
        assert_eq!((used, &table[..]), (2, &[12, 11, 0][..]));
        used = remember(&mut table, used, 13);
        used = remember(&mut table, used, 14);
        assert_eq!(
            (used, &table[..]),
            (3, &[12, 11, 13][..]),
            "full: not watched"
        );
    }
}
