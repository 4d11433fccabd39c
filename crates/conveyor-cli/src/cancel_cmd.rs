//! `conveyor cancel ID…`: cancels tasks that are waiting (scheduled,
//! available or retrying) or running. A running task's lease ends with it:
//! the worker holding it stops the attempt within about a second (told by
//! the store's finish notifications; at the latest at its next lease
//! renewal, a third of its lease) and nothing it reports afterwards is kept.
//! One that has finished keeps its outcome; one already cancelled stays so.
//! Exits 1 when any task could not be cancelled, 5 when an id is unknown.

use std::process::ExitCode;
use std::sync::Arc;

use conveyor::durable::Backend;
use conveyor::{Error, TaskId, TaskState};

use crate::cli::CancelArgs;

/// Cancels each id and says what became of it.
pub async fn run(backend: Arc<dyn Backend>, args: CancelArgs) -> anyhow::Result<ExitCode> {
    let mut worst = 0u8;
    for id in args.ids.into_iter().map(TaskId) {
        let before = backend.get(id).await?.map(|r| r.state);
        let outcome = match before {
            None => Err(Error::NotFound(id)),
            Some(TaskState::Cancelled) => {
                println!("task {id}: already cancelled");
                continue;
            }
            Some(_) => backend.cancel(id).await,
        };
        let (text, code) = match outcome {
            Ok(TaskState::Cancelled) if before == Some(TaskState::Running) => (
                "cancelled while it ran: the worker holding it stops it within about a second"
                    .to_string(),
                0,
            ),
            Ok(TaskState::Cancelled) => ("cancelled".to_string(), 0),
            Ok(state) if state.is_finished() => (
                format!("not cancelled: it has already finished ({state})"),
                1,
            ),
            Ok(state) => (format!("not cancelled: it is {state}"), 1),
            Err(Error::NotFound(_)) => ("unknown: no task has this id".to_string(), 5),
            Err(e) => return Err(e.into()),
        };
        println!("task {id}: {text}");
        worst = worst.max(code);
    }
    Ok(ExitCode::from(worst))
}
