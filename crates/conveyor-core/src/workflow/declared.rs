//! A workflow declared as JSON: the form `conveyor workflow submit FILE`,
//! the HTTP API and the Python package send, read into a [`WorkflowSpec`].
//!
//! One of `chain`, `group`, `chord` or `nodes` says the shape; callbacks
//! are `on_success`, `on_failure` and `on_complete`; `queue` is the queue
//! of every task that names none:
//!
//! ```json
//! {"queue": "images",
//!  "nodes": [
//!    {"name": "fetch", "handler": "fetch", "params": ["https://…"]},
//!    {"name": "thumb", "handler": "resize", "params": {"width": 128},
//!     "after": ["fetch"], "input": "previous"},
//!    {"name": "index", "handler": "index", "after": [{"node": "fetch", "policy": "ignore"}]}
//!  ],
//!  "on_failure": {"handler": "alert", "params": ["images failed"]}}
//! ```
//!
//! A task is `handler` with optional `params` (any JSON, default `null`),
//! `queue`, `priority`, `attempts` (total, counting the first), `timeout`,
//! `delay` and `keep` (durations such as `500ms`, `30s`, `5m`) and
//! `ordering_key`. A node adds `name`, `after` (names, or `{"node",
//! "policy"}` with `fail`, `ignore` or `continue`) and `input` (`params`,
//! `previous`, `results`). Unknown fields are refused, so a misspelt option
//! is an error rather than ignored.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::graph::{Dependency, ExpansionOutput, NodeSpec, WhenEnded, WorkflowSpec};
use crate::{Error, NewTask};

/// The declaration as sent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Declared {
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    chain: Option<Vec<Task>>,
    #[serde(default)]
    group: Option<Vec<Task>>,
    #[serde(default)]
    chord: Option<Chord>,
    #[serde(default)]
    nodes: Option<Vec<Node>>,
    #[serde(default)]
    on_success: Option<Node>,
    #[serde(default)]
    on_failure: Option<Node>,
    #[serde(default)]
    on_complete: Option<Node>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Chord {
    header: Vec<Task>,
    body: Task,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Task {
    handler: String,
    #[serde(default)]
    params: Option<Value>,
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    priority: Option<i32>,
    #[serde(default)]
    attempts: Option<u32>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    delay: Option<String>,
    #[serde(default)]
    keep: Option<String>,
    #[serde(default)]
    ordering_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Node {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    after: Vec<After>,
    #[serde(default)]
    input: Option<String>,
    #[serde(flatten)]
    task: Task,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum After {
    Name(String),
    Edge {
        node: String,
        #[serde(default)]
        policy: Option<String>,
    },
}

/// Reads a workflow declared as JSON. The error says where and what is
/// wrong (a JSON error's line and column, an unknown field, a bad
/// duration, two shapes at once); the graph's own checks come after, in
/// [`WorkflowSpec::validate`].
pub fn from_json(text: &[u8]) -> Result<WorkflowSpec, Error> {
    let declared: Declared = serde_json::from_slice(text)
        .map_err(|e| Error::InvalidConfig(format!("workflow declaration: {e}")))?;
    declared.into_spec()
}

/// Reads the declaration of an expansion (see
/// [`expansion_of`](super::expansion_of)): the same form without
/// callbacks, its tasks in `queue` unless it or they name one. Returns it
/// with what its node passes on: a group's list of results, a chain's or
/// a chord's last result, and for `nodes`, the one last node's result, or
/// the list of the last nodes' when there are several.
pub fn expansion_from_value(
    value: Value,
    queue: &str,
) -> Result<(WorkflowSpec, ExpansionOutput), Error> {
    let mut declared: Declared = serde_json::from_value(value)
        .map_err(|e| Error::InvalidConfig(format!("expansion: {e}")))?;
    if declared.on_success.is_some()
        || declared.on_failure.is_some()
        || declared.on_complete.is_some()
    {
        return Err(Error::InvalidConfig(
            "expansion: an expansion has no callbacks (the workflow's own run at its end)".into(),
        ));
    }
    declared.queue = declared.queue.or_else(|| Some(queue.to_string()));
    let grouped = declared.group.is_some();
    let listed = declared.nodes.is_some();
    let spec = declared.into_spec()?;
    let output = if grouped {
        ExpansionOutput::List
    } else if listed {
        let waited: std::collections::HashSet<&str> = spec
            .nodes
            .iter()
            .flat_map(|n| n.after.iter().map(|d| d.node.as_str()))
            .collect();
        let last = spec
            .nodes
            .iter()
            .filter(|n| !waited.contains(n.name.as_str()))
            .count();
        if last == 1 {
            ExpansionOutput::One
        } else {
            ExpansionOutput::List
        }
    } else {
        ExpansionOutput::One
    };
    Ok((spec, output))
}

/// `spec` in this form (as `nodes`, each task with every option it sets):
/// what [`from_json`] reads back into the same declaration. Refuses what
/// the form cannot say: params that are not JSON, a task's `run_at` or
/// unique key, two callbacks for one end.
pub fn to_value(spec: &WorkflowSpec) -> Result<Value, Error> {
    let nodes = spec
        .nodes
        .iter()
        .map(node_value)
        .collect::<Result<Vec<Value>, Error>>()?;
    let mut out = serde_json::Map::new();
    out.insert("nodes".into(), Value::Array(nodes));
    for callback in &spec.callbacks {
        let key = callback.when.key();
        if out.contains_key(key) {
            return Err(bad(format!("two callbacks run {key}: the form holds one")));
        }
        out.insert(key.into(), node_value(&callback.node)?);
    }
    Ok(Value::Object(out))
}

fn node_value(node: &NodeSpec) -> Result<Value, Error> {
    let t = &node.task;
    let name = &node.name;
    if t.run_at.is_some() || t.unique_key.is_some() {
        return Err(bad(format!(
            "node {name:?}: a run_at or a unique key cannot be declared in this form"
        )));
    }
    let params: Value = if t.payload.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&t.payload)
            .map_err(|e| bad(format!("node {name:?}: its params are not JSON: {e}")))?
    };
    let millis = |d: Duration| Value::String(format!("{}ms", d.as_millis()));
    let mut m = serde_json::Map::new();
    m.insert("name".into(), Value::String(name.clone()));
    m.insert("handler".into(), Value::String(t.handler.clone()));
    m.insert("params".into(), params);
    m.insert("queue".into(), Value::String(t.queue.clone()));
    if t.priority != 0 {
        m.insert("priority".into(), t.priority.into());
    }
    m.insert("attempts".into(), t.max_attempts.into());
    for (key, d) in [("timeout", t.timeout), ("delay", t.delay), ("keep", t.keep)] {
        if let Some(d) = d {
            m.insert(key.into(), millis(d));
        }
    }
    if let Some(key) = &t.ordering_key {
        m.insert("ordering_key".into(), Value::String(key.clone()));
    }
    if !node.after.is_empty() {
        let after = node
            .after
            .iter()
            .map(|d| serde_json::json!({"node": d.node, "policy": d.policy.as_str()}))
            .collect();
        m.insert("after".into(), Value::Array(after));
    }
    if node.input != super::input::NodeInput::Params {
        m.insert("input".into(), Value::String(node.input.as_str().into()));
    }
    Ok(Value::Object(m))
}

fn bad(what: impl std::fmt::Display) -> Error {
    Error::InvalidConfig(format!("workflow declaration: {what}"))
}

fn duration(field: &str, text: &str) -> Result<Duration, Error> {
    humantime::parse_duration(text)
        .map_err(|e| bad(format!("{field} {text:?}: {e} (try 500ms, 30s, 5m, 1h)")))
}

impl Task {
    fn into_task(self, queue: Option<&str>) -> Result<NewTask, Error> {
        let params = self.params.unwrap_or(Value::Null);
        let mut task = NewTask::new(self.handler, params.to_string().into_bytes());
        if let Some(q) = self.queue.as_deref().or(queue) {
            task = task.queue(q);
        }
        if let Some(p) = self.priority {
            task = task.priority(p);
        }
        if let Some(n) = self.attempts {
            task = task.max_attempts(n);
        }
        if let Some(t) = &self.timeout {
            task = task.timeout(duration("timeout", t)?);
        }
        if let Some(d) = &self.delay {
            task = task.delay(duration("delay", d)?);
        }
        if let Some(k) = &self.keep {
            task = task.keep(duration("keep", k)?);
        }
        if let Some(key) = self.ordering_key {
            task = task.ordering_key(key);
        }
        Ok(task)
    }
}

impl Node {
    fn into_node(self, queue: Option<&str>, default_name: &str) -> Result<NodeSpec, Error> {
        let name = self.name.unwrap_or_else(|| default_name.to_string());
        let mut node = NodeSpec::new(name, self.task.into_task(queue)?);
        if let Some(input) = &self.input {
            node = node.with_input(input.parse()?);
        }
        for after in self.after {
            node = node.after(match after {
                After::Name(n) => Dependency::on(n),
                After::Edge { node, policy } => {
                    let d = Dependency::on(node);
                    match policy {
                        Some(p) => d.with_policy(p.parse()?),
                        None => d,
                    }
                }
            });
        }
        Ok(node)
    }
}

impl Declared {
    fn into_spec(self) -> Result<WorkflowSpec, Error> {
        let queue = self.queue.as_deref();
        let tasks = |list: Vec<Task>| -> Result<Vec<NewTask>, Error> {
            list.into_iter().map(|t| t.into_task(queue)).collect()
        };
        let shapes = [
            self.chain.is_some(),
            self.group.is_some(),
            self.chord.is_some(),
            self.nodes.is_some(),
        ];
        if shapes.iter().filter(|&&s| s).count() != 1 {
            return Err(bad("give exactly one of chain, group, chord or nodes"));
        }
        let mut spec = if let Some(chain) = self.chain {
            WorkflowSpec::chain(tasks(chain)?)
        } else if let Some(group) = self.group {
            WorkflowSpec::group(tasks(group)?)
        } else if let Some(chord) = self.chord {
            WorkflowSpec::chord(tasks(chord.header)?, chord.body.into_task(queue)?)
        } else {
            let nodes = self.nodes.unwrap_or_default();
            let mut spec = WorkflowSpec::default();
            for (i, n) in nodes.into_iter().enumerate() {
                if n.name.is_none() {
                    return Err(bad(format!("node {} has no name", i + 1)));
                }
                spec.nodes.push(n.into_node(queue, "")?);
            }
            spec
        };
        for (when, node) in [
            (WhenEnded::Success, self.on_success),
            (WhenEnded::Failure, self.on_failure),
            (WhenEnded::Complete, self.on_complete),
        ] {
            if let Some(node) = node {
                spec = spec.on(when, node.into_node(queue, when.key())?);
            }
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::workflow::{EdgePolicy, NodeInput};

    fn read(text: &str) -> Result<WorkflowSpec, Error> {
        from_json(text.as_bytes())
    }

    fn refused(text: &str) -> String {
        read(text).err().map(|e| e.to_string()).expect("refused")
    }

    #[test]
    fn every_shape_reads_into_its_builder_and_tasks_take_their_options() {
        let chain = read(
            r#"{"queue": "q", "chain": [
                {"handler": "a", "params": [1, 2], "priority": 3, "attempts": 5,
                 "timeout": "30s", "delay": "1m", "keep": "1h", "ordering_key": "k"},
                {"handler": "b", "queue": "other"}]}"#,
        )
        .unwrap();
        let g = chain.validate().unwrap();
        let a = &g.nodes()[0].task;
        assert_eq!((a.queue.as_str(), a.priority, a.max_attempts), ("q", 3, 5));
        assert_eq!(a.payload, b"[1,2]");
        assert_eq!(a.timeout, Some(Duration::from_secs(30)));
        assert_eq!(a.ordering_key.as_deref(), Some("k"));
        assert_eq!(g.nodes()[1].task.queue, "other");
        assert_eq!(g.nodes()[1].task.payload, b"null");
        assert_eq!(g.nodes()[1].input, NodeInput::Previous);
        let chord = read(
            r#"{"chord": {"header": [{"handler": "h"}, {"handler": "h"}],
                                       "body": {"handler": "sum"}},
                             "on_failure": {"handler": "alert"}}"#,
        )
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(chord.len(), 4);
        assert_eq!(chord.nodes()[3].name, "on_failure");
        assert_eq!(
            read(r#"{"group": []}"#).unwrap().validate().unwrap().len(),
            0
        );
    }

    #[test]
    fn nodes_take_dependencies_by_name_or_with_a_policy() {
        let g = read(
            r#"{"nodes": [
                {"name": "a", "handler": "a"},
                {"name": "b", "handler": "b", "after": ["a"], "input": "previous"},
                {"name": "c", "handler": "c", "after": [{"node": "a", "policy": "ignore"}, "b"],
                 "input": "results"}]}"#,
        )
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(
            g.dependencies(2),
            &[(0, EdgePolicy::Ignore), (1, EdgePolicy::Fail)]
        );
        assert_eq!(g.nodes()[2].input, NodeInput::Results);
    }

    #[test]
    fn mistakes_are_refused_with_what_to_fix() {
        assert!(refused(r#"{"chain": [{"handler": "a", "retries": 3}]}"#).contains("retries"));
        assert!(refused(r#"{"chain": [], "group": []}"#).contains("exactly one"));
        assert!(refused(r#"{}"#).contains("exactly one"));
        assert!(
            refused(r#"{"chain": [{"handler": "a", "timeout": "soon"}]}"#).contains("try 500ms")
        );
        assert!(refused(r#"{"nodes": [{"handler": "a"}]}"#).contains("no name"));
        assert!(
            refused(r#"{"nodes": [{"name": "a", "handler": "a", "retries": 3}]}"#)
                .contains("retries")
        );
        assert!(
            refused(r#"{"group": [], "on_success": {"handler": "a", "afterwards": 1}}"#)
                .contains("afterwards")
        );
        assert!(refused(r#"{"nodes": [{"name": "a", "handler": "a", "after": [{"node": "x", "policy": "maybe"}]}]}"#).contains("maybe"));
        assert!(
            refused(r#"{"nodes": [{"name": "a", "handler": "a", "input": "all"}]}"#)
                .contains("all")
        );
        assert!(refused("{\"chain\": [").contains("line 1"));
    }
}
