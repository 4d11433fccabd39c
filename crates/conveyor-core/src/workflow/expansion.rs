//! Dynamic expansion: a running node adds nodes to its own workflow.
//!
//! A node's task asks for it with its result: a JSON object whose one key
//! is `$expand`, holding a declaration in the form of
//! [`declared`](super::declared) without callbacks (a `group` fanning out
//! over a list the task just fetched, a `chain`, a `chord`, or `nodes`):
//!
//! ```json
//! {"$expand": {"group": [{"handler": "fetch", "params": ["a"]},
//!                        {"handler": "fetch", "params": ["b"]}]}}
//! ```
//!
//! An optional `"$output": "one"` or `"list"` beside it says what the node
//! passes on, where the shape does not (a group's list, a chain's or
//! chord's last result, and for `nodes` the one last node's result or the
//! list of several).
//!
//! The store decides it in the same atomic step as the task's end, as it
//! settles any node: the added nodes join the body (named `<node>/<name>`,
//! after every node there is), those waiting for nothing are enqueued, and
//! the node stays running, waiting under `fail` for the expansion's last
//! nodes. It settles in the step the last of them does — succeeded, or
//! failed when one of them failed — and passes on their result to its
//! dependents (see [`ExpansionOutput`]). So the workflow cannot end between
//! the expansion and its nodes, and an end heard twice expands nothing
//! twice: only a running node that has not expanded expands.

use std::ops::Range;

use serde_json::Value;

use super::declared;
use super::graph::{Expansion, ExpansionOutput, Graph, WorkflowSpec};
use super::progress::NodeResult;
use super::stored;
use crate::Error;

/// What a node task's end does to its node.
#[derive(Debug)]
pub enum NodeEnd {
    /// The node settles as the task did (a node that expanded already
    /// ignores it: see [`ledger::settle`](super::ledger::settle)).
    Settle(NodeResult),
    /// The node expands: `graph` is the workflow's graph with the
    /// expansion, `added` the positions of the nodes added, and `stored`
    /// the expansion as the store keeps it beside the declaration (see
    /// [`stored::decode_graph`]). The store keeps `stored`, takes `graph`
    /// as the workflow's, and decides with
    /// [`ledger::expand`](super::ledger::expand).
    Expand {
        /// The grown graph.
        graph: Box<Graph>,
        /// The nodes added.
        added: Range<usize>,
        /// The expansion, encoded.
        stored: Vec<u8>,
    },
    /// The task asked for an expansion that cannot be made: the node fails
    /// with this error (its task's result stays as it was).
    Refused(String),
}

impl NodeEnd {
    /// What the end of node `node`'s task, settled as `result` with
    /// `output` (its result), does.
    pub fn of(graph: &Graph, node: usize, result: NodeResult, output: Option<&[u8]>) -> NodeEnd {
        let asked = match (result, output) {
            (NodeResult::Succeeded, Some(bytes)) if node < graph.len() => {
                expansion_of(graph, node, bytes)
            }
            _ => None,
        };
        let expansion = match asked {
            None => return NodeEnd::Settle(result),
            Some(_) if graph.is_expanded(node) => return NodeEnd::Settle(result),
            Some(Err(e)) => return NodeEnd::Refused(e.to_string()),
            Some(Ok(expansion)) => expansion,
        };
        let stored = match stored::encode_expansion(&expansion) {
            Ok(stored) => stored,
            Err(e) => return NodeEnd::Refused(e.to_string()),
        };
        let mut grown = graph.clone();
        match grown.expand(expansion) {
            Ok(added) => NodeEnd::Expand {
                graph: Box::new(grown),
                added,
                stored,
            },
            Err(e) => NodeEnd::Refused(e.to_string()),
        }
    }
}

/// Whether `bytes` is an expansion's result: a JSON object whose first key
/// is `$expand` (checked without parsing, as every node's end asks).
pub fn is_expansion(bytes: &[u8]) -> bool {
    let text = bytes.trim_ascii_start();
    text.strip_prefix(b"{")
        .map(<[u8]>::trim_ascii_start)
        .is_some_and(|rest| rest.starts_with(b"\"$expand\""))
}

/// The expansion node `node`'s task asked for with its result `bytes`, if
/// it asked for one: `None` for any other result, an error naming what is
/// wrong for an expansion that cannot be read.
pub fn expansion_of(graph: &Graph, node: usize, bytes: &[u8]) -> Option<Result<Expansion, Error>> {
    if !is_expansion(bytes) {
        return None;
    }
    let spec = graph.nodes().get(node)?;
    Some(read(&spec.name, &spec.task.queue, bytes))
}

fn read(node: &str, queue: &str, bytes: &[u8]) -> Result<Expansion, Error> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::InvalidConfig(format!("node {node:?}'s expansion: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(Error::InvalidConfig(format!(
            "node {node:?}'s expansion is not an object"
        )));
    };
    let declaration = map.remove("$expand").unwrap_or(Value::Null);
    let asked = match map.remove("$output") {
        None => None,
        Some(Value::String(text)) => Some(
            text.parse::<ExpansionOutput>()
                .map_err(|e| Error::InvalidConfig(format!("node {node:?}'s expansion: {e}")))?,
        ),
        Some(other) => {
            return Err(Error::InvalidConfig(format!(
                "node {node:?}'s expansion: $output is {other}, not \"one\" or \"list\""
            )))
        }
    };
    if !map.is_empty() {
        return Err(Error::InvalidConfig(format!(
            "node {node:?}'s expansion has keys besides $expand and $output"
        )));
    }
    let (spec, output) = declared::expansion_from_value(declaration, queue)
        .map_err(|e| Error::InvalidConfig(format!("node {node:?}: {e}")))?;
    let output = asked.unwrap_or(output);
    Ok(Expansion {
        node: node.to_string(),
        spec,
        output,
    })
}

/// The result a Rust handler returns (as its JSON value) to add `spec`'s
/// nodes to its own workflow, passing on `output`:
/// `{"$expand": …, "$output": …}`, the declaration in the form of
/// [`declared::to_value`] (each task keeps the queue it names). Refuses a
/// spec with callbacks (an expansion has none) and what that form cannot
/// say.
pub fn expand(spec: &WorkflowSpec, output: ExpansionOutput) -> Result<Value, Error> {
    if !spec.callbacks.is_empty() {
        return Err(Error::InvalidConfig(
            "an expansion has no callbacks (the workflow's own run at its end)".into(),
        ));
    }
    let mut map = serde_json::Map::new();
    map.insert("$expand".into(), declared::to_value(spec)?);
    map.insert("$output".into(), Value::String(output.as_str().into()));
    Ok(Value::Object(map))
}
