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

use conveyor_core::{NewTask, Timestamp, DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE};

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueueOptions {
    queue: String,
    priority: i32,
    delay: Option<Duration>,
    run_at: Option<Timestamp>,
    max_attempts: u32,
    timeout: Option<Duration>,
    unique_key: Option<String>,
    ordering_key: Option<String>,
}

impl Default for EnqueueOptions {
    fn default() -> Self {
        Self {
            queue: DEFAULT_QUEUE.to_string(),
            priority: 0,
            delay: None,
            run_at: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            timeout: None,
            unique_key: None,
            ordering_key: None,
        }
    }
}

impl EnqueueOptions {
    /// The defaults: queue `default`, priority 0, three attempts, no delay or keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// The queue to wait in.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Higher runs first.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Not before this much time from now.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Not before this time.
    pub fn run_at(mut self, at: Timestamp) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Total attempts, counting the first (at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Time limit of one attempt.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// At most one unfinished task with this key per queue.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Tasks with this key run one at a time, in enqueue order.
    pub fn ordering_key(mut self, key: impl Into<String>) -> Self {
        self.ordering_key = Some(key.into());
        self
    }

    /// The task to hand to a backend.
    pub fn to_task(&self, handler: &str, payload: Vec<u8>) -> NewTask {
        NewTask {
            queue: self.queue.clone(),
            handler: handler.to_string(),
            payload,
            priority: self.priority,
            delay: self.delay,
            run_at: self.run_at,
            max_attempts: self.max_attempts,
            timeout: self.timeout,
            unique_key: self.unique_key.clone(),
            ordering_key: self.ordering_key.clone(),
        }
    }
}
