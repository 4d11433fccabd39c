//! The arguments of the tasks `enqueue` (and `finish`, for follow-ups)
//! enqueues: each task as a form, a letter and its arguments (see
//! `enqueue_tasks` in `lua/common/steps.lua`), and the script's answer to them.
//!
//! Every argument costs the server time to read (about 0.1–0.15 µs each on
//! this machine, in Redis's one thread), so a task like the one before it in
//! the list — same queue, handler, priority and run-at, no unique or
//! ordering key, as in a batch — takes two arguments (`=`, its packed
//! fields) instead of the nine a full task takes.

use conveyor_core::{Enqueued, Error, NewTask, TaskId, Timestamp};
use redis::Value;

use crate::calls::Call;
use crate::reply::{self, bad};

/// How one task is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `p` queue, handler, d, priority, run-at: no unique or ordering key.
    Plain,
    /// `k` as [`Form::Plain`], then has-unique, unique key, has-ordering,
    /// ordering key. Also a task with a keep of its own, keys or not: the
    /// script's hot path for plain tasks is not for it.
    Keys,
    /// `=` d: the queue, handler, priority and run-at of the task before it,
    /// no unique or ordering key.
    Same,
}

impl Form {
    /// The form of `t`, the task after `before` in the list.
    fn of(t: &NewTask, before: Option<&NewTask>, now: Timestamp) -> Self {
        if t.unique_key.is_some() || t.ordering_key.is_some() || t.keep.is_some() {
            return Form::Keys;
        }
        match before {
            // After a task with a keep, whose data record takes the long
            // form, the script would give a like task that form too.
            Some(b)
                if b.keep.is_none()
                    && b.queue == t.queue
                    && b.handler == t.handler
                    && b.priority == t.priority
                    && b.first_run(now) == t.first_run(now) =>
            {
                Form::Same
            }
            _ => Form::Plain,
        }
    }

    /// How many arguments it takes, its letter included.
    fn len(self) -> usize {
        match self {
            Form::Plain => 6,
            Form::Keys => 10,
            Form::Same => 2,
        }
    }
}

/// Adds `tasks` to `inv` as the scripts take a list of tasks: their count,
/// the number of arguments their forms take, then the forms.
pub(crate) fn push(inv: &mut Call, tasks: &[NewTask], now: Timestamp) {
    let forms: Vec<Form> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| Form::of(t, i.checked_sub(1).map(|b| &tasks[b]), now))
        .collect();
    let span: usize = forms.iter().map(|f| f.len()).sum();
    inv.arg(tasks.len()).arg(span);
    for (t, form) in tasks.iter().zip(forms) {
        let d = crate::packed::pack(t, now);
        if form == Form::Same {
            inv.arg("=").arg(d);
            continue;
        }
        inv.arg(if form == Form::Keys { "k" } else { "p" })
            .arg(&t.queue)
            .arg(&t.handler)
            .arg(d)
            .arg(t.priority)
            .arg(t.first_run(now).as_millis());
        if form == Form::Keys {
            inv.arg(u8::from(t.unique_key.is_some()))
                .arg(t.unique_key.as_deref().unwrap_or(""))
                .arg(u8::from(t.ordering_key.is_some()))
                .arg(t.ordering_key.as_deref().unwrap_or(""));
        }
    }
}

/// The tasks' ids from the rest of a request's answer (after its status):
/// the first id the tasks that are not duplicates took in order, then
/// position (from 1) and id of each duplicate.
pub(crate) fn answer(items: Vec<Value>, n: usize) -> Result<Vec<Enqueued>, Error> {
    let mut items = items.into_iter();
    let first: u64 = match items.next() {
        Some(v) => reply::number(v, "enqueue: first id")?,
        None => return Err(bad("enqueue: a reply without its first id")),
    };
    if !items.len().is_multiple_of(2) || items.len() / 2 > n {
        return Err(bad(format!(
            "enqueue: {} duplicate items for {n} tasks",
            items.len()
        )));
    }
    let mut out = Vec::with_capacity(n);
    let mut next_id = first;
    let mut take_new = |out: &mut Vec<Enqueued>, upto: usize| {
        while out.len() < upto {
            out.push(Enqueued {
                id: TaskId(next_id),
                duplicate: false,
            });
            next_id += 1;
        }
    };
    while let (Some(pos), Some(id)) = (items.next(), items.next()) {
        let pos: usize = reply::number(pos, "enqueue: duplicate position")?;
        if pos <= out.len() || pos > n {
            return Err(bad(format!(
                "enqueue: duplicate position {pos} out of order or beyond {n} tasks"
            )));
        }
        take_new(&mut out, pos - 1);
        out.push(Enqueued {
            id: TaskId(reply::number(id, "enqueue: duplicate's id")?),
            duplicate: true,
        });
    }
    take_new(&mut out, n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn forms(tasks: &[NewTask]) -> Vec<Form> {
        let now = Timestamp(1_000);
        (0..tasks.len())
            .map(|i| Form::of(&tasks[i], i.checked_sub(1).map(|b| &tasks[b]), now))
            .collect()
    }

    #[test]
    fn like_tasks_repeat_the_one_before_and_keys_never_do() {
        let t = |h: &str| NewTask::new(h, b"x".to_vec());
        let tasks = vec![
            t("a"),
            t("a"),
            t("b"),
            t("b").priority(3),
            t("b").priority(3),
            t("b").priority(3).delay(Duration::from_secs(1)),
            t("b").unique_key("u"),
            t("b").ordering_key("o"),
            // Like the one before but for its key, which it does not take.
            t("b"),
            t("b").queue("other"),
            t("b").queue("other").keep(Duration::from_secs(60)),
            // Like the one before but for its keep: never repeats it.
            t("b").queue("other"),
            t("b").queue("other"),
        ];
        use Form::*;
        assert_eq!(
            forms(&tasks),
            [Plain, Same, Plain, Plain, Same, Plain, Keys, Keys, Same, Plain, Keys, Plain, Same]
        );
    }

    fn int(i: i64) -> Value {
        Value::Int(i)
    }

    #[test]
    fn answers_give_new_ids_in_order_around_the_duplicates() {
        let got = answer(vec![int(10), int(2), int(4), int(4), int(7)], 5).unwrap();
        let ids: Vec<(u64, bool)> = got.iter().map(|e| (e.id.0, e.duplicate)).collect();
        assert_eq!(
            ids,
            [(10, false), (4, true), (11, false), (7, true), (12, false)]
        );
        let plain = answer(vec![int(3)], 3).unwrap();
        assert_eq!(plain.iter().map(|e| e.id.0).collect::<Vec<_>>(), [3, 4, 5]);
    }

    #[test]
    fn answers_that_do_not_fit_the_tasks_are_bad_data() {
        assert!(answer(vec![], 1).is_err());
        assert!(
            answer(vec![int(1), int(2)], 2).is_err(),
            "a position without its id"
        );
        assert!(
            answer(vec![int(1), int(3), int(5)], 2).is_err(),
            "beyond the tasks"
        );
        assert!(
            answer(vec![int(1), int(2), int(5), int(1), int(6)], 2).is_err(),
            "out of order"
        );
        assert!(
            answer(vec![int(1), int(0), int(5)], 2).is_err(),
            "position 0"
        );
    }
}
