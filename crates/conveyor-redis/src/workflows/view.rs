//! Reading a workflow at one version, deciding over what was read, and
//! writing the decision back if the workflow is still at that version
//! (`wf_apply`).

use std::collections::HashMap;
use std::sync::Arc;

use conveyor_core::workflow::ledger::{NodeRow, Tally};
use conveyor_core::workflow::{Graph, NodeOutput, NodeState, ReadAhead};
use conveyor_core::{Error, NewTask};

use super::codec::{self, field};
use crate::reply::{self, bad, redis_error};
use crate::scripts::Op;
use crate::RedisBackend;

/// A workflow's head as read at one version.
pub(super) struct Head {
    /// The version read: every later read and the write compare it.
    pub version: Vec<u8>,
    /// Its tally.
    pub tally: Tally,
    /// Its graph.
    pub graph: Arc<Graph>,
}

/// What one decision writes back (see `lua/wf_apply.lua`).
#[derive(Default)]
pub(super) struct Change {
    /// How the workflow ended, if it just did (see [`codec::class`]).
    pub class: &'static str,
    /// The workflow is cancelled now.
    pub cancelled: bool,
    /// A retry reopened the workflow: the rows written are nodes put back,
    /// which forget their task, result and error.
    pub reopened: bool,
    /// The rows the decision wrote.
    pub rows: Vec<(usize, NodeRow)>,
    /// The tally, when the decision wrote it.
    pub tally: Option<Tally>,
    /// Output fields of nodes settled now (`r:N`, `e:N`) and their values.
    pub outputs: Vec<(String, Vec<u8>)>,
    /// Node tasks whose ends this settles.
    pub settled: Vec<u64>,
    /// Node tasks to cancel (their ends are among `settled`).
    pub cancel: Vec<u64>,
    /// Nodes made ready.
    pub ready: Vec<usize>,
    /// Their tasks, in the same order.
    pub tasks: Vec<NewTask>,
}

impl Change {
    /// A change holding what `ahead`'s last run wrote, over `head`.
    pub fn from_decision(head: &Head, ahead: &ReadAhead, cancelled: bool) -> Change {
        let tally = ahead.written_tally();
        let class = tally.map_or("", |t| codec::class(Some(&head.tally), &t, cancelled));
        Change {
            class,
            cancelled,
            rows: ahead.written_rows().collect(),
            tally,
            ..Change::default()
        }
    }
}

impl RedisBackend {
    /// The hash of workflow `wf`.
    pub(super) fn wf_key(&self, wf: u64) -> String {
        format!("{}wf:{wf}", self.prefix())
    }

    /// `HMGET` of `fields` of workflow `wf`'s hash.
    pub(super) async fn wf_fields(
        &self,
        wf: u64,
        fields: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, Error> {
        let mut conn = self.inner.conn.clone();
        redis::cmd("HMGET")
            .arg(self.wf_key(wf))
            .arg(fields)
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error("reading a workflow", e))
    }

    /// `HMGET` of `fields` of workflow `wf`'s hash, read with its version in
    /// the same command: `None` when the workflow is past `version` (or
    /// gone).
    pub(super) async fn wf_fields_at(
        &self,
        wf: u64,
        version: &[u8],
        fields: impl IntoIterator<Item = String>,
    ) -> Result<Option<Vec<Option<Vec<u8>>>>, Error> {
        let fields: Vec<String> = std::iter::once("v".to_string()).chain(fields).collect();
        let mut got = self.wf_fields(wf, &fields).await?;
        if got.first().and_then(Option::as_deref) != Some(version) {
            return Ok(None);
        }
        got.remove(0);
        Ok(Some(got))
    }

    /// Workflow `wf`'s head, or `None` when there is no such workflow. Its
    /// graph is the one kept when that holds every expansion stored (field
    /// `gn`), else decoded again with them (fields `g:K`).
    pub(super) async fn wf_head(&self, wf: u64) -> Result<Option<Head>, Error> {
        let cached = self.inner.graphs.get(wf);
        let mut fields = vec![
            "v".to_string(),
            "t".to_string(),
            codec::EXPANSIONS.to_string(),
        ];
        if cached.is_none() {
            fields.push("spec".to_string());
        }
        let mut got = self.wf_fields(wf, &fields).await?.into_iter();
        let (Some(version), tally, grown) = (
            got.next().flatten(),
            got.next().flatten(),
            got.next().flatten(),
        ) else {
            return Ok(None);
        };
        let tally = tally.ok_or_else(|| bad(format!("workflow {wf} has no tally")))?;
        let expansions = codec::expansion_count(grown.as_deref())?;
        let graph = match cached {
            Some(g) if g.expansions() == expansions => g,
            stale => {
                // The declaration (unless read above) and the expansions'
                // documents, at the version read: one more read, none for
                // a workflow read whole above.
                let mut wanted: Vec<String> = (0..expansions).map(codec::expansion_field).collect();
                if stale.is_some() {
                    wanted.insert(0, "spec".to_string());
                }
                let mut more = if wanted.is_empty() {
                    Vec::new()
                } else {
                    match self.wf_fields_at(wf, &version, wanted).await? {
                        Some(more) => more,
                        // Moved on between the reads: read it again.
                        None => return Box::pin(self.wf_head(wf)).await,
                    }
                };
                let spec = match stale {
                    Some(_) => more.remove(0),
                    None => got.next().flatten(),
                };
                let spec = spec.ok_or_else(|| bad(format!("workflow {wf} has no declaration")))?;
                let docs = more
                    .into_iter()
                    .enumerate()
                    .map(|(k, d)| {
                        d.ok_or_else(|| bad(format!("workflow {wf} has no expansion {k}")))
                    })
                    .collect::<Result<Vec<Vec<u8>>, Error>>()?;
                self.inner
                    .graphs
                    .decode_grown(wf, &spec, docs.iter().map(Vec::as_slice))?
            }
        };
        Ok(Some(Head {
            version,
            tally: codec::parse_tally(&tally, wf)?,
            graph,
        }))
    }

    /// Workflow `wf`'s head and the rows of `nodes`, in one read, for a
    /// workflow whose `graph` this process has decoded already; `None`
    /// when there is no such workflow.
    /// A workflow that grew since its graph was kept reads as `Ok(None)`
    /// too, with the graph forgotten: the caller reads its head again.
    pub(super) async fn wf_head_with_rows(
        &self,
        wf: u64,
        graph: Arc<Graph>,
        nodes: &[usize],
    ) -> Result<Option<(Head, ReadAhead)>, Error> {
        let fields: Vec<String> = [
            "v".to_string(),
            "t".to_string(),
            codec::EXPANSIONS.to_string(),
        ]
        .into_iter()
        .chain(nodes.iter().map(|&n| field('n', n)))
        .collect();
        let mut got = self.wf_fields(wf, &fields).await?.into_iter();
        let (Some(version), tally, grown) = (
            got.next().flatten(),
            got.next().flatten(),
            got.next().flatten(),
        ) else {
            return Ok(None);
        };
        if codec::expansion_count(grown.as_deref())? != graph.expansions() {
            self.inner.graphs.forget(wf);
            return Ok(None);
        }
        let tally = tally.ok_or_else(|| bad(format!("workflow {wf} has no tally")))?;
        let tally = codec::parse_tally(&tally, wf)?;
        let mut ahead = ReadAhead::new(tally);
        for (&node, v) in nodes.iter().zip(got) {
            match v {
                Some(v) => ahead.insert(node, codec::parse_row(&v, wf, node)?),
                None => return Err(bad(format!("workflow {wf} has no row for node {node}"))),
            }
        }
        let head = Head {
            version,
            tally,
            graph,
        };
        Ok(Some((head, ahead)))
    }

    /// Reads the rows of `nodes` into `ahead`; `false` when the workflow is
    /// past `version` (or gone).
    pub(super) async fn wf_rows(
        &self,
        wf: u64,
        version: &[u8],
        nodes: &[usize],
        ahead: &mut ReadAhead,
    ) -> Result<bool, Error> {
        let fields = nodes.iter().map(|&n| field('n', n));
        let Some(got) = self.wf_fields_at(wf, version, fields).await? else {
            return Ok(false);
        };
        for (&node, v) in nodes.iter().zip(&got) {
            match v {
                Some(v) => ahead.insert(node, codec::parse_row(v, wf, node)?),
                None => return Err(bad(format!("workflow {wf} has no row for node {node}"))),
            }
        }
        Ok(true)
    }

    /// Runs `decide` over workflow `wf`'s rows read at `version` into
    /// `ahead`, reading whatever else it asks for; `None` when the workflow
    /// moved past `version` meanwhile.
    pub(super) async fn wf_decide<T>(
        &self,
        wf: u64,
        version: &[u8],
        ahead: &mut ReadAhead,
        mut decide: impl FnMut(&mut ReadAhead) -> Result<T, Error>,
    ) -> Result<Option<T>, Error> {
        loop {
            if let Some(out) = ahead.run(&mut decide)? {
                return Ok(Some(out));
            }
            let missing = ahead.missing();
            if !self.wf_rows(wf, version, &missing, ahead).await? {
                return Ok(None);
            }
        }
    }

    /// The outputs of `nodes` as stored; `None` when the workflow is past
    /// `version`.
    pub(super) async fn wf_outputs(
        &self,
        wf: u64,
        version: &[u8],
        nodes: &[usize],
    ) -> Result<Option<HashMap<usize, NodeOutput>>, Error> {
        if nodes.is_empty() {
            return Ok(Some(HashMap::new()));
        }
        let fields = nodes
            .iter()
            .flat_map(|&n| [field('n', n), field('r', n), field('e', n)]);
        let Some(got) = self.wf_fields_at(wf, version, fields).await? else {
            return Ok(None);
        };
        let mut out = HashMap::with_capacity(nodes.len());
        for (&node, v) in nodes.iter().zip(got.chunks(3)) {
            let [row, result, error] = v else {
                return Err(bad("reading node outputs: three fields a node expected"));
            };
            let row = row
                .as_deref()
                .ok_or_else(|| bad(format!("workflow {wf} has no row for node {node}")))?;
            let state: NodeState = codec::parse_row(row, wf, node)?.state;
            let error = error
                .as_deref()
                .map(|e| String::from_utf8_lossy(e).into_owned());
            out.insert(node, (state, result.clone(), error));
        }
        Ok(Some(out))
    }

    /// Writes `change` if workflow `wf` is still at `version`: the id before
    /// the first task enqueued (the ready nodes take the next ones, in
    /// order), or `None` when it moved on.
    pub(super) async fn wf_apply(
        &self,
        wf: u64,
        version: &[u8],
        change: &Change,
    ) -> Result<Option<u64>, Error> {
        let now = self.inner.clock.now();
        let mut inv = self.call(Op::WfApply);
        inv.arg(now.as_millis())
            .arg(wf)
            .arg(version)
            .arg(change.class)
            .arg(match (change.cancelled, change.reopened) {
                (true, _) => "1",
                (false, true) => "2",
                (false, false) => "0",
            })
            .arg(change.tally.map(codec::tally_value).unwrap_or_default());
        inv.arg(change.rows.len());
        for &(node, row) in &change.rows {
            inv.arg(node).arg(codec::row_value(row));
        }
        inv.arg(change.outputs.len());
        for (f, v) in &change.outputs {
            inv.arg(f).arg(&v[..]);
        }
        inv.arg(change.settled.len()).arg(&change.settled);
        inv.arg(change.cancel.len()).arg(&change.cancel);
        inv.arg(change.ready.len()).arg(&change.ready);
        crate::task_forms::push(&mut inv, &change.tasks, now);
        let what = "writing a workflow's step";
        let items = reply::array(self.run(what, &inv).await?, what)?;
        let mut items = items.into_iter();
        let applied = reply::int(items.next().ok_or_else(|| bad(what))?, what)?;
        if applied != 1 {
            return Ok(None);
        }
        let first = reply::number(items.next().ok_or_else(|| bad(what))?, what)?;
        Ok(Some(first))
    }
}
