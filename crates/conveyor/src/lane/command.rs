//! What the process lane and persistent handlers share about a child: the
//! program with its arguments, environment and working directory, the
//! builder methods that set them, and the one way a child is started — as
//! the leader of a new process group (so `SIGKILL` to the group also reaches
//! what it started), its stdout and stderr piped, killed when its handle is
//! dropped.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::Command;

/// A program to start as a child, held by
/// [`ProcessCommand`](super::process::ProcessCommand) and
/// [`PersistentProcess`](super::persistent::PersistentProcess).
#[derive(Debug, Clone)]
pub(crate) struct ChildCommand {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(OsString, OsString)>,
    /// Start from an empty environment (plus `env`).
    pub(crate) env_clear: bool,
    pub(crate) cwd: Option<PathBuf>,
}

impl ChildCommand {
    /// `program` (looked up on `PATH`), no arguments, the parent's
    /// environment and working directory.
    pub(crate) fn new(program: impl Into<OsString>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_clear: false,
            cwd: None,
        }
    }

    /// The command that starts it, with `stdin` as its stdin: in a process
    /// group of its own (its id is the child's pid), stdout and stderr
    /// piped, killed if its handle is dropped.
    pub(crate) fn tokio_command(&self, stdin: Stdio) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if self.env_clear {
            cmd.env_clear();
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd
    }
}

/// The builder methods of a type that holds a [`ChildCommand`] in its field
/// `command`: `arg`, `args`, `env`, `current_dir` and the `program` getter.
/// `$who` and `$whose` name what runs, in their docs ("the child", "the
/// child's").
macro_rules! child_command_methods {
    ($who:literal, $whose:literal) => {
        /// Adds one argument, passed verbatim.
        pub fn arg(mut self, arg: impl Into<std::ffi::OsString>) -> Self {
            self.command.args.push(arg.into());
            self
        }

        /// Adds arguments, each passed verbatim.
        pub fn args<I, S>(mut self, args: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: Into<std::ffi::OsString>,
        {
            self.command.args.extend(args.into_iter().map(Into::into));
            self
        }

        #[doc = concat!("Sets an environment variable for ", $who, ".")]
        pub fn env(
            mut self,
            key: impl Into<std::ffi::OsString>,
            value: impl Into<std::ffi::OsString>,
        ) -> Self {
            self.command.env.push((key.into(), value.into()));
            self
        }

        #[doc = concat!("Sets ", $whose, " working directory.")]
        pub fn current_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
            self.command.cwd = Some(dir.into());
            self
        }

        /// The program.
        pub fn program(&self) -> &std::ffi::OsString {
            &self.command.program
        }
    };
}
pub(crate) use child_command_methods;
