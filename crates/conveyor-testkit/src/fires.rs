//! [`fires_by_time`]: the tasks a schedule's fires enqueued, by fire time,
//! as the schedule tests (the failover test, the fault suite's
//! `restart_mid_schedule`) check them: each fire time once, none missing.

use std::collections::BTreeMap;

use conveyor_core::{Backend, ListParams, TaskRecord, TaskState};

/// The page size of the listing.
const PAGE: usize = 1_000;

/// Every task of `handler` the store holds, in any state, by the fire time
/// its unique key (`schedule:NAME:MS`) names. Panics on a task without a
/// fire key, or a store that cannot list.
pub async fn fires_by_time(backend: &dyn Backend, handler: &str) -> BTreeMap<i64, Vec<TaskRecord>> {
    let inspection = backend
        .inspection()
        .unwrap_or_else(|e| panic!("the inspection part: {e}"));
    let mut by_time: BTreeMap<i64, Vec<TaskRecord>> = BTreeMap::new();
    for state in TaskState::ALL {
        let mut params = ListParams::new(state).handler(handler);
        params.limit = PAGE;
        loop {
            let page = inspection
                .list(&params)
                .await
                .unwrap_or_else(|e| panic!("list: {}", e.chain()));
            let full = page.len() == PAGE;
            params.after = page.last().map(|t| t.id);
            for t in page {
                let key = t.unique_key.clone().unwrap_or_default();
                let at = key
                    .rsplit(':')
                    .next()
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or_else(|| panic!("not a fire key: {key:?}"));
                by_time.entry(at).or_default().push(t);
            }
            if !full {
                break;
            }
        }
    }
    by_time
}
