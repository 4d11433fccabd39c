//! Kept records past their expiry, dropped once a minute by every backend
//! that has a store beside the broker: each write drops a batch of them
//! too, and this covers a writer gone quiet. The same pass prunes the
//! workflows that ended before their retention, and creates the tasks a
//! crash left pending (`workflows`).

use std::sync::Weak;
use std::time::Duration;

use super::Inner;

/// How often a backend drops the kept records past their expiry: each write
/// drops a batch of them too, and this covers a writer gone quiet, so
/// nothing outlives its retention by more than this.
const EXPIRE_EVERY: Duration = Duration::from_secs(60);

/// Drops the kept records past their expiry every [`EXPIRE_EVERY`], until
/// the backend is dropped (a backend with no keeper has nothing to do).
pub(crate) async fn expire(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(EXPIRE_EVERY).await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let Some(records) = &strong.records else {
            return;
        };
        if let Ok(keeper) = records.keeper() {
            if let Err(e) = keeper.expire_kept().await {
                tracing::debug!(error = %e.chain(), "expiring kept records failed; trying again later");
            }
        }
        let retention = strong.options.retention;
        if let Err(e) = conveyor_core::workflow::entries::prune(&*strong, retention).await {
            tracing::debug!(error = %e.chain(), "pruning workflows failed; trying again later");
        }
    }
}
