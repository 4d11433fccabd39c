//! The notices shown after an action: a closed set, carried in the
//! redirect as a code (`?notice=cancelled.42`), never as text. A page shows
//! the sentence its own code stands for, with numbers and a task state as
//! the only variable parts, so a link from anywhere cannot make the
//! dashboard show an official-looking message of its choosing; an unknown
//! code shows nothing.

use std::fmt;

use conveyor_core::TaskState;

/// What an action did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notice {
    /// Task N cancelled.
    Cancelled(u64),
    /// Task N was not cancelled: it is in this state.
    NotCancelled(u64, TaskState),
    /// Dead task N will run again.
    Requeued(u64),
    /// Task N was not requeued.
    NotRequeued(u64),
    /// N dead tasks will run again.
    RequeuedMatching(u64),
    /// N dead tasks deleted.
    Purged(u64),
    /// The queue was paused.
    Paused,
    /// The queue was paused already.
    AlreadyPaused,
    /// The queue was resumed.
    Resumed,
    /// The queue was not paused.
    NotPaused,
    /// The schedule was paused.
    SchedulePaused,
    /// The schedule was resumed.
    ScheduleResumed,
    /// The schedule fired now: its task.
    Triggered(u64),
}

impl Notice {
    /// The code a redirect carries.
    pub(crate) fn code(self) -> String {
        match self {
            Notice::Cancelled(id) => format!("cancelled.{id}"),
            Notice::NotCancelled(id, s) => format!("not-cancelled.{id}.{}", s.as_str()),
            Notice::Requeued(id) => format!("requeued.{id}"),
            Notice::NotRequeued(id) => format!("not-requeued.{id}"),
            Notice::RequeuedMatching(n) => format!("requeued-matching.{n}"),
            Notice::Purged(n) => format!("purged.{n}"),
            Notice::Paused => "paused".into(),
            Notice::AlreadyPaused => "already-paused".into(),
            Notice::Resumed => "resumed".into(),
            Notice::NotPaused => "not-paused".into(),
            Notice::SchedulePaused => "schedule-paused".into(),
            Notice::ScheduleResumed => "schedule-resumed".into(),
            Notice::Triggered(id) => format!("triggered.{id}"),
        }
    }

    /// The notice a code stands for, if it is one.
    pub(crate) fn parse(code: &str) -> Option<Notice> {
        let mut parts = code.split('.');
        let name = parts.next()?;
        let mut number = || parts.next()?.parse::<u64>().ok();
        let notice = match name {
            "cancelled" => Notice::Cancelled(number()?),
            "not-cancelled" => {
                let id = number()?;
                let name = parts.next()?;
                let state = TaskState::ALL.into_iter().find(|s| s.as_str() == name)?;
                Notice::NotCancelled(id, state)
            }
            "requeued" => Notice::Requeued(number()?),
            "not-requeued" => Notice::NotRequeued(number()?),
            "requeued-matching" => Notice::RequeuedMatching(number()?),
            "purged" => Notice::Purged(number()?),
            "paused" => Notice::Paused,
            "already-paused" => Notice::AlreadyPaused,
            "resumed" => Notice::Resumed,
            "not-paused" => Notice::NotPaused,
            "schedule-paused" => Notice::SchedulePaused,
            "schedule-resumed" => Notice::ScheduleResumed,
            "triggered" => Notice::Triggered(number()?),
            _ => return None,
        };
        // Nothing may follow what the code needs.
        parts.next().is_none().then_some(notice)
    }
}

fn plural(n: u64, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Cancelled(id) => write!(f, "Task {id} cancelled."),
            Notice::NotCancelled(id, s) => {
                write!(f, "Task {id} was not cancelled: it is {s}.")
            }
            Notice::Requeued(id) => write!(f, "Task {id} will run again."),
            Notice::NotRequeued(id) => write!(
                f,
                "Task {id} was not requeued: it is not dead, or an unfinished task holds its \
                 unique key."
            ),
            Notice::RequeuedMatching(n) => {
                write!(f, "{} will run again.", plural(*n, "dead task"))
            }
            Notice::Purged(n) => write!(f, "{} deleted.", plural(*n, "dead task")),
            Notice::Paused => f.write_str("Queue paused."),
            Notice::AlreadyPaused => f.write_str("The queue was paused already."),
            Notice::Resumed => f.write_str("Queue resumed."),
            Notice::NotPaused => f.write_str("The queue was not paused."),
            Notice::SchedulePaused => f.write_str("Schedule paused."),
            Notice::ScheduleResumed => {
                f.write_str("Schedule resumed: it goes on from its next fire time.")
            }
            Notice::Triggered(id) => write!(f, "Fired now: task {id}."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_nothing_else_is_a_notice() {
        let all = [
            Notice::Cancelled(42),
            Notice::NotCancelled(7, TaskState::Running),
            Notice::Requeued(1),
            Notice::NotRequeued(2),
            Notice::RequeuedMatching(2_500),
            Notice::Purged(0),
            Notice::Paused,
            Notice::AlreadyPaused,
            Notice::Resumed,
            Notice::NotPaused,
            Notice::SchedulePaused,
            Notice::ScheduleResumed,
            Notice::Triggered(9),
        ];
        for n in all {
            assert_eq!(Notice::parse(&n.code()), Some(n), "{}", n.code());
        }
        for text in [
            "",
            "Your session expired: call 555-0100",
            "cancelled",
            "cancelled.x",
            "cancelled.1.2",
            "not-cancelled.1.hacked",
            "paused.extra",
        ] {
            assert_eq!(Notice::parse(text), None, "{text}");
        }
    }
}
