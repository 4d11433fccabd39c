//! A workflow's declaration as a store keeps it: one JSON document, read
//! back into the same [`WorkflowSpec`] (and checked again into its
//! [`Graph`] by whoever settles its nodes).
//!
//! Params that are UTF-8 (JSON, as handlers mostly take) are kept as text;
//! any other bytes as hex. Version 1 is the only form; a document of another
//! version is refused, never misread.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::graph::{
    Callback, Dependency, EdgePolicy, Expansion, Graph, NodeSpec, WhenEnded, WorkflowSpec,
};
use super::input::NodeInput;
use crate::clock::Timestamp;
use crate::trace_context::TraceContext;
use crate::{Error, NewTask};

/// The form's version.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Document {
    v: u32,
    nodes: Vec<Node>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    callbacks: Vec<(String, Node)>,
}

#[derive(Serialize, Deserialize)]
struct Node {
    name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    after: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input: Option<String>,
    task: Task,
}

#[derive(Serialize, Deserialize)]
struct Task {
    queue: String,
    handler: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    params: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    params_hex: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    priority: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_at_ms: Option<i64>,
    max_attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ordering_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tracestate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keep_ms: Option<u64>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `spec` as a store keeps it. A node's unique key is not kept: a node is
/// its own task (the `Workflows` part refuses one before storing).
pub fn encode(spec: &WorkflowSpec) -> Result<Vec<u8>, Error> {
    let doc = Document {
        v: VERSION,
        nodes: spec.nodes.iter().map(node_out).collect(),
        callbacks: spec
            .callbacks
            .iter()
            .map(|c| (when_name(c.when).to_string(), node_out(&c.node)))
            .collect(),
    };
    serde_json::to_vec(&doc).map_err(|e| Error::Codec(format!("a workflow's graph: {e}")))
}

/// The declaration [`encode`] kept.
pub fn decode(bytes: &[u8]) -> Result<WorkflowSpec, Error> {
    let bad = |e: String| Error::Codec(format!("a stored workflow's graph: {e}"));
    let doc: Document = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    let nodes = nodes_in(doc.v, doc.nodes).map_err(bad)?;
    let callbacks = doc
        .callbacks
        .into_iter()
        .map(|(when, node)| {
            Ok(Callback {
                when: when_of(&when)?,
                node: node_in(node)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(bad)?;
    Ok(WorkflowSpec { nodes, callbacks })
}

/// An expansion as a store keeps it, beside its workflow's declaration.
#[derive(Serialize, Deserialize)]
struct ExpansionDocument {
    v: u32,
    node: String,
    output: String,
    nodes: Vec<Node>,
}

/// `expansion` as a store keeps it.
pub fn encode_expansion(expansion: &Expansion) -> Result<Vec<u8>, Error> {
    let doc = ExpansionDocument {
        v: VERSION,
        node: expansion.node.clone(),
        output: expansion.output.as_str().to_string(),
        nodes: expansion.spec.nodes.iter().map(node_out).collect(),
    };
    serde_json::to_vec(&doc).map_err(|e| Error::Codec(format!("a workflow's expansion: {e}")))
}

/// The expansion [`encode_expansion`] kept.
pub fn decode_expansion(bytes: &[u8]) -> Result<Expansion, Error> {
    let bad = |e: String| Error::Codec(format!("a stored workflow's expansion: {e}"));
    let doc: ExpansionDocument = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    let nodes = nodes_in(doc.v, doc.nodes).map_err(bad)?;
    Ok(Expansion {
        node: doc.node,
        output: doc.output.parse().map_err(|e: Error| bad(e.to_string()))?,
        spec: WorkflowSpec {
            nodes,
            callbacks: Vec::new(),
        },
    })
}

/// The graph of a stored declaration (`spec`, from [`encode`]) and its
/// expansions (from [`encode_expansion`], in the order they were made),
/// checked.
pub fn decode_graph<'a>(
    spec: &[u8],
    expansions: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Graph, Error> {
    let mut graph = decode(spec)?.validate()?;
    for bytes in expansions {
        graph.expand(decode_expansion(bytes)?)?;
    }
    Ok(graph)
}

/// The nodes of a document of form version `v`: refused for another
/// version, never misread.
fn nodes_in(v: u32, nodes: Vec<Node>) -> Result<Vec<NodeSpec>, String> {
    if v != VERSION {
        return Err(format!("form version {v} (this build reads {VERSION})"));
    }
    nodes.into_iter().map(node_in).collect()
}

fn when_name(when: WhenEnded) -> &'static str {
    match when {
        WhenEnded::Success => "success",
        WhenEnded::Failure => "failure",
        WhenEnded::Complete => "complete",
    }
}

fn when_of(name: &str) -> Result<WhenEnded, String> {
    match name {
        "success" => Ok(WhenEnded::Success),
        "failure" => Ok(WhenEnded::Failure),
        "complete" => Ok(WhenEnded::Complete),
        other => Err(format!("unknown callback end {other:?}")),
    }
}

fn node_out(node: &NodeSpec) -> Node {
    let t = &node.task;
    let (params, params_hex) = match std::str::from_utf8(&t.payload) {
        Ok(text) => (Some(text.to_string()), None),
        Err(_) => (None, Some(hex(&t.payload))),
    };
    Node {
        name: node.name.clone(),
        after: node
            .after
            .iter()
            .map(|d| (d.node.clone(), d.policy.as_str().to_string()))
            .collect(),
        input: (node.input != NodeInput::Params).then(|| node.input.as_str().to_string()),
        task: Task {
            queue: t.queue.clone(),
            handler: t.handler.clone(),
            params,
            params_hex,
            priority: t.priority,
            delay_ms: t.delay.map(millis),
            run_at_ms: t.run_at.map(|at| at.as_millis()),
            max_attempts: t.max_attempts,
            timeout_ms: t.timeout.map(millis),
            ordering_key: t.ordering_key.clone(),
            traceparent: t.trace.as_ref().map(|c| c.traceparent().to_string()),
            tracestate: t
                .trace
                .as_ref()
                .and_then(|c| c.tracestate().map(str::to_string)),
            keep_ms: t.keep.map(millis),
        },
    }
}

fn node_in(node: Node) -> Result<NodeSpec, String> {
    let t = node.task;
    let payload = match (t.params, t.params_hex) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(h)) => unhex(&h).ok_or_else(|| format!("node {:?}: bad hex", node.name))?,
        (None, None) => Vec::new(),
        (Some(_), Some(_)) => return Err(format!("node {:?}: two params", node.name)),
    };
    let trace = match t.traceparent {
        Some(parent) => Some(
            TraceContext::new(parent, t.tracestate)
                .map_err(|e| format!("node {:?}: {e}", node.name))?,
        ),
        None => None,
    };
    let task = NewTask {
        queue: t.queue,
        handler: t.handler,
        payload,
        priority: t.priority,
        delay: t.delay_ms.map(Duration::from_millis),
        run_at: t.run_at_ms.map(Timestamp),
        max_attempts: t.max_attempts,
        timeout: t.timeout_ms.map(Duration::from_millis),
        unique_key: None,
        ordering_key: t.ordering_key,
        trace,
        keep: t.keep_ms.map(Duration::from_millis),
    };
    let mut spec = NodeSpec::new(node.name, task);
    if let Some(input) = node.input {
        spec = spec.with_input(input.parse().map_err(|e: Error| e.to_string())?);
    }
    for (name, policy) in node.after {
        let policy: EdgePolicy = policy.parse().map_err(|e: Error| e.to_string())?;
        spec = spec.after(Dependency::on(name).with_policy(policy));
    }
    Ok(spec)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_declaration_reads_back_as_it_was() {
        let trace = TraceContext::new(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some("k=v".into()),
        )
        .unwrap();
        let full = NewTask::new("h", vec![0xff, 0x00, 0x7f])
            .queue("q")
            .priority(-3)
            .delay(Duration::from_millis(1500))
            .max_attempts(7)
            .timeout(Duration::from_secs(9))
            .ordering_key("o")
            .keep(Duration::from_secs(60));
        let mut full = full;
        full.trace = Some(trace);
        full.run_at = Some(Timestamp(123));
        let spec = WorkflowSpec {
            nodes: vec![
                NodeSpec::new("a", full),
                NodeSpec::new("b", NewTask::new("h", b"[1]".to_vec()))
                    .after(Dependency::on("a").with_policy(EdgePolicy::Continue))
                    .with_input(NodeInput::Previous),
            ],
            callbacks: vec![],
        }
        .on(
            WhenEnded::Failure,
            NodeSpec::new("c", NewTask::new("alarm", Vec::new())),
        );
        let back = decode(&encode(&spec).unwrap()).unwrap();
        assert_eq!(format!("{back:?}"), format!("{spec:?}"));
    }

    #[test]
    fn damaged_or_newer_documents_are_refused() {
        for bad in [
            &b"not json"[..],
            br#"{"v":2,"nodes":[]}"#,
            br#"{"v":1,"nodes":[{"name":"a","task":{"queue":"q","handler":"h","params_hex":"zz","max_attempts":1}}]}"#,
            br#"{"v":1,"nodes":[{"name":"a","after":[["b","sometimes"]],"task":{"queue":"q","handler":"h","max_attempts":1}}]}"#,
            br#"{"v":1,"nodes":[],"callbacks":[["never",{"name":"a","task":{"queue":"q","handler":"h","max_attempts":1}}]]}"#,
        ] {
            assert!(matches!(decode(bad), Err(Error::Codec(_))), "{}", String::from_utf8_lossy(bad));
        }
    }
}
