//! `conveyor completions SHELL` and `conveyor man`: a shell completion script
//! and the man page, generated from the command line's own definition by
//! clap's crates, so they never fall behind it.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::Cli;

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "conveyor", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// Prints the man page: the command, then a section per subcommand.
pub fn man() -> anyhow::Result<ExitCode> {
    let cmd = Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("conveyor-{}", sub.get_name());
        let sub = sub.clone().name(name.clone()).display_name(name);
        writeln!(out)?;
        clap_mangen::Man::new(sub).render(&mut out)?;
    }
    std::io::stdout().write_all(&out)?;
    Ok(ExitCode::SUCCESS)
}
