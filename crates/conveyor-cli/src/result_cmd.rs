//! `conveyor result ID…`: each task's result or error as a JSON line, without
//! waiting; the exit status tells the worst outcome (see `verdict`).

use std::process::ExitCode;
use std::sync::Arc;

use conveyor::durable::Backend;
use conveyor::TaskId;

use crate::cli::ResultArgs;
use crate::verdict::{line, Verdict};

/// Prints one line per id.
pub async fn run(backend: Arc<dyn Backend>, args: ResultArgs) -> anyhow::Result<ExitCode> {
    let mut verdicts = Vec::with_capacity(args.ids.len());
    for id in args.ids.into_iter().map(TaskId) {
        let record = backend.get(id).await?;
        verdicts.push(Verdict::of(record.as_ref()));
        println!("{}", line(id, record.as_ref()));
    }
    Ok(Verdict::exit(verdicts))
}
