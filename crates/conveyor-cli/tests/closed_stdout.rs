//! A command whose reader goes away (`conveyor status | head -1`) ends
//! quietly, as `cat` does, instead of panicking on the closed pipe.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

/// A pipe whose read end is already closed: every write to it fails.
fn closed_pipe() -> OwnedFd {
    let mut fds = [0i32; 2];
    // SAFETY: pipe fills the two-element array it is given.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: both descriptors are fresh and ours; the read end is closed
    // at once, the write end owned from here on.
    unsafe {
        libc::close(fds[0]);
        OwnedFd::from_raw_fd(fds[1])
    }
}

#[test]
fn output_to_a_closed_pipe_ends_the_command_without_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        vec!["man"],
        vec!["completions", "bash"],
        vec!["helper", "python"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_conveyor"))
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(closed_pipe()))
            .output()
            .expect("run conveyor");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: ended by SIGPIPE, like cat ({:?})",
            out.status
        );
    }
}
