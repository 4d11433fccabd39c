//! What a node's task receives from the nodes it waited for: its own params
//! as declared, or with the dependencies' results put in front as its first
//! argument — a chain step gets the step before's result, a chord's body the
//! list of its header's results (as Celery passes them).
//!
//! Params are read as the Python package and the CLI write them: a JSON
//! array is the positional arguments, an object whose keys are `args` and/or
//! `kwargs` holds both, any other object is the keyword arguments, `null` is
//! no argument, and any other value the one positional argument.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::graph::{ExpansionOutput, Graph};
use super::progress::NodeState;
use crate::{Error, NewTask};

/// What a node's task receives besides its own params.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum NodeInput {
    /// Its params as declared (a group's tasks, a graph's nodes).
    #[default]
    Params,
    /// The result of its one dependency, as its first argument (a chain's
    /// steps after the first).
    Previous,
    /// The results of its dependencies, as one list in the order they are
    /// declared, as its first argument (a chord's body).
    Results,
}

impl NodeInput {
    /// The mode's name: `params`, `previous` or `results`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeInput::Params => "params",
            NodeInput::Previous => "previous",
            NodeInput::Results => "results",
        }
    }
}

impl std::str::FromStr for NodeInput {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "params" => Ok(NodeInput::Params),
            "previous" => Ok(NodeInput::Previous),
            "results" => Ok(NodeInput::Results),
            other => Err(Error::InvalidConfig(format!(
                "unknown node input {other:?}: expected params, previous or results"
            ))),
        }
    }
}

/// How one dependency settled, as a node's input shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DependencyResult<'a> {
    /// It succeeded, with this result (`None`: none kept). A result that is
    /// JSON is passed as its value; any other bytes as a string.
    Succeeded(Option<&'a [u8]>),
    /// It did not succeed (a dependency under `ignore` or `continue`):
    /// passed marked, as `{"$failed": {"state": …, "error": …}}`.
    Failed {
        /// How it ended: failed, cancelled or skipped.
        state: NodeState,
        /// Its error, if it has one.
        error: Option<&'a str>,
    },
}

impl<'a> DependencyResult<'a> {
    /// A settled dependency in `state`, with the `result` and `error` it left.
    pub fn of(
        state: NodeState,
        result: Option<&'a [u8]>,
        error: Option<&'a str>,
    ) -> DependencyResult<'a> {
        match state {
            NodeState::Succeeded => DependencyResult::Succeeded(result),
            state => DependencyResult::Failed { state, error },
        }
    }
}

/// What a settled node leaves its dependents: its state, its result and its
/// error.
pub type NodeOutput = (NodeState, Option<Vec<u8>>, Option<String>);

/// Node `node`'s task, its params composed from `outputs`: those of the
/// nodes [`Graph::reads`] lists, in that order (its dependencies', and for
/// one that expanded, its expansion's last nodes' too).
pub fn composed_task(graph: &Graph, node: usize, outputs: &[NodeOutput]) -> Result<NewTask, Error> {
    let spec = graph.nodes().get(node).ok_or_else(|| {
        Error::InvalidConfig(format!(
            "a workflow of {} nodes has no node {node}",
            graph.len()
        ))
    })?;
    let reads = graph.reads(node);
    if reads.len() != outputs.len() {
        return Err(Error::InvalidConfig(format!(
            "node {node} reads {} outputs, not {}",
            reads.len(),
            outputs.len()
        )));
    }
    let by: HashMap<usize, &NodeOutput> = reads.into_iter().zip(outputs).collect();
    let values = graph
        .dependencies(node)
        .iter()
        .map(|&(dep, _)| output_value(graph, &by, dep))
        .collect();
    let mut task = spec.task.clone();
    task.payload = compose(spec.input, &spec.task.payload, values)?;
    Ok(task)
}

/// What node `node` passes on, from the outputs read: its result, or for
/// a node that expanded, its expansion's.
fn output_value(graph: &Graph, by: &HashMap<usize, &NodeOutput>, node: usize) -> Value {
    let Some((state, result, error)) = by.get(&node).copied() else {
        return Value::Null;
    };
    if *state != NodeState::Succeeded {
        return value_of(&DependencyResult::of(*state, None, error.as_deref()));
    }
    match graph.expansion_output(node) {
        Some((ExpansionOutput::One, sinks)) => sinks
            .first()
            .map_or(Value::Null, |&s| output_value(graph, by, s)),
        Some((ExpansionOutput::List, sinks)) => {
            Value::Array(sinks.iter().map(|&s| output_value(graph, by, s)).collect())
        }
        None => value_of(&DependencyResult::Succeeded(result.as_deref())),
    }
}

/// The params a node's task is enqueued with: `params` as declared, with
/// `results` (its dependencies', in declared order) put first as `input`
/// says. Refuses params that are not JSON when results must join them.
pub fn compose_params(
    input: NodeInput,
    params: &[u8],
    results: &[DependencyResult<'_>],
) -> Result<Vec<u8>, Error> {
    compose(input, params, results.iter().map(value_of).collect())
}

/// [`compose_params`] over the dependencies' values.
fn compose(input: NodeInput, params: &[u8], results: Vec<Value>) -> Result<Vec<u8>, Error> {
    let first = match input {
        NodeInput::Params => return Ok(params.to_vec()),
        NodeInput::Previous => match <[Value; 1]>::try_from(results) {
            Ok([one]) => one,
            Err(results) => {
                return Err(Error::InvalidConfig(format!(
                    "the previous result needs exactly one dependency, not {}",
                    results.len()
                )))
            }
        },
        NodeInput::Results => Value::Array(results),
    };
    let declared: Value = if params.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(params).map_err(|e| {
            Error::InvalidConfig(format!(
                "a node taking its dependencies' results needs JSON params: {e}"
            ))
        })?
    };
    let composed = prepend(first, declared);
    serde_json::to_vec(&composed).map_err(|e| Error::InvalidConfig(e.to_string()))
}

/// `params` with `first` as the first positional argument.
fn prepend(first: Value, params: Value) -> Value {
    match params {
        Value::Null => Value::Array(vec![first]),
        Value::Array(mut args) => {
            args.insert(0, first);
            Value::Array(args)
        }
        Value::Object(map) if map.is_empty() => Value::Array(vec![first]),
        Value::Object(mut map) if is_envelope(&map) => {
            let mut args = match map.remove("args") {
                Some(Value::Array(args)) => args,
                _ => Vec::new(),
            };
            args.insert(0, first);
            map.insert("args".into(), Value::Array(args));
            Value::Object(map)
        }
        Value::Object(kwargs) => {
            let mut map = Map::new();
            map.insert("args".into(), Value::Array(vec![first]));
            map.insert("kwargs".into(), Value::Object(kwargs));
            Value::Object(map)
        }
        other => Value::Array(vec![first, other]),
    }
}

/// Whether an object is the `{"args": […], "kwargs": {…}}` form (either
/// key alone too).
fn is_envelope(map: &Map<String, Value>) -> bool {
    map.keys().all(|k| k == "args" || k == "kwargs")
        && map.get("args").is_none_or(Value::is_array)
        && map.get("kwargs").is_none_or(Value::is_object)
}

/// A dependency's result as a JSON value.
fn value_of(result: &DependencyResult<'_>) -> Value {
    match *result {
        DependencyResult::Succeeded(None) => Value::Null,
        DependencyResult::Succeeded(Some(bytes)) => serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned())),
        DependencyResult::Failed { state, error } => {
            let mut failed = Map::new();
            failed.insert("state".into(), Value::String(state.as_str().into()));
            failed.insert(
                "error".into(),
                error.map_or(Value::Null, |e| Value::String(e.into())),
            );
            let mut marked = Map::new();
            marked.insert("$failed".into(), Value::Object(failed));
            Value::Object(marked)
        }
    }
}
