//! Listing workflows, newest first: the namespace's workflows by id
//! (`wf:all`), read a page at a time with the head of each.

use conveyor_core::workflow::{WorkflowFilter, WorkflowId, WorkflowState, WorkflowSummary};
use conveyor_core::{Error, Timestamp};

use super::codec;
use crate::reply::{bad, redis_error};
use crate::RedisBackend;

/// Workflows read per round trip while a listing fills.
const PAGE: usize = 200;

/// A workflow's head fields as a listing reads them: tally, cancelled,
/// created at, ended at, nodes.
const HEAD: [&str; 5] = ["t", "k", "c", "x", "N"];

impl RedisBackend {
    /// The body of `Workflows::list_workflows`.
    pub(crate) async fn list_workflows(
        &self,
        filter: &WorkflowFilter,
    ) -> Result<Vec<WorkflowSummary>, Error> {
        let what = "listing workflows";
        let mut conn = self.inner.conn.clone();
        let all = format!("{}wf:all", self.prefix());
        let mut max = filter
            .before
            .map_or_else(|| "+inf".to_string(), |b| format!("({}", b.0));
        let mut out = Vec::new();
        while out.len() < filter.limit {
            let ids: Vec<u64> = redis::cmd("ZREVRANGEBYSCORE")
                .arg(&all)
                .arg(&max)
                .arg("-inf")
                .arg("LIMIT")
                .arg(0)
                .arg(PAGE)
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_error(what, e))?;
            let mut pipe = redis::pipe();
            for &id in &ids {
                pipe.cmd("HMGET").arg(self.wf_key(id)).arg(&HEAD[..]);
            }
            let heads: Vec<Vec<Option<Vec<u8>>>> = if ids.is_empty() {
                Vec::new()
            } else {
                pipe.query_async(&mut conn)
                    .await
                    .map_err(|e| redis_error(what, e))?
            };
            for (&id, head) in ids.iter().zip(heads) {
                // Pruned between the two reads: not listed.
                let Some(summary) = summary(id, &head)? else {
                    continue;
                };
                if filter.admits(&summary) && out.len() < filter.limit {
                    out.push(summary);
                }
            }
            match ids.last() {
                Some(last) if ids.len() == PAGE => max = format!("({last}"),
                _ => break,
            }
        }
        Ok(out)
    }
}

/// Workflow `id`'s summary from its [`HEAD`] fields; `None` when it is gone.
fn summary(id: u64, head: &[Option<Vec<u8>>]) -> Result<Option<WorkflowSummary>, Error> {
    let [Some(t), k, c, x, n] = head else {
        return Ok(None);
    };
    let tally = codec::parse_tally(t, id)?;
    let time = |v: &Option<Vec<u8>>, f: &str| codec::parse_time(v.as_deref(), id, f);
    let nodes = match n {
        Some(n) => u32::try_from(codec::parse_id(n, "a workflow's node count")?)
            .map_err(|_| bad(format!("workflow {id}: its node count")))?,
        None => tally.left,
    };
    Ok(Some(WorkflowSummary {
        id: WorkflowId(id),
        state: WorkflowState::of(k.as_deref() == Some(b"1"), tally.left, tally.outcome),
        nodes,
        left: tally.left,
        created_at: time(c, "c")?.unwrap_or(Timestamp(0)),
        ended_at: time(x, "x")?,
    }))
}
