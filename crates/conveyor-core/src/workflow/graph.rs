//! A workflow's declaration ([`WorkflowSpec`]), its checks and its indexed
//! form ([`Graph`]).

use std::collections::HashMap;

use super::input::NodeInput;
use crate::{Error, NewTask};

/// The most nodes (callbacks included) one workflow may have: its
/// declaration is stored as one document and decoded whole by whoever
/// settles one of its nodes (once per process, then cached), and a chord's
/// body receives every header result as one params value.
pub const MAX_NODES: usize = 25_000;

/// What a node does when one of its dependencies fails (its task dead or
/// cancelled, or itself skipped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum EdgePolicy {
    /// The node runs only if the dependency succeeded; otherwise it is
    /// skipped (and so are the nodes that depend on it with `Fail`), and the
    /// workflow fails.
    #[default]
    Fail,
    /// The node runs once the dependency settles, whichever way, and the
    /// dependency's failure does not fail the workflow: the node handles it.
    Ignore,
    /// The node runs once the dependency settles, whichever way; the
    /// dependency's failure still fails the workflow when it ends.
    Continue,
}

impl EdgePolicy {
    /// The policy's name: `fail`, `ignore` or `continue`.
    pub fn as_str(self) -> &'static str {
        match self {
            EdgePolicy::Fail => "fail",
            EdgePolicy::Ignore => "ignore",
            EdgePolicy::Continue => "continue",
        }
    }
}

impl std::str::FromStr for EdgePolicy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "fail" => Ok(EdgePolicy::Fail),
            "ignore" => Ok(EdgePolicy::Ignore),
            "continue" => Ok(EdgePolicy::Continue),
            other => Err(Error::InvalidConfig(format!(
                "unknown edge policy {other:?}: expected fail, ignore or continue"
            ))),
        }
    }
}

/// One edge: the node waits for `node`, under `policy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The name of the node waited for.
    pub node: String,
    /// What happens when it fails.
    pub policy: EdgePolicy,
}

impl Dependency {
    /// A dependency on `node` with the default policy (`fail`).
    pub fn on(node: impl Into<String>) -> Dependency {
        Dependency {
            node: node.into(),
            policy: EdgePolicy::Fail,
        }
    }

    /// The same dependency under `policy`.
    pub fn with_policy(mut self, policy: EdgePolicy) -> Dependency {
        self.policy = policy;
        self
    }
}

/// A node: a name unique in its workflow, the task it enqueues when ready,
/// what it waits for (nothing: it is enqueued with the workflow) and what it
/// receives from those nodes.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The node's name.
    pub name: String,
    /// The task enqueued when the node becomes ready.
    pub task: NewTask,
    /// The nodes it waits for.
    pub after: Vec<Dependency>,
    /// What its task receives from them besides its params.
    pub input: NodeInput,
}

impl NodeSpec {
    /// A node named `name` running `task`, waiting for nothing.
    pub fn new(name: impl Into<String>, task: NewTask) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            task,
            after: Vec::new(),
            input: NodeInput::Params,
        }
    }

    /// The same node, receiving its dependencies' results as `input` says.
    pub fn with_input(mut self, input: NodeInput) -> NodeSpec {
        self.input = input;
        self
    }

    /// The same node, also waiting for `dependency`.
    pub fn after(mut self, dependency: Dependency) -> NodeSpec {
        self.after.push(dependency);
        self
    }
}

/// When a callback runs: after the workflow's other nodes have all settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WhenEnded {
    /// When the workflow succeeded.
    Success,
    /// When it failed.
    Failure,
    /// Either way.
    Complete,
}

impl WhenEnded {
    /// The callback's key in a declaration and its name in every view:
    /// `on_success`, `on_failure`, `on_complete`.
    pub fn key(self) -> &'static str {
        match self {
            WhenEnded::Success => "on_success",
            WhenEnded::Failure => "on_failure",
            WhenEnded::Complete => "on_complete",
        }
    }
}

/// A callback: a node that runs once the rest of the workflow has ended, if
/// it ended as `when` says (else it is skipped).
#[derive(Debug, Clone)]
pub struct Callback {
    /// When it runs.
    pub when: WhenEnded,
    /// The node (its `after` must be empty).
    pub node: NodeSpec,
}

/// A workflow as declared: its nodes and callbacks.
#[derive(Debug, Clone, Default)]
pub struct WorkflowSpec {
    /// The nodes.
    pub nodes: Vec<NodeSpec>,
    /// The callbacks.
    pub callbacks: Vec<Callback>,
}

impl WorkflowSpec {
    /// Tasks one after another: each step waits for the one before (under
    /// `fail`) and receives its result as its first argument
    /// ([`NodeInput::Previous`]). Steps are named `step-1`, `step-2`, …
    pub fn chain(tasks: impl IntoIterator<Item = NewTask>) -> WorkflowSpec {
        let mut nodes: Vec<NodeSpec> = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            let mut node = NodeSpec::new(format!("step-{}", i + 1), task);
            if i > 0 {
                node = node
                    .after(Dependency::on(format!("step-{i}")))
                    .with_input(NodeInput::Previous);
            }
            nodes.push(node);
        }
        WorkflowSpec {
            nodes,
            callbacks: Vec::new(),
        }
    }

    /// Tasks side by side, none waiting for another: `task-1`, `task-2`, …
    pub fn group(tasks: impl IntoIterator<Item = NewTask>) -> WorkflowSpec {
        let nodes = tasks
            .into_iter()
            .enumerate()
            .map(|(i, task)| NodeSpec::new(format!("task-{}", i + 1), task))
            .collect();
        WorkflowSpec {
            nodes,
            callbacks: Vec::new(),
        }
    }

    /// A group (`header-1`, `header-2`, …) and a node, `body`, that waits for
    /// all of it (under `fail`) and receives the list of its results, in the
    /// header's order, as its first argument ([`NodeInput::Results`]). An
    /// empty header leaves `body` nothing to wait for: it is enqueued at once,
    /// with an empty list.
    pub fn chord(header: impl IntoIterator<Item = NewTask>, body: NewTask) -> WorkflowSpec {
        let mut nodes: Vec<NodeSpec> = header
            .into_iter()
            .enumerate()
            .map(|(i, task)| NodeSpec::new(format!("header-{}", i + 1), task))
            .collect();
        let mut last = NodeSpec::new("body", body).with_input(NodeInput::Results);
        for node in &nodes {
            last = last.after(Dependency::on(node.name.clone()));
        }
        nodes.push(last);
        WorkflowSpec {
            nodes,
            callbacks: Vec::new(),
        }
    }

    /// The same workflow with a callback running `node` when it ends as
    /// `when` says.
    pub fn on(mut self, when: WhenEnded, node: NodeSpec) -> WorkflowSpec {
        self.callbacks.push(Callback { when, node });
        self
    }

    /// Checks the declaration and indexes it: every name non-empty and
    /// unique (callbacks' too), every dependency naming another node of the
    /// body at most once, no cycle, callbacks waiting for nothing and taking
    /// their params alone, a node taking the previous result waiting for
    /// exactly one, at most
    /// [`MAX_NODES`] nodes, and every task valid ([`NewTask::validate`])
    /// without a unique key (a node is its own task).
    /// The error names the node and what is wrong.
    pub fn validate(self) -> Result<Graph, Error> {
        let total = self.nodes.len() + self.callbacks.len();
        if total > MAX_NODES {
            return Err(invalid(format!(
                "a workflow has at most {MAX_NODES} nodes, this one {total}"
            )));
        }
        let body = self.nodes.len();
        let mut index: HashMap<String, usize> = HashMap::with_capacity(total);
        let names = self
            .nodes
            .iter()
            .map(|n| &n.name)
            .chain(self.callbacks.iter().map(|c| &c.node.name));
        for (i, name) in names.enumerate() {
            crate::check_name("a workflow node's name", name).map_err(invalid)?;
            if index.insert(name.clone(), i).is_some() {
                return Err(invalid(format!("two nodes are named {name:?}")));
            }
        }
        let mut deps: Vec<Vec<(usize, EdgePolicy)>> = Vec::with_capacity(body);
        for node in &self.nodes {
            let mut mine: Vec<(usize, EdgePolicy)> = Vec::with_capacity(node.after.len());
            for dep in &node.after {
                let at = match index.get(&dep.node) {
                    Some(&at) if at < body => at,
                    Some(_) => {
                        return Err(invalid(format!(
                            "node {:?} waits for {:?}, a callback: callbacks run after every \
                             other node",
                            node.name, dep.node
                        )))
                    }
                    None => {
                        return Err(invalid(format!(
                            "node {:?} waits for {:?}, which is not a node of the workflow",
                            node.name, dep.node
                        )))
                    }
                };
                if mine.iter().any(|&(d, _)| d == at) {
                    return Err(invalid(format!(
                        "node {:?} waits for {:?} twice",
                        node.name, dep.node
                    )));
                }
                mine.push((at, dep.policy));
            }
            if node.input == NodeInput::Previous && mine.len() != 1 {
                return Err(invalid(format!(
                    "node {:?} takes the previous result, so it must wait for exactly one \
                     node, not {}",
                    node.name,
                    mine.len()
                )));
            }
            deps.push(mine);
        }
        for callback in &self.callbacks {
            if callback.node.input != NodeInput::Params {
                return Err(invalid(format!(
                    "callback {:?} waits for no node, so it has no results to take",
                    callback.node.name
                )));
            }
            if !callback.node.after.is_empty() {
                return Err(invalid(format!(
                    "callback {:?} waits for other nodes: a callback runs once the whole \
                     workflow has ended",
                    callback.node.name
                )));
            }
        }
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); body];
        let mut dependent_policies: Vec<Vec<EdgePolicy>> = vec![Vec::new(); body];
        for (node, mine) in deps.iter().enumerate() {
            for &(dep, policy) in mine {
                dependents[dep].push(node);
                dependent_policies[dep].push(policy);
            }
        }
        if let Some(node) = first_in_cycle(&deps, &dependents) {
            return Err(invalid(format!(
                "node {:?} is in a cycle: it waits, through its dependencies, for itself",
                self.nodes[node].name
            )));
        }
        let mut nodes = self.nodes;
        let mut whens = Vec::with_capacity(self.callbacks.len());
        for callback in self.callbacks {
            whens.push(callback.when);
            nodes.push(callback.node);
        }
        for node in &nodes {
            node.task
                .validate()
                .map_err(|e| invalid(format!("node {:?}: {e}", node.name)))?;
            if node.task.unique_key.is_some() {
                return Err(invalid(format!(
                    "node {:?} has a unique key: a workflow's node is its own task",
                    node.name
                )));
            }
        }
        Ok(Graph {
            nodes,
            body,
            deps,
            dependents,
            dependent_policies,
            whens,
            index,
            expanded: HashMap::new(),
        })
    }
}

fn invalid(message: String) -> Error {
    Error::InvalidConfig(message)
}

/// A node on a cycle, if there is one (Kahn's algorithm: what cannot be
/// ordered is on a cycle or waits for one; the first of those that is on
/// one is named).
fn first_in_cycle(deps: &[Vec<(usize, EdgePolicy)>], dependents: &[Vec<usize>]) -> Option<usize> {
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut ready: Vec<usize> = (0..deps.len()).filter(|&n| waiting[n] == 0).collect();
    let mut ordered = 0;
    while let Some(node) = ready.pop() {
        ordered += 1;
        for &next in &dependents[node] {
            waiting[next] -= 1;
            if waiting[next] == 0 {
                ready.push(next);
            }
        }
    }
    if ordered == deps.len() {
        return None;
    }
    // Follow unordered dependencies from an unordered node: a path through
    // them must come back to a node it already met, which is on the cycle.
    let mut node = (0..deps.len()).find(|&n| waiting[n] > 0)?;
    let mut seen = vec![false; deps.len()];
    while !seen[node] {
        seen[node] = true;
        node = deps[node]
            .iter()
            .map(|&(d, _)| d)
            .find(|&d| waiting[d] > 0)?;
    }
    Some(node)
}

/// A checked workflow, indexed: nodes by position (the body's first, then
/// the callbacks'), each one's dependencies and dependents.
#[derive(Debug, Clone)]
pub struct Graph {
    nodes: Vec<NodeSpec>,
    /// How many of `nodes` are the body (the rest are callbacks).
    body: usize,
    deps: Vec<Vec<(usize, EdgePolicy)>>,
    dependents: Vec<Vec<usize>>,
    /// The policy of each edge in `dependents`, at the same position.
    dependent_policies: Vec<Vec<EdgePolicy>>,
    whens: Vec<WhenEnded>,
    index: HashMap<String, usize>,
    /// The nodes that expanded, with what they now wait for.
    expanded: HashMap<usize, Expanded>,
}

/// What an expanded node passes on to its dependents: the result of its
/// expansion's one last node (a chain's last step, a chord's body), or the
/// list of its last nodes' results (a group's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpansionOutput {
    /// The one last node's result (`null` when there is none).
    One,
    /// The last nodes' results as one list, in declared order.
    List,
}

impl ExpansionOutput {
    /// The mode's name: `one` or `list`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExpansionOutput::One => "one",
            ExpansionOutput::List => "list",
        }
    }
}

impl std::str::FromStr for ExpansionOutput {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "one" => Ok(ExpansionOutput::One),
            "list" => Ok(ExpansionOutput::List),
            other => Err(Error::InvalidConfig(format!(
                "unknown expansion output {other:?}: expected one or list"
            ))),
        }
    }
}

/// Nodes a running node adds to its own workflow (its task's result asked
/// for them, see [`expansion_of`](super::expansion_of)): they join the
/// body, named `<node>/<name>`, and the node settles when they have,
/// passing on their result as `output` says.
#[derive(Debug, Clone)]
pub struct Expansion {
    /// The name of the node that expands.
    pub node: String,
    /// The nodes added (no callbacks), named within the expansion.
    pub spec: WorkflowSpec,
    /// What the node passes on.
    pub output: ExpansionOutput,
}

/// An expanded node: its expansion's last nodes, each waited for under
/// `fail`, and what it passes on.
#[derive(Debug, Clone)]
struct Expanded {
    sinks: Vec<(usize, EdgePolicy)>,
    output: ExpansionOutput,
}

impl Graph {
    /// Every node: the declared body's, the callbacks', then those that
    /// expansions added.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    /// How many nodes there are, callbacks included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there is no node at all.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// How many nodes are the body: every node but the callbacks (those
    /// declared at `0..`, and those expansions added after the callbacks).
    pub fn body(&self) -> usize {
        self.nodes.len() - self.whens.len()
    }

    /// The nodes of the body, in position order.
    pub fn body_nodes(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.body).chain(self.callbacks().end..self.nodes.len())
    }

    /// The callbacks' positions.
    pub fn callbacks(&self) -> std::ops::Range<usize> {
        self.body..self.body + self.whens.len()
    }

    /// Whether node `node` is a callback.
    pub fn is_callback(&self, node: usize) -> bool {
        self.callbacks().contains(&node)
    }

    /// The position of the node named `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// What node `node` of the body waits for (none for a callback).
    pub fn dependencies(&self, node: usize) -> &[(usize, EdgePolicy)] {
        self.deps.get(node).map_or(&[], Vec::as_slice)
    }

    /// The nodes of the body that wait for `node`.
    pub fn dependents(&self, node: usize) -> &[usize] {
        self.dependents.get(node).map_or(&[], Vec::as_slice)
    }

    /// The policy of the edge from the `k`-th of [`Graph::dependents`]
    /// of `node` to `node` (O(1), however many dependencies that
    /// dependent has: a chord's body has one per header).
    pub fn dependent_policy(&self, node: usize, k: usize) -> EdgePolicy {
        self.dependent_policies
            .get(node)
            .and_then(|p| p.get(k).copied())
            .unwrap_or_default()
    }

    /// When callback `node` runs (`None` for a node of the body).
    pub fn when(&self, node: usize) -> Option<WhenEnded> {
        node.checked_sub(self.body)
            .and_then(|i| self.whens.get(i).copied())
    }

    /// How many expansions the graph holds.
    pub fn expansions(&self) -> usize {
        self.expanded.len()
    }

    /// Whether node `node` expanded: its task ran, and it now waits for
    /// the nodes it added.
    pub fn is_expanded(&self, node: usize) -> bool {
        self.expanded.contains_key(&node)
    }

    /// What node `node` waits for before it settles: its dependencies, or,
    /// once it expanded, the last nodes of its expansion (under `fail`).
    pub fn waits_for(&self, node: usize) -> &[(usize, EdgePolicy)] {
        match self.expanded.get(&node) {
            Some(e) => &e.sinks,
            None => self.dependencies(node),
        }
    }

    /// What expanded node `node` passes on, and the nodes it comes from
    /// (`None` for a node that did not expand).
    pub fn expansion_output(&self, node: usize) -> Option<(ExpansionOutput, Vec<usize>)> {
        self.expanded
            .get(&node)
            .map(|e| (e.output, e.sinks.iter().map(|&(s, _)| s).collect()))
    }

    /// The nodes whose task outputs node `node`'s input is made of: each
    /// dependency, and for one that expanded, the last nodes of its
    /// expansion (theirs too, when they expanded), in the order
    /// [`composed_task`](super::composed_task) takes them.
    pub fn reads(&self, node: usize) -> Vec<usize> {
        let mut out = Vec::new();
        for &(dep, _) in self.dependencies(node) {
            self.push_reads(dep, &mut out);
        }
        out
    }

    fn push_reads(&self, node: usize, out: &mut Vec<usize>) {
        out.push(node);
        if let Some(e) = self.expanded.get(&node) {
            for &(sink, _) in &e.sinks {
                self.push_reads(sink, out);
            }
        }
    }

    /// Adds `expansion`'s nodes after every node there is, and makes
    /// its node wait for their last ones. Returns the positions added.
    /// Refuses (changing nothing) a node that is a callback or expanded
    /// already, an expansion with callbacks, one that does not pass
    /// [`WorkflowSpec::validate`], a name taken, and a workflow that would
    /// outgrow [`MAX_NODES`].
    pub fn expand(&mut self, expansion: Expansion) -> Result<std::ops::Range<usize>, Error> {
        let name = expansion.node;
        let Some(node) = self.position(&name) else {
            return Err(invalid(format!(
                "the workflow has no node {name:?} to expand"
            )));
        };
        let refuse = |why: String| invalid(format!("node {name:?} cannot expand: {why}"));
        if self.is_callback(node) {
            return Err(refuse(
                "it is a callback, and callbacks run once the body has ended".into(),
            ));
        }
        if self.is_expanded(node) {
            return Err(refuse("it expanded already".into()));
        }
        if !expansion.spec.callbacks.is_empty() {
            return Err(refuse(
                "an expansion has no callbacks (the workflow's own run at its end)".into(),
            ));
        }
        let total = self.len() + expansion.spec.nodes.len();
        if total > MAX_NODES {
            return Err(refuse(format!(
                "a workflow has at most {MAX_NODES} nodes, and this would make {total}"
            )));
        }
        let sub = expansion
            .spec
            .validate()
            .map_err(|e| refuse(e.to_string()))?;
        let first = self.len();
        let renamed = |n: &str| format!("{name}/{n}");
        for added in &sub.nodes {
            let full = renamed(&added.name);
            crate::check_name("a workflow node's name", &full).map_err(&refuse)?;
            if self.index.contains_key(&full) {
                return Err(refuse(format!(
                    "the workflow has a node named {full:?} already"
                )));
            }
        }
        let Graph {
            nodes,
            deps,
            dependents,
            dependent_policies,
            ..
        } = sub;
        self.deps.resize(first, Vec::new());
        self.dependents.resize(first, Vec::new());
        self.dependent_policies.resize(first, Vec::new());
        let mut sinks = Vec::new();
        for (i, mut added) in nodes.into_iter().enumerate() {
            added.name = renamed(&added.name);
            for dep in &mut added.after {
                dep.node = renamed(&dep.node);
            }
            self.index.insert(added.name.clone(), first + i);
            self.nodes.push(added);
            self.deps
                .push(deps[i].iter().map(|&(d, p)| (first + d, p)).collect());
            let mut theirs: Vec<usize> = dependents[i].iter().map(|&d| first + d).collect();
            let mut policies = dependent_policies[i].clone();
            if theirs.is_empty() {
                sinks.push((first + i, EdgePolicy::Fail));
                theirs.push(node);
                policies.push(EdgePolicy::Fail);
            }
            self.dependents.push(theirs);
            self.dependent_policies.push(policies);
        }
        self.expanded.insert(
            node,
            Expanded {
                sinks,
                output: expansion.output,
            },
        );
        Ok(first..self.len())
    }
}
