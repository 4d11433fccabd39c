//! `conveyor wait ID…`: waits for every task to finish and prints each one's
//! result line as it finishes; the exit status tells the worst outcome.

use std::process::ExitCode;
use std::sync::Arc;

use conveyor::durable::Backend;
use conveyor::TaskId;
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::cli::WaitArgs;
use crate::verdict::{line, Verdict};
use crate::waiting::Waiter;

/// At most this many tasks are waited on at once (each wait is a read and a
/// subscription to the store's finish notifications).
const AT_ONCE: usize = 64;

/// Waits for every id.
pub async fn run(backend: Arc<dyn Backend>, args: WaitArgs) -> anyhow::Result<ExitCode> {
    let waiter = Waiter::new(backend, args.timeout, args.warn_after);
    let mut ids = args.ids.into_iter().map(TaskId);
    let mut running = FuturesUnordered::new();
    let mut verdicts = Vec::new();
    loop {
        while running.len() < AT_ONCE {
            let Some(id) = ids.next() else { break };
            let waiter = &waiter;
            running.push(async move { (id, waiter.wait(id).await) });
        }
        let Some((id, record)) = running.next().await else {
            break;
        };
        let record = record?;
        verdicts.push(Verdict::of(record.as_ref()));
        println!("{}", line(id, record.as_ref()));
    }
    Ok(Verdict::exit(verdicts))
}
