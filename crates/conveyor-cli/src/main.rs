//! The `conveyor` command.

mod cli;
mod config;
mod dead_cmd;
#[cfg(feature = "kafka")]
mod fake_record;
#[cfg(feature = "kafka")]
mod kafka_cmd;
mod status_cmd;
mod submit_cmd;
mod template;
mod worker_cmd;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONVEYOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("conveyor: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("conveyor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Kafka commands need no task backend.
    #[cfg(feature = "kafka")]
    if let Command::Kafka(cmd) = cli.command {
        return kafka_cmd::run(cmd).await;
    }
    let url = conveyor::durable::resolve_url(cli.backend.as_deref());
    let backend = conveyor::durable::connect(&url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open backend {url}: {e}"))?;
    match cli.command {
        Command::Worker(args) => worker_cmd::run(backend, args).await,
        Command::Submit(args) => submit_cmd::run(backend, args).await,
        Command::Status(args) => status_cmd::run(backend, args).await,
        Command::Dead(cmd) => dead_cmd::run(backend, cmd).await,
        #[cfg(feature = "kafka")]
        Command::Kafka(cmd) => kafka_cmd::run(cmd).await,
        Command::Migrate => {
            // Opening the backend created or migrated its schema.
            println!("{} backend at {url}: schema up to date", backend.kind());
            Ok(ExitCode::SUCCESS)
        }
    }
}
