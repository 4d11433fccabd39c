//! Paused queues in Redis: one set under the prefix, `<prefix>paused`, of
//! queue names. The reserve script reads it for each queue it scans, inside
//! the script, so a pause (one `SADD`) is ordered with every reservation by
//! Redis itself: a reservation that starts after the pause returned never
//! takes the queue's tasks, from any client. Resuming removes the name and
//! publishes the queue on the wake channel in one script, so waiting workers
//! look again at once.

use std::sync::OnceLock;

use conveyor_core::{async_trait, validate_queue_name, Error, QueueControl};
use redis::Script;

use crate::backend::RedisBackend;
use crate::reply::redis_error;

/// KEYS = paused set, wake channel; ARGV = queue → 1 when it was paused.
const RESUME: &str = "local n = redis.call('SREM', KEYS[1], ARGV[1])
if n == 1 then redis.call('PUBLISH', KEYS[2], ARGV[1]) end
return n";

fn resume_script() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(RESUME))
}

#[async_trait]
impl QueueControl for RedisBackend {
    async fn pause(&self, queue: &str) -> Result<bool, Error> {
        validate_queue_name(queue)?;
        let mut conn = self.inner.conn.clone();
        let added: i64 = redis::cmd("SADD")
            .arg(self.inner.keys.paused())
            .arg(queue)
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error("pausing a queue", e))?;
        Ok(added == 1)
    }

    async fn resume(&self, queue: &str) -> Result<bool, Error> {
        validate_queue_name(queue)?;
        let mut conn = self.inner.conn.clone();
        let removed: i64 = resume_script()
            .key(self.inner.keys.paused())
            .key(self.inner.keys.wake_channel())
            .arg(queue)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| redis_error("resuming a queue", e))?;
        Ok(removed == 1)
    }

    async fn paused(&self) -> Result<Vec<String>, Error> {
        let mut conn = self.inner.conn.clone();
        let mut names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.inner.keys.paused())
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error("listing paused queues", e))?;
        names.sort_unstable();
        Ok(names)
    }
}
