//! Helpers for the engine's unit tests.

use crate::Pool;

/// Runs `test` with a one-worker pool, inside a current-thread runtime.
pub(crate) fn on_a_pool(test: impl FnOnce(&Pool)) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let pool = Pool::builder().workers(1).build().expect("pool");
        test(&pool);
    });
}
