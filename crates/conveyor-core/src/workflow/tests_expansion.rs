//! Dynamic expansion: a node's task adds nodes to its workflow, and the
//! node settles with them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};

use super::*;
use crate::NewTask;

/// A workflow's graph and progress in memory, with each node's output,
/// moved as a store moves them.
struct Run {
    graph: Graph,
    progress: Progress,
    outputs: Vec<Option<Vec<u8>>>,
    enqueued: Vec<usize>,
    ended: Option<WorkflowOutcome>,
}

impl Run {
    fn new(spec: WorkflowSpec) -> Run {
        let graph = spec.validate().unwrap();
        let (progress, step) = Progress::start(&graph);
        let mut run = Run {
            outputs: vec![None; graph.len()],
            graph,
            progress,
            enqueued: Vec::new(),
            ended: None,
        };
        run.apply(step);
        run
    }

    fn at(&self, name: &str) -> usize {
        self.graph.position(name).unwrap()
    }

    fn apply(&mut self, step: Step) {
        self.enqueued.extend(step.enqueue);
        if step.ended.is_some() {
            self.ended = step.ended;
        }
    }

    /// Node `name`'s task ends as `result` with `output`, as a store takes
    /// it in.
    fn end(&mut self, name: &str, result: NodeResult, output: Value) -> Option<String> {
        let node = self.at(name);
        let bytes = output.to_string().into_bytes();
        match NodeEnd::of(&self.graph, node, result, Some(&bytes)) {
            NodeEnd::Settle(result) => {
                if self.progress.state(node) == Some(NodeState::Running) {
                    self.outputs[node] = Some(bytes);
                }
                let step = self.progress.settle(&self.graph, node, result);
                self.apply(step);
                None
            }
            NodeEnd::Expand {
                graph,
                added,
                stored,
            } => {
                assert!(stored::decode_expansion(&stored).is_ok());
                self.graph = *graph;
                self.outputs.resize(self.graph.len(), None);
                let step = self.progress.expand(&self.graph, node, added);
                self.apply(step);
                None
            }
            NodeEnd::Refused(why) => {
                let step = self.progress.settle(&self.graph, node, NodeResult::Failed);
                self.apply(step);
                Some(why)
            }
        }
    }

    fn state(&self, name: &str) -> NodeState {
        self.progress.state(self.at(name)).unwrap()
    }

    /// The params node `name`'s task would be enqueued with.
    fn input(&self, name: &str) -> Value {
        let node = self.at(name);
        let outputs: Vec<NodeOutput> = self
            .graph
            .reads(node)
            .into_iter()
            .map(|n| {
                (
                    self.progress.state(n).unwrap(),
                    self.outputs[n].clone(),
                    None,
                )
            })
            .collect();
        let task = composed_task(&self.graph, node, &outputs).unwrap();
        serde_json::from_slice(&task.payload).unwrap()
    }
}

fn task(handler: &str) -> NewTask {
    NewTask::new(handler, b"[]".to_vec())
}

fn expand(declaration: Value) -> Value {
    json!({ "$expand": declaration })
}

fn fan_out(n: usize) -> Value {
    let tasks: Vec<Value> = (0..n)
        .map(|i| json!({"handler": "fetch", "params": [i]}))
        .collect();
    expand(json!({ "group": tasks }))
}

#[test]
fn a_node_fans_out_and_its_dependent_gets_the_list_once_all_settle() {
    let mut run = Run::new(WorkflowSpec::chain([task("list"), task("sum")]));
    assert!(run
        .end("step-1", NodeResult::Succeeded, fan_out(3))
        .is_none());
    assert_eq!(run.graph.len(), 5);
    assert_eq!(run.state("step-1"), NodeState::Running);
    assert!(run.graph.is_expanded(run.at("step-1")));
    let added: Vec<usize> = (1..=3)
        .map(|i| run.at(&format!("step-1/task-{i}")))
        .collect();
    assert_eq!(&run.enqueued[1..], &added[..]);
    assert_eq!(run.graph.nodes()[added[0]].task.queue, "default");
    run.end("step-1/task-2", NodeResult::Succeeded, json!(20));
    run.end("step-1/task-1", NodeResult::Succeeded, json!(10));
    assert_eq!(run.state("step-1"), NodeState::Running);
    assert!(!run.enqueued.contains(&run.at("step-2")));
    run.end("step-1/task-3", NodeResult::Succeeded, json!(30));
    assert_eq!(run.state("step-1"), NodeState::Succeeded);
    assert_eq!(run.enqueued.last(), Some(&run.at("step-2")));
    assert_eq!(run.input("step-2"), json!([[10, 20, 30]]));
    run.end("step-2", NodeResult::Succeeded, json!(60));
    assert_eq!(run.ended, Some(WorkflowOutcome::Succeeded));
}

#[test]
fn an_end_heard_twice_expands_once_and_settles_nothing() {
    let mut run = Run::new(WorkflowSpec::chain([task("list"), task("sum")]));
    run.end("step-1", NodeResult::Succeeded, fan_out(2));
    let (len, enqueued) = (run.graph.len(), run.enqueued.len());
    run.end("step-1", NodeResult::Succeeded, fan_out(2));
    run.end("step-1", NodeResult::Succeeded, json!(1));
    assert_eq!((run.graph.len(), run.enqueued.len()), (len, enqueued));
    assert_eq!(run.state("step-1"), NodeState::Running);
}

#[test]
fn a_failure_in_the_expansion_fails_the_node_and_skips_its_dependents() {
    let mut run = Run::new(WorkflowSpec::chain([task("list"), task("sum")]));
    run.end("step-1", NodeResult::Succeeded, fan_out(2));
    run.end("step-1/task-1", NodeResult::Failed, json!(null));
    assert_eq!(run.state("step-1"), NodeState::Failed);
    assert_eq!(run.state("step-2"), NodeState::Skipped);
    assert_eq!(run.ended, None, "task-2 still runs");
    run.end("step-1/task-2", NodeResult::Succeeded, json!(2));
    assert_eq!(run.ended, Some(WorkflowOutcome::Failed));

    // The retry reruns the failed task alone; the node settles with it.
    let (again, step) = ledger::retry_failed(&run.graph, &mut run.progress)
        .unwrap()
        .unwrap();
    let again = names(&run.graph, &again);
    assert_eq!(again, ["step-1", "step-2", "step-1/task-1"]);
    assert_eq!(names(&run.graph, &step.enqueue), ["step-1/task-1"]);
    run.ended = None;
    run.apply(step);
    assert_eq!(run.state("step-1"), NodeState::Running);
    run.end("step-1/task-1", NodeResult::Succeeded, json!(1));
    assert_eq!(run.state("step-1"), NodeState::Succeeded);
    assert_eq!(run.input("step-2"), json!([[1, 2]]));
    run.end("step-2", NodeResult::Succeeded, json!(3));
    assert_eq!(run.ended, Some(WorkflowOutcome::Succeeded));
}

fn names(graph: &Graph, nodes: &[usize]) -> Vec<String> {
    nodes
        .iter()
        .map(|&n| graph.nodes()[n].name.clone())
        .collect()
}

#[test]
fn an_empty_expansion_settles_the_node_at_once() {
    let mut run = Run::new(WorkflowSpec::chain([task("list"), task("sum")]));
    run.end("step-1", NodeResult::Succeeded, fan_out(0));
    assert_eq!(run.state("step-1"), NodeState::Succeeded);
    assert_eq!(run.input("step-2"), json!([[]]));
}

#[test]
fn a_chain_or_chord_passes_its_last_result_and_expansions_nest() {
    let mut run = Run::new(WorkflowSpec::chain([task("a"), task("b")]));
    let chord = expand(json!({"chord": {
        "header": [{"handler": "h"}, {"handler": "h"}],
        "body": {"handler": "sum"}}}));
    run.end("step-1", NodeResult::Succeeded, chord);
    run.end("step-1/header-1", NodeResult::Succeeded, json!(1));
    // A header expands in turn, into a chain.
    let chain = expand(json!({"chain": [{"handler": "x"}, {"handler": "y"}]}));
    run.end("step-1/header-2", NodeResult::Succeeded, chain);
    run.end("step-1/header-2/step-1", NodeResult::Succeeded, json!(5));
    assert_eq!(run.input("step-1/header-2/step-2"), json!([5]));
    run.end("step-1/header-2/step-2", NodeResult::Succeeded, json!(6));
    assert_eq!(run.state("step-1/header-2"), NodeState::Succeeded);
    assert_eq!(run.input("step-1/body"), json!([[1, 6]]));
    run.end("step-1/body", NodeResult::Succeeded, json!(7));
    assert_eq!(run.input("step-2"), json!([7]));
}

#[test]
fn the_stored_expansions_read_back_into_the_same_graph() {
    let spec = WorkflowSpec::chain([task("a"), task("b")])
        .on(WhenEnded::Failure, NodeSpec::new("alarm", task("alarm")));
    let base = stored::encode(&spec).unwrap();
    let mut run = Run::new(spec);
    let mut kept = Vec::new();
    for (name, output) in [
        ("step-1", fan_out(2)),
        (
            "step-1/task-2",
            expand(json!({"chain": [{"handler": "x"}]})),
        ),
    ] {
        let node = run.at(name);
        let bytes = output.to_string().into_bytes();
        let NodeEnd::Expand { stored, .. } =
            NodeEnd::of(&run.graph, node, NodeResult::Succeeded, Some(&bytes))
        else {
            panic!("{name} expands");
        };
        kept.push(stored);
        run.end(name, NodeResult::Succeeded, output);
    }
    let back = stored::decode_graph(&base, kept.iter().map(Vec::as_slice)).unwrap();
    assert_eq!(format!("{back:?}").len(), format!("{:?}", run.graph).len());
    assert_eq!(
        names(&back, &(0..back.len()).collect::<Vec<_>>()),
        [
            "step-1",
            "step-2",
            "alarm",
            "step-1/task-1",
            "step-1/task-2",
            "step-1/task-2/step-1"
        ]
    );
    assert!(back.is_callback(back.position("alarm").unwrap()));
    assert_eq!(back.body(), 5);
    // Read back from the stored states, the progress decides alike.
    let states = run.progress.states();
    let again = Progress::from_states(&back, states).unwrap();
    assert_eq!(again.counts(), run.progress.counts());
}

#[test]
fn expansions_that_cannot_be_made_fail_the_node_with_why() {
    let spec = WorkflowSpec {
        nodes: vec![
            NodeSpec::new("a", task("a")),
            NodeSpec::new("a/task-1", task("x")),
        ],
        callbacks: vec![],
    }
    .on(WhenEnded::Complete, NodeSpec::new("cb", task("cb")));
    for (node, output, why) in [
        (
            "a",
            json!({"$expand": {"group": [{"nope": 1}]}}),
            "unknown field",
        ),
        ("a", json!({"$expand": 3}), "expansion"),
        ("a", json!({"$expand": {"group": []}, "more": 1}), "besides"),
        (
            "a",
            json!({"$expand": {"group": [], "on_success": {"handler": "s"}}}),
            "no callbacks",
        ),
        ("a", fan_out(1), "named \"a/task-1\" already"),
        (
            "a",
            json!({"$expand": {"nodes": [{"name": "x", "handler": "h", "after": ["y"]}]}}),
            "not a node",
        ),
        ("a", fan_out(MAX_NODES), "at most"),
    ] {
        let mut run = Run::new(spec.clone());
        let refused = run.end(node, NodeResult::Succeeded, output).unwrap();
        assert!(refused.contains(why), "{refused}");
        assert_eq!(run.state(node), NodeState::Failed);
    }
    // A callback runs after the body: it cannot add to it.
    let mut run = Run::new(spec);
    run.end("a", NodeResult::Succeeded, json!(1));
    run.end("a/task-1", NodeResult::Succeeded, json!(1));
    let refused = run.end("cb", NodeResult::Succeeded, fan_out(1)).unwrap();
    assert!(refused.contains("callback"), "{refused}");
    // Results that merely look alike are results.
    assert!(!is_expansion(br#"{"x": 1, "$expand": 2}"#));
    assert!(!is_expansion(br#"["$expand"]"#));
    assert!(is_expansion(br#"  { "$expand": {}}"#));
}

#[test]
fn a_cancel_reaches_the_added_nodes_and_the_stuck_check_knows_an_expanded_node() {
    let mut run = Run::new(WorkflowSpec::chain([task("list"), task("sum")]));
    run.end("step-1", NodeResult::Succeeded, fan_out(2));
    let records: Vec<NodeRecord> = (0..run.graph.len())
        .map(|n| NodeRecord::of(&run.graph, n, run.progress.states()[n], None))
        .collect();
    assert!(records[0].expanded.is_some());
    let w = WorkflowRecord {
        id: WorkflowId(1),
        state: WorkflowState::Running,
        nodes: records,
        created_at: crate::clock::Timestamp(0),
        ended_at: None,
    };
    // The added tasks run (their tasks are seen running): nothing stuck.
    let running = |_| Some((crate::TaskState::Running, None));
    let stuck = stuck_nodes(&w, crate::clock::Timestamp(0), running);
    assert_eq!(
        stuck.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["step-1/task-1", "step-1/task-2"]
    );
    let (cancelled, _) = ledger::cancel_all(&run.graph, &mut run.progress).unwrap();
    assert_eq!(
        names(&run.graph, &cancelled),
        ["step-1", "step-2", "step-1/task-1", "step-1/task-2"]
    );
}

#[test]
fn a_rust_handler_s_expansion_reads_back_as_the_spec_it_was_built_from() {
    let tasks = (1..=3).map(|i| {
        NewTask::new("fetch", format!("[{i}]").into_bytes())
            .queue("net")
            .priority(2)
            .max_attempts(4)
            .timeout(std::time::Duration::from_millis(1500))
            .ordering_key("k")
    });
    let spec = WorkflowSpec::chord(tasks, NewTask::new("sum", b"[]".to_vec()));
    let result = crate::workflow::expand(&spec, ExpansionOutput::One).unwrap();
    let mut run = Run::new(WorkflowSpec::chain([task("list"), task("next")]));
    assert!(run.end("step-1", NodeResult::Succeeded, result).is_none());
    let added = run.at("step-1/header-2");
    let made = &run.graph.nodes()[added].task;
    let declared = &spec.nodes[1].task;
    assert_eq!(format!("{made:?}"), format!("{declared:?}"));
    assert_eq!(
        run.graph.dependencies(run.at("step-1/body")).len(),
        3,
        "the body waits for the header"
    );
    assert_eq!(
        run.graph.expansion_output(run.at("step-1")).unwrap().0,
        ExpansionOutput::One
    );
    // What the form cannot say is refused, not dropped.
    let unique = WorkflowSpec::group([task("a").unique_key("u")]);
    assert!(crate::workflow::expand(&unique, ExpansionOutput::List).is_err());
    let raw = WorkflowSpec::group([NewTask::new("a", vec![0xff])]);
    assert!(crate::workflow::expand(&raw, ExpansionOutput::List).is_err());
    let called_back =
        WorkflowSpec::group([task("a")]).on(WhenEnded::Success, NodeSpec::new("cb", task("cb")));
    assert!(crate::workflow::expand(&called_back, ExpansionOutput::List).is_err());
}
