//! The `conveyor` command.

mod cancel_cmd;
mod cli;
mod completions_cmd;
mod config;
mod dead_cmd;
#[cfg(feature = "kafka")]
mod fake_record;
#[cfg(feature = "kafka")]
mod kafka_cmd;
mod logging;
mod metrics_endpoint;
mod python_app;
mod queue_cmd;
mod result_cmd;
mod run;
mod schedule_cmd;
mod serve_args;
mod serve_cmd;
mod show_cmd;
mod status_cmd;
mod submit_cmd;
mod task_log;
#[cfg(feature = "otel")]
mod telemetry;
mod template;
mod units;
mod verdict;
mod wait_cmd;
mod waiting;
mod worker_cmd;
mod workflow_cmd;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

/// The Python helper for persistent handlers, as `conveyor helper python` prints it.
const PYTHON_HELPER: &str = include_str!("../helpers/python/conveyor_handler.py");

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    logging::init(cli.log_format);
    #[cfg(feature = "otel")]
    let telemetry = match telemetry::init(cli.otlp.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("conveyor: cannot export traces: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if prints_only(&cli.command) {
        quiet_on_closed_stdout();
    }
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
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // Whatever path an error took, a URL in it shows no secret.
            eprintln!("conveyor: {}", conveyor::redact_secrets(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    };
    #[cfg(feature = "otel")]
    telemetry.shutdown();
    code
}

/// True for the commands whose only pipes are stdout and stderr: everything
/// but the worker, `run` and the Kafka tools, which write to their children's
/// pipes and must see a closed one as an error, not die of it.
fn prints_only(command: &Command) -> bool {
    match command {
        Command::Worker(_) | Command::Run(_) => false,
        #[cfg(feature = "kafka")]
        Command::Kafka(_) => false,
        _ => true,
    }
}

/// Lets `SIGPIPE` end the process quietly, as it ends `cat` or `grep`, when
/// the reader of its output goes away (`conveyor status | head -1`): Rust
/// ignores the signal, and `println!` would then panic on the closed pipe.
/// Sockets are unaffected (their writes never raise `SIGPIPE`).
fn quiet_on_closed_stdout() {
    // SAFETY: restores the default disposition of one signal before any
    // thread is started; no handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Prints clap's message; `conveyor run` keeps its small exit codes for counts of
/// failed items, so its usage errors exit with 255 instead of clap's 2.
fn usage_error(e: clap::Error) -> ExitCode {
    let _ = e.print();
    if !e.use_stderr() {
        return ExitCode::SUCCESS;
    }
    let is_run = std::env::args().nth(1).as_deref() == Some("run");
    ExitCode::from(if is_run { 255 } else { 2 })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Commands that need no task backend.
    if let Command::Run(args) = cli.command {
        if cli.backend.is_some() {
            eprintln!(
                "conveyor run: --backend does not apply to run (it keeps its state in --state); \
                 it is for worker, submit, status and the other queue commands"
            );
            return Ok(ExitCode::from(255));
        }
        return Ok(run::run(args).await);
    }
    if let Command::Completions { shell } = cli.command {
        return Ok(completions_cmd::completions(shell));
    }
    if let Command::Man = cli.command {
        return completions_cmd::man();
    }
    if let Command::Helper { language } = cli.command {
        print!(
            "{}",
            match language {
                cli::HelperLanguage::Python => PYTHON_HELPER,
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    #[cfg(feature = "kafka")]
    if let Command::Kafka(cmd) = cli.command {
        return kafka_cmd::run(cmd).await;
    }
    // A worker's plan is read first: a Python app may name the backend
    // (`App(url)`), which --backend overrides.
    let plan = match &cli.command {
        Command::Worker(args) => Some(worker_cmd::plan(args)?),
        _ => None,
    };
    let app_url = plan.as_ref().and_then(|p| p.url.as_deref());
    let url = conveyor::durable::resolve_url(cli.backend.as_deref().or(app_url));
    // Commands about tasks that must already exist open only a store that
    // does: a mistyped path or schema is an error, never a new empty store.
    let existing = matches!(
        cli.command,
        Command::Status(_)
            | Command::Dead(_)
            | Command::Queue(_)
            | Command::Result(_)
            | Command::Wait(_)
            | Command::Cancel(_)
            | Command::Show(_)
    ) || matches!(
        &cli.command,
        Command::Workflow(crate::cli::WorkflowCommand::Show { .. })
            | Command::Workflow(crate::cli::WorkflowCommand::Cancel { .. })
            | Command::Workflow(crate::cli::WorkflowCommand::Retry { .. })
            | Command::Workflow(crate::cli::WorkflowCommand::List { .. })
            | Command::Workflow(crate::cli::WorkflowCommand::Check { .. })
            | Command::Schedule(crate::cli::ScheduleCommand::List { .. })
    ) || matches!(&cli.command, Command::Serve(args) if args.read_only);
    let opened = if existing {
        conveyor::durable::connect_existing(&url).await
    } else {
        conveyor::durable::connect(&url).await
    };
    // The URL as shown: its credentials hidden.
    let shown = conveyor::redact_url(&url);
    let backend = opened
        .map_err(|e| anyhow::Error::new(e).context(format!("cannot open backend {shown}")))?;
    if !backend.capabilities().shared {
        anyhow::bail!(
            "the {} backend ({shown}) keeps its tasks inside one process, and every conveyor \
             command runs in a process of its own, so no other command would see them: use \
             embedded://PATH (the default, ./conveyor.db) or a server (redis://, postgres://)",
            backend.kind()
        );
    }
    match cli.command {
        Command::Worker(args) => match plan {
            Some(plan) => worker_cmd::run(backend, plan, args).await,
            None => unreachable!("a worker's plan is read above"),
        },
        Command::Submit(args) => submit_cmd::run(backend, args).await,
        Command::Status(args) => status_cmd::run(backend, args).await,
        Command::Dead(cmd) => dead_cmd::run(backend, cmd).await,
        Command::Queue(cmd) => queue_cmd::run(backend, cmd).await,
        Command::Workflow(cmd) => workflow_cmd::run(backend, cmd).await,
        Command::Schedule(cmd) => schedule_cmd::run(backend, cmd).await,
        Command::Result(args) => result_cmd::run(backend, args).await,
        Command::Wait(args) => wait_cmd::run(backend, args).await,
        Command::Cancel(args) => cancel_cmd::run(backend, args).await,
        Command::Show(args) => show_cmd::run(backend, args).await,
        Command::Serve(args) => serve_cmd::run(backend, args).await,
        Command::Run(_) | Command::Helper { .. } | Command::Completions { .. } | Command::Man => {
            unreachable!("handled above")
        }
        #[cfg(feature = "kafka")]
        Command::Kafka(_) => unreachable!("handled above"),
        Command::Migrate => {
            // Opening the backend created or migrated its schema.
            println!("{} backend at {shown}: schema up to date", backend.kind());
            Ok(ExitCode::SUCCESS)
        }
    }
}
