//! `conveyor run`'s reader: an OS thread that reads items, settles the ones an
//! earlier run finished, expands the command for the rest and hands them to the
//! submitter. Blocking reads stay off the async runtime, and a reader stuck on a
//! terminal's stdin never holds up the end of an interrupted run.

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::mpsc::Sender;
use std::sync::Arc;

use super::input::{Item, Items, Read};
use super::order::Window;
use super::placeholder::CommandTemplate;
use super::record::{Prepared, Record, Status};
use super::report::Event;
use super::state::{item_hash, Prior, PriorItem};

/// What the reader needs.
pub struct Reader {
    /// Where items come from.
    pub input: Box<dyn BufRead + Send>,
    /// NUL-separated items.
    pub nul: bool,
    /// JSON Lines.
    pub json: bool,
    /// The field separator for {1}, {2}…
    pub delimiter: Option<String>,
    /// The command.
    pub template: CommandTemplate,
    /// Outcomes of earlier runs.
    pub prior: HashMap<u64, PriorItem>,
    /// Run items that failed earlier again.
    pub retry_failed: bool,
    /// `--keep-order`'s bound.
    pub window: Arc<Window>,
}

impl Reader {
    /// Reads to the end (or until the submitter goes away).
    pub fn run(self, to_submit: tokio::sync::mpsc::Sender<Prepared>, events: Sender<Event>) {
        let Reader {
            input,
            nul,
            json,
            delimiter,
            template,
            prior,
            retry_failed,
            window,
        } = self;
        let mut count = 0;
        for read in Items::new(input, nul, json) {
            let item = match read {
                Ok(Read::Item(item)) => item,
                Ok(Read::Bad(item, msg)) => {
                    count = item.seq;
                    let _ = events.send(Event::Settled(Record::settled(
                        item,
                        Status::Failed,
                        Some(msg),
                    )));
                    continue;
                }
                Err(e) => {
                    let _ = events.send(Event::InputFailed(format!("cannot read the input: {e}")));
                    return;
                }
            };
            count = item.seq;
            if let Some(earlier) = settled_earlier(&prior, &item, retry_failed) {
                let _ = events.send(Event::Settled(Record::settled(
                    item,
                    Status::Earlier(earlier),
                    None,
                )));
                continue;
            }
            let argv = match template.expand(&item, delimiter.as_deref()) {
                Ok(argv) => argv,
                Err(e) => {
                    let msg = format!("line {}: {e}", item.line);
                    let _ = events.send(Event::Settled(Record::settled(
                        item,
                        Status::Failed,
                        Some(msg),
                    )));
                    continue;
                }
            };
            if !window.admit(item.seq) || to_submit.blocking_send(Prepared { item, argv }).is_err()
            {
                // The run is stopping: what is left is not read.
                return;
            }
        }
        let _ = events.send(Event::InputEnd(count));
    }
}

/// The earlier outcome that settles `item`, if any.
fn settled_earlier(
    prior: &HashMap<u64, PriorItem>,
    item: &Item,
    retry_failed: bool,
) -> Option<Prior> {
    let p = prior.get(&item.seq)?;
    if p.hash != item_hash(&item.raw) {
        return None;
    }
    match p.outcome {
        Prior::Succeeded => Some(Prior::Succeeded),
        Prior::Failed if !retry_failed => Some(Prior::Failed),
        Prior::Failed => None,
    }
}
