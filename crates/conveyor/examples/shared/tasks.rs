//! The task types the durable examples share: one declaration, used by the
//! program that enqueues and by the program that runs.

use std::time::Duration;

use conveyor::{Handler, TaskError, TaskType};

/// Adds two numbers (slowly: each takes three seconds).
pub const ADD: TaskType<(i64, i64), i64> = TaskType::new("add");

/// The backend both programs open: `CONVEYOR_URL`, or `./conveyor.db`.
pub fn backend_url() -> String {
    conveyor::durable::resolve_url(std::env::args().nth(1).as_deref())
}

/// The `add` handler, as a worker registers it: three seconds of "work", then
/// the sum.
#[allow(dead_code)] // not every example runs a worker
pub fn add_handler() -> Handler<(i64, i64), i64> {
    Handler::io(ADD.name(), |(a, b): (i64, i64), _ctx| async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok::<_, TaskError>(a + b)
    })
}
