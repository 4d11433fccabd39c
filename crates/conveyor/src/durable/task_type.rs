//! Typed task names shared by the programs that enqueue and the programs that run.
//!
//! A durable task crosses a process boundary as a handler name and encoded bytes.
//! Declaring `const ADD: TaskType<(i64, i64), i64> = TaskType::new("add");` once,
//! in a module both sides use, keeps the name and the types in one place: the
//! client enqueues `ADD` with `(i64, i64)` params and waits for an `i64`, and the
//! worker registers a handler named `ADD.name()`.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use conveyor_core::{Codec, Error, Json, NewTask, Timestamp};
use serde::Serialize;

/// A handler name with its params and result types.
pub struct TaskType<In, Out> {
    name: Cow<'static, str>,
    _types: PhantomData<fn(In) -> Out>,
}

impl<In, Out> TaskType<In, Out> {
    /// Names a task type.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name: Cow::Borrowed(name),
            _types: PhantomData,
        }
    }

    /// Names a task type from a name known only at run time (say, from a CLI).
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: Cow::Owned(name.into()),
            _types: PhantomData,
        }
    }

    /// The handler name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A task of this type with `params` encoded as JSON, for
    /// [`TaskContext::follow_up`](crate::TaskContext::follow_up) or a
    /// backend's `enqueue_many`.
    pub fn task(&self, params: &In, opts: &EnqueueOptions) -> Result<NewTask, Error>
    where
        In: Serialize,
    {
        self.task_in(&Json, params, opts)
    }

    /// [`TaskType::task`] with another codec (the workers' own).
    pub fn task_in<C: Codec>(
        &self,
        codec: &C,
        params: &In,
        opts: &EnqueueOptions,
    ) -> Result<NewTask, Error>
    where
        In: Serialize,
    {
        Ok(opts.to_task(&self.name, codec.encode(params)?))
    }
}

impl<In, Out> Clone for TaskType<In, Out> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            _types: PhantomData,
        }
    }
}

impl<In, Out> fmt::Debug for TaskType<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskType({})", self.name)
    }
}

/// Options of an enqueued task: queue, priority, timing, attempts and keys.
///
/// A [`NewTask`] without handler or payload: the setters are `NewTask`'s own,
/// so the options and their defaults live in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueueOptions(NewTask);

impl Default for EnqueueOptions {
    fn default() -> Self {
        Self(NewTask::new(String::new(), Vec::new()))
    }
}

/// `EnqueueOptions::$name(args)` is `NewTask::$name(args)` on the template.
macro_rules! delegate {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        $(#[$doc])*
        pub fn $name(self, $($arg: $ty),*) -> Self {
            Self(self.0.$name($($arg),*))
        }
    )*};
}

impl EnqueueOptions {
    /// The defaults: queue `default`, priority 0, three attempts, no delay or keys.
    pub fn new() -> Self {
        Self::default()
    }

    delegate! {
        /// The queue to wait in.
        queue(queue: impl Into<String>);
        /// Higher runs first.
        priority(priority: i32);
        /// Not before this much time from now.
        delay(delay: Duration);
        /// Not before this time.
        run_at(at: Timestamp);
        /// Total attempts, counting the first (at least 1).
        max_attempts(n: u32);
        /// Time limit of one attempt.
        timeout(timeout: Duration);
        /// At most one unfinished task with this key per queue.
        unique_key(key: impl Into<String>);
        /// Tasks with this key run one at a time, in enqueue order.
        ordering_key(key: impl Into<String>);
        /// The trace context the task carries (with the `otel` feature the
        /// client sets its enqueue span's instead).
        trace(trace: conveyor_core::TraceContext);
        /// How long its record and result are kept once it has finished,
        /// however it ended (over its handler's retention and the
        /// worker's). A backend without
        /// [`Capabilities::keep`](conveyor_core::Capabilities::keep)
        /// refuses the task.
        keep(keep: Duration);
    }

    /// The task to hand to a backend.
    pub fn to_task(&self, handler: &str, payload: Vec<u8>) -> NewTask {
        NewTask {
            handler: handler.to_string(),
            payload,
            ..self.0.clone()
        }
    }
}
