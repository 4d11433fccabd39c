//! How big one task's params, or one result, may be in a backend.
//!
//! Every store caps a value somewhere: a Redis server's `proto-max-bulk-len`,
//! PostgreSQL's 1 GiB field, SQLite's `SQLITE_LIMIT_LENGTH`, a RabbitMQ
//! broker's `max_message_size`, a NATS server's `max_payload`. A value over
//! the cap, sent anyway, fails in the store's own way — a protocol error that
//! drops the connection, a closed channel — which looks like an outage and is
//! retried for ever: the task reruns after every lease, and its record never
//! says why. So a backend checks each value against its [`ValueLimit`]
//! before it sends anything, and refuses one over it with a non-transient
//! error ([`BackendErrorKind::TooLarge`]) naming both sizes and where the limit
//! comes from: `enqueue` for the whole call (nothing is enqueued), `finish`
//! for that one report (the worker then stores the refusal as the attempt's
//! failure; `conveyor::durable`).
//!
//! A backend's limit is its store's, less room for the rest of what it
//! sends with the value; a URL's `max_value=BYTES` lowers it
//! ([`ValueLimit::lowered`]) for those who want a task queue to refuse a
//! 100 MB argument long before the store would.

use crate::{BackendErrorKind, Error, Finish, FinishAction, NewTask, TaskId};

/// The most bytes one task's params, or one result, may hold in a backend,
/// and where that limit comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueLimit {
    /// The backend's kind (`redis`), the start of each refusal.
    kind: &'static str,
    /// The most bytes.
    max: usize,
    /// Where the limit comes from, as the end of a sentence: `this Redis
    /// server's proto-max-bulk-len of … bytes, less … for the rest of a
    /// call`.
    source: String,
    /// The most bytes of values one call may carry, and where that comes
    /// from (a server's buffer for one request), when the store has such a
    /// limit.
    call: Option<(usize, String)>,
}

impl ValueLimit {
    /// A limit of `max` bytes in the backend `kind`, coming from `source`
    /// (the end of a sentence, as `PostgreSQL's limit of 1 GiB for one
    /// field, less 64 KiB for the rest of a row`).
    pub fn new(kind: &'static str, max: usize, source: impl Into<String>) -> ValueLimit {
        ValueLimit {
            kind,
            max,
            source: source.into(),
            call: None,
        }
    }

    /// The same limit, with at most `max` bytes of values in one call
    /// (coming from `source`): a batch over it is refused whole, and the
    /// reports of a `finish` past it are answered with a transient error, to
    /// be sent again in a later call ([`ValueLimit::check_finishes`]).
    pub fn with_call_limit(mut self, max: usize, source: impl Into<String>) -> ValueLimit {
        self.call = Some((max, source.into()));
        self
    }

    /// The same limit, lowered to `cap` bytes when that is lower (a URL's
    /// `max_value=`).
    pub fn lowered(self, cap: Option<usize>) -> ValueLimit {
        match cap {
            Some(cap) if cap < self.max => ValueLimit {
                kind: self.kind,
                max: cap,
                source: format!("max_value={cap} in the backend's URL"),
                call: self.call,
            },
            _ => self,
        }
    }

    /// The most bytes a value may hold.
    pub fn max(&self) -> usize {
        self.max
    }

    /// `Ok` when `task`'s params fit.
    pub fn check_params(&self, task: &NewTask) -> Result<(), Error> {
        self.check("a task's params", task.payload.len())
    }

    /// `Ok` when every task's params fit; else the first refusal, naming the
    /// task's place in the batch.
    pub fn check_batch(&self, tasks: &[NewTask]) -> Result<(), Error> {
        for (i, task) in tasks.iter().enumerate() {
            let size = task.payload.len();
            if size > self.max {
                let what = if tasks.len() == 1 {
                    "a task's params".to_string()
                } else {
                    format!(
                        "the params of task {} of {} in the batch",
                        i + 1,
                        tasks.len()
                    )
                };
                return Err(self.refusal(&what, size));
            }
        }
        if let Some((call, source)) = &self.call {
            let total: usize = tasks.iter().map(|t| t.payload.len()).sum();
            if total > *call {
                return Err(Error::backend(
                    BackendErrorKind::TooLarge,
                    format!(
                        "{}: a batch of {} tasks with {total} bytes of params cannot be sent in one call: \
                         at most {call} bytes go in one ({source}); enqueue it in smaller batches",
                        self.kind,
                        tasks.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// [`ValueLimit::check_finish`] for each of `reports`, sent in one call:
    /// a report whose values would take the call past its limit
    /// ([`ValueLimit::with_call_limit`]) gets a transient error instead, so
    /// that it is sent again in another call.
    pub fn check_finishes(&self, reports: &[Finish]) -> Vec<Result<(), Error>> {
        let mut total = 0usize;
        reports
            .iter()
            .map(|r| {
                self.check_finish(r)?;
                let Some((call, source)) = &self.call else {
                    return Ok(());
                };
                let size = finish_bytes(r);
                if total > 0 && total + size > *call {
                    return Err(Error::backend(
                        BackendErrorKind::Busy,
                        format!(
                            "{}: task {}'s report is held for another call: this one carries {total} bytes of values already, and at most {call} go in one ({source})",
                            self.kind, r.lease.id
                        ),
                    ));
                }
                total += size;
                Ok(())
            })
            .collect()
    }

    /// `Ok` when what `report` stores fits: its result, and its follow-ups'
    /// params.
    pub fn check_finish(&self, report: &Finish) -> Result<(), Error> {
        if let FinishAction::Complete {
            result: Some(result),
        } = &report.action
        {
            self.check_result(report.lease.id, result)?;
        }
        for task in &report.follow_ups {
            self.check("a follow-up task's params", task.payload.len())?;
        }
        Ok(())
    }

    /// `Ok` when `result`, task `id`'s, fits.
    pub fn check_result(&self, id: TaskId, result: &[u8]) -> Result<(), Error> {
        self.check(&format!("task {id}'s result"), result.len())
    }

    fn check(&self, what: &str, size: usize) -> Result<(), Error> {
        if size > self.max {
            return Err(self.refusal(what, size));
        }
        Ok(())
    }

    fn refusal(&self, what: &str, size: usize) -> Error {
        Error::backend(
            BackendErrorKind::TooLarge,
            format!(
                "{}: {what} of {size} bytes cannot be stored: this backend stores at most {} bytes per value ({})",
                self.kind, self.max, self.source
            ),
        )
    }
}

/// The bytes of values `report` sends: its result and its follow-ups'
/// params.
fn finish_bytes(report: &Finish) -> usize {
    let result = match &report.action {
        FinishAction::Complete { result: Some(r) } => r.len(),
        _ => 0,
    };
    result
        + report
            .follow_ups
            .iter()
            .map(|t| t.payload.len())
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Lease, Receipt};

    fn limit() -> ValueLimit {
        ValueLimit::new("test", 10, "a limit of ten")
    }

    fn lease() -> Lease {
        Lease {
            id: TaskId(7),
            token: 1,
            receipt: Receipt::new(Vec::new()),
        }
    }

    #[test]
    fn at_the_limit_fits_one_byte_over_is_refused_for_good() {
        let l = limit();
        assert!(l.check_params(&NewTask::new("h", vec![0; 10])).is_ok());
        let e = l
            .check_params(&NewTask::new("h", vec![0; 11]))
            .expect_err("over");
        assert!(!e.is_transient());
        assert_eq!(e.backend_kind(), Some(BackendErrorKind::TooLarge));
        let text = e.to_string();
        assert!(
            text.contains("11 bytes") && text.contains("at most 10 bytes"),
            "{text}"
        );
        assert!(text.contains("a limit of ten"), "{text}");
    }

    #[test]
    fn a_batch_names_the_task_over() {
        let tasks = vec![
            NewTask::new("h", vec![0; 3]),
            NewTask::new("h", vec![0; 12]),
        ];
        let text = limit().check_batch(&tasks).expect_err("over").to_string();
        assert!(text.contains("task 2 of 2"), "{text}");
    }

    #[test]
    fn a_finish_checks_its_result_and_follow_ups() {
        let l = limit();
        let ok = Finish::new(
            lease(),
            FinishAction::Complete {
                result: Some(vec![0; 10]),
            },
        );
        assert!(l.check_finish(&ok).is_ok());
        let big = Finish::new(
            lease(),
            FinishAction::Complete {
                result: Some(vec![0; 11]),
            },
        );
        let text = l.check_finish(&big).expect_err("over").to_string();
        assert!(text.contains("task 7's result of 11 bytes"), "{text}");
        let follow =
            Finish::complete(lease()).with_follow_ups(vec![NewTask::new("h", vec![0; 11])]);
        assert!(l.check_finish(&follow).is_err());
    }

    #[test]
    fn a_call_limit_refuses_a_batch_and_holds_reports_back() {
        let l = limit().with_call_limit(15, "a call of fifteen");
        let tasks = vec![NewTask::new("h", vec![0; 8]), NewTask::new("h", vec![0; 8])];
        let text = l.check_batch(&tasks).expect_err("over").to_string();
        assert!(
            text.contains("16 bytes") && text.contains("a call of fifteen"),
            "{text}"
        );
        let report = |n| {
            Finish::new(
                lease(),
                FinishAction::Complete {
                    result: Some(vec![0; n]),
                },
            )
        };
        let out = l.check_finishes(&[report(8), report(8), report(7), report(11)]);
        assert!(out[0].is_ok());
        let held = out[1].as_ref().expect_err("past the call");
        assert!(held.is_transient(), "sent again later: {held:?}");
        assert!(out[2].is_ok(), "fits beside the first");
        assert!(
            !out[3].as_ref().expect_err("over").is_transient(),
            "over the value limit"
        );
    }

    #[test]
    fn a_url_cap_lowers_and_says_so() {
        let l = limit().lowered(Some(4));
        assert_eq!(l.max(), 4);
        let text = l
            .check_result(TaskId(1), &[0; 5])
            .expect_err("over")
            .to_string();
        assert!(text.contains("max_value=4"), "{text}");
        assert_eq!(limit().lowered(Some(40)).max(), 10, "never raised");
    }
}
