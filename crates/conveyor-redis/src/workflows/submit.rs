//! Storing a workflow: its declaration, its node rows and the tasks of the
//! nodes that wait for nothing, in one script call.

use std::sync::Arc;

use conveyor_core::workflow::{
    composed_task, stored, Progress, Submitted, WorkflowId, WorkflowSpec,
};
use conveyor_core::{Error, NewTask, TaskId};

use super::codec;
use crate::reply::{self, bad};
use crate::scripts::Op;
use crate::RedisBackend;

impl RedisBackend {
    /// The body of `Workflows::submit`.
    pub(crate) async fn submit_workflow(&self, spec: WorkflowSpec) -> Result<Submitted, Error> {
        let what = "submitting a workflow";
        let stored = stored::encode(&spec)?;
        let graph = Arc::new(spec.validate()?);
        for node in graph.nodes() {
            node.task.validate()?;
            self.limit.check_params(&node.task)?;
        }
        let (progress, step) = Progress::start(&graph);
        let tasks = step
            .enqueue
            .iter()
            .map(|&node| composed_task(&graph, node, &[]))
            .collect::<Result<Vec<NewTask>, Error>>()?;
        let tally = progress.counts();
        let now = self.inner.clock.now();
        let mut inv = self.call(Op::WfSubmit);
        inv.arg(now.as_millis())
            .arg(stored)
            .arg(codec::tally_value(tally))
            .arg(codec::class(None, &tally, false))
            .arg(graph.len());
        for &row in progress.rows() {
            inv.arg(codec::row_value(row));
        }
        inv.arg(step.enqueue.len()).arg(&step.enqueue);
        crate::task_forms::push(&mut inv, &tasks, now);
        let items = reply::array(self.run(what, &inv).await?, what)?;
        let [id, first]: [redis::Value; 2] = items
            .try_into()
            .map_err(|_| bad(format!("{what}: expected an id and a task id")))?;
        let id: u64 = reply::number(id, what)?;
        let first: u64 = reply::number(first, what)?;
        self.inner.graphs.put(id, graph.clone());
        Ok(Submitted {
            id: WorkflowId(id),
            started: step
                .enqueue
                .iter()
                .zip(1..)
                .map(|(&node, k)| (graph.nodes()[node].name.clone(), TaskId(first + k)))
                .collect(),
        })
    }
}
