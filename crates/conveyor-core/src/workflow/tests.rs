//! The workflow graph's checks and its progress decisions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;

use super::*;
use crate::{Error, NewTask};

fn task(n: usize) -> NewTask {
    NewTask::new("h", format!("[{n}]").into_bytes())
}

fn node(name: &str) -> NodeSpec {
    NodeSpec::new(name, task(0))
}

fn names(graph: &Graph, nodes: &[usize]) -> Vec<String> {
    nodes
        .iter()
        .map(|&n| graph.nodes()[n].name.clone())
        .collect()
}

fn at(graph: &Graph, name: &str) -> usize {
    graph.position(name).unwrap()
}

fn refused(spec: WorkflowSpec) -> String {
    match spec.validate() {
        Err(Error::InvalidConfig(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn the_builders_make_a_path_no_edges_and_a_fan_in() {
    let chain = WorkflowSpec::chain((0..3).map(task)).validate().unwrap();
    assert_eq!(chain.dependencies(at(&chain, "step-1")), &[]);
    assert_eq!(
        chain.dependencies(at(&chain, "step-3")),
        &[(at(&chain, "step-2"), EdgePolicy::Fail)]
    );
    let group = WorkflowSpec::group((0..3).map(task)).validate().unwrap();
    assert!((0..3).all(|n| group.dependencies(n).is_empty()));
    let chord = WorkflowSpec::chord((0..3).map(task), task(9))
        .validate()
        .unwrap();
    let body = at(&chord, "body");
    assert_eq!(chord.dependencies(body).len(), 3);
    assert_eq!(chord.dependents(at(&chord, "header-2")), &[body]);
}

#[test]
fn declarations_that_could_not_run_are_refused_with_the_node_named() {
    let twice = WorkflowSpec {
        nodes: vec![node("a"), node("a")],
        callbacks: vec![],
    };
    assert!(refused(twice).contains("two nodes are named \"a\""));
    let unknown = WorkflowSpec {
        nodes: vec![node("a").after(Dependency::on("ghost"))],
        callbacks: vec![],
    };
    assert!(refused(unknown).contains("\"ghost\", which is not a node"));
    let doubled = WorkflowSpec {
        nodes: vec![
            node("a"),
            node("b")
                .after(Dependency::on("a"))
                .after(Dependency::on("a").with_policy(EdgePolicy::Ignore)),
        ],
        callbacks: vec![],
    };
    assert!(refused(doubled).contains("waits for \"a\" twice"));
    // d waits for the cycle a -> b -> c -> a: a node on the cycle is named,
    // not d.
    let cycle = WorkflowSpec {
        nodes: vec![
            node("d").after(Dependency::on("a")),
            node("a").after(Dependency::on("c")),
            node("b").after(Dependency::on("a")),
            node("c").after(Dependency::on("b")),
        ],
        callbacks: vec![],
    };
    let message = refused(cycle);
    assert!(message.contains("in a cycle"), "{message}");
    assert!(!message.contains("\"d\""), "{message}");
    let own = WorkflowSpec {
        nodes: vec![node("a").after(Dependency::on("a"))],
        callbacks: vec![],
    };
    assert!(refused(own).contains("cycle"));
    let callback_waits = WorkflowSpec::group([task(1)]).on(
        WhenEnded::Complete,
        node("cb").after(Dependency::on("task-1")),
    );
    assert!(refused(callback_waits).contains("callback \"cb\" waits"));
    let waits_for_callback = WorkflowSpec {
        nodes: vec![node("a").after(Dependency::on("cb"))],
        callbacks: vec![Callback {
            when: WhenEnded::Success,
            node: node("cb"),
        }],
    };
    assert!(refused(waits_for_callback).contains("a callback"));
    let clash = WorkflowSpec::group([task(1)]).on(WhenEnded::Success, node("task-1"));
    assert!(refused(clash).contains("two nodes"));
    let empty_name = WorkflowSpec {
        nodes: vec![node("")],
        callbacks: vec![],
    };
    assert!(refused(empty_name).contains("name is empty"));
    let bad_task = WorkflowSpec {
        nodes: vec![NodeSpec::new("a", NewTask::new("", Vec::new()))],
        callbacks: vec![],
    };
    assert!(refused(bad_task).contains("node \"a\""));
    let too_many = WorkflowSpec::group((0..=MAX_NODES).map(task));
    assert!(refused(too_many).contains("at most"));
    assert_eq!(
        "continue".parse::<EdgePolicy>().unwrap(),
        EdgePolicy::Continue
    );
    assert!("sometimes".parse::<EdgePolicy>().is_err());
}

#[test]
fn a_chain_runs_one_step_at_a_time_and_a_finish_heard_twice_changes_nothing() {
    let graph = WorkflowSpec::chain((0..3).map(task)).validate().unwrap();
    let (mut progress, step) = Progress::start(&graph);
    assert_eq!(names(&graph, &step.enqueue), ["step-1"]);
    let step = progress.settle(&graph, 0, NodeResult::Succeeded);
    assert_eq!(names(&graph, &step.enqueue), ["step-2"]);
    assert_eq!(
        progress.settle(&graph, 0, NodeResult::Succeeded),
        Step::default()
    );
    assert_eq!(
        progress.settle(&graph, 0, NodeResult::Failed),
        Step::default()
    );
    assert_eq!(
        progress.settle(&graph, 2, NodeResult::Succeeded),
        Step::default()
    );
    let step = progress.settle(&graph, 1, NodeResult::Succeeded);
    assert_eq!(names(&graph, &step.enqueue), ["step-3"]);
    let step = progress.settle(&graph, 2, NodeResult::Succeeded);
    assert_eq!(step.ended, Some(WorkflowOutcome::Succeeded));
    assert_eq!(step.body_ended, Some(WorkflowOutcome::Succeeded));
    assert!(progress.is_over());
}

#[test]
fn a_failed_step_skips_the_rest_of_its_chain_in_the_same_step() {
    let graph = WorkflowSpec::chain((0..4).map(task))
        .on(WhenEnded::Failure, node("alert"))
        .on(WhenEnded::Success, node("celebrate"))
        .validate()
        .unwrap();
    let (mut progress, _) = Progress::start(&graph);
    let step = progress.settle(&graph, 0, NodeResult::Failed);
    assert_eq!(
        names(&graph, &step.skipped),
        ["step-2", "step-3", "step-4", "celebrate"]
    );
    assert_eq!(names(&graph, &step.enqueue), ["alert"]);
    assert_eq!(step.body_ended, Some(WorkflowOutcome::Failed));
    assert_eq!(step.ended, None, "the callback has not settled yet");
    let step = progress.settle(&graph, at(&graph, "alert"), NodeResult::Succeeded);
    assert_eq!(step.ended, Some(WorkflowOutcome::Failed));
}

#[test]
fn a_chord_body_is_skipped_at_the_first_failed_header_and_the_workflow_ends_when_all_settle() {
    let graph = WorkflowSpec::chord((0..3).map(task), task(9))
        .on(WhenEnded::Complete, node("always"))
        .validate()
        .unwrap();
    let (mut progress, step) = Progress::start(&graph);
    assert_eq!(step.enqueue, [0, 1, 2]);
    let step = progress.settle(&graph, 1, NodeResult::Cancelled);
    assert_eq!(names(&graph, &step.skipped), ["body"]);
    assert_eq!(step.body_ended, None, "two headers still run");
    progress.settle(&graph, 0, NodeResult::Succeeded);
    let step = progress.settle(&graph, 2, NodeResult::Succeeded);
    assert_eq!(step.body_ended, Some(WorkflowOutcome::Failed));
    assert_eq!(names(&graph, &step.enqueue), ["always"]);
    let step = progress.settle(&graph, at(&graph, "always"), NodeResult::Failed);
    assert_eq!(step.ended, Some(WorkflowOutcome::Failed));
}

#[test]
fn ignore_takes_a_failure_in_and_continue_runs_on_but_fails_the_workflow() {
    for (policy, expected) in [
        (EdgePolicy::Ignore, WorkflowOutcome::Succeeded),
        (EdgePolicy::Continue, WorkflowOutcome::Failed),
    ] {
        let graph = WorkflowSpec {
            nodes: vec![
                node("fetch"),
                node("report").after(Dependency::on("fetch").with_policy(policy)),
            ],
            callbacks: vec![],
        }
        .validate()
        .unwrap();
        let (mut progress, _) = Progress::start(&graph);
        let step = progress.settle(&graph, 0, NodeResult::Failed);
        assert_eq!(names(&graph, &step.enqueue), ["report"], "{policy:?}");
        let step = progress.settle(&graph, 1, NodeResult::Succeeded);
        assert_eq!(step.ended, Some(expected), "{policy:?}");
    }
}

#[test]
fn an_empty_group_ends_at_once_and_its_callbacks_run() {
    let graph = WorkflowSpec::group([]).validate().unwrap();
    let (progress, step) = Progress::start(&graph);
    assert_eq!(step.ended, Some(WorkflowOutcome::Succeeded));
    assert!(progress.is_over());
    let graph = WorkflowSpec::group([])
        .on(WhenEnded::Success, node("then"))
        .validate()
        .unwrap();
    let (mut progress, step) = Progress::start(&graph);
    assert_eq!(step.body_ended, Some(WorkflowOutcome::Succeeded));
    assert_eq!(names(&graph, &step.enqueue), ["then"]);
    assert_eq!(step.ended, None);
    let step = progress.settle(&graph, 0, NodeResult::Succeeded);
    assert_eq!(step.ended, Some(WorkflowOutcome::Succeeded));
    let chord = WorkflowSpec::chord([], task(1)).validate().unwrap();
    let (_, step) = Progress::start(&chord);
    assert_eq!(
        names(&chord, &step.enqueue),
        ["body"],
        "nothing to wait for"
    );
}

#[test]
fn progress_read_back_from_stored_states_decides_alike() {
    let graph = WorkflowSpec::chord((0..2).map(task), task(9))
        .validate()
        .unwrap();
    let (mut progress, _) = Progress::start(&graph);
    progress.settle(&graph, 0, NodeResult::Succeeded);
    let mut again = Progress::from_states(&graph, progress.states().to_vec()).unwrap();
    assert_eq!(again, progress);
    assert_eq!(
        again.settle(&graph, 1, NodeResult::Succeeded),
        progress.settle(&graph, 1, NodeResult::Succeeded)
    );
    assert!(Progress::from_states(&graph, vec![NodeState::Waiting]).is_err());
}

fn composed(input: NodeInput, params: &str, results: &[DependencyResult<'_>]) -> String {
    String::from_utf8(compose_params(input, params.as_bytes(), results).unwrap()).unwrap()
}

#[test]
fn results_join_the_params_as_their_first_argument_in_every_params_form() {
    let r = [DependencyResult::Succeeded(Some(b"42".as_slice()))];
    assert_eq!(
        composed(NodeInput::Params, "[1, 2]", &r),
        "[1, 2]",
        "untouched"
    );
    assert_eq!(composed(NodeInput::Previous, "[1,2]", &r), "[42,1,2]");
    assert_eq!(composed(NodeInput::Previous, "", &r), "[42]");
    assert_eq!(composed(NodeInput::Previous, "null", &r), "[42]");
    assert_eq!(composed(NodeInput::Previous, "{}", &r), "[42]");
    assert_eq!(composed(NodeInput::Previous, "7", &r), "[42,7]");
    assert_eq!(
        composed(NodeInput::Previous, r#"{"x":1}"#, &r),
        r#"{"args":[42],"kwargs":{"x":1}}"#
    );
    assert_eq!(
        composed(NodeInput::Previous, r#"{"args":[1],"kwargs":{"x":1}}"#, &r),
        r#"{"args":[42,1],"kwargs":{"x":1}}"#
    );
    assert_eq!(
        composed(NodeInput::Previous, r#"{"kwargs":{"x":1}}"#, &r),
        r#"{"args":[42],"kwargs":{"x":1}}"#
    );
    // "args" that is not a list is a keyword argument named args.
    assert_eq!(
        composed(NodeInput::Previous, r#"{"args":3}"#, &r),
        r#"{"args":[42],"kwargs":{"args":3}}"#
    );
    let all = [
        DependencyResult::Succeeded(Some(br#"{"n":1}"#.as_slice())),
        DependencyResult::Succeeded(None),
        DependencyResult::Succeeded(Some(b"not json".as_slice())),
        DependencyResult::Failed {
            state: NodeState::Failed,
            error: Some("boom"),
        },
    ];
    let got: serde_json::Value =
        serde_json::from_str(&composed(NodeInput::Results, "[]", &all)).unwrap();
    let expected = serde_json::json!([[
        {"n": 1},
        null,
        "not json",
        {"$failed": {"state": "failed", "error": "boom"}}
    ]]);
    assert_eq!(got, expected);
    assert_eq!(composed(NodeInput::Results, "[]", &[]), "[[]]");
    assert!(compose_params(NodeInput::Previous, b"[]", &all).is_err());
    assert!(compose_params(NodeInput::Previous, b"not json", &r).is_err());
    assert_eq!("results".parse::<NodeInput>().unwrap(), NodeInput::Results);
    assert!("all".parse::<NodeInput>().is_err());
}

#[test]
fn chains_pass_the_previous_result_and_a_chord_body_the_list() {
    let chain = WorkflowSpec::chain((0..2).map(task)).validate().unwrap();
    assert_eq!(chain.nodes()[0].input, NodeInput::Params);
    assert_eq!(chain.nodes()[1].input, NodeInput::Previous);
    let chord = WorkflowSpec::chord((0..2).map(task), task(9))
        .validate()
        .unwrap();
    assert_eq!(chord.nodes()[at(&chord, "body")].input, NodeInput::Results);
    let two = WorkflowSpec {
        nodes: vec![
            node("a"),
            node("b"),
            node("c")
                .after(Dependency::on("a"))
                .after(Dependency::on("b"))
                .with_input(NodeInput::Previous),
        ],
        callbacks: vec![],
    };
    assert!(refused(two).contains("exactly one"));
    let callback = WorkflowSpec::group([task(1)]).on(
        WhenEnded::Complete,
        node("cb").with_input(NodeInput::Results),
    );
    assert!(refused(callback).contains("no results"));
}

/// A random graph over `n` nodes (each may wait for earlier ones, under
/// any policy, so it has no cycle), and a settle order with repeats.
fn graphs() -> impl Strategy<Value = (Graph, Vec<(usize, u8)>)> {
    (1usize..12)
        .prop_flat_map(|n| {
            let edges = proptest::collection::vec((0..n, 0..n, 0u8..3), 0..(n * 2));
            let settles = proptest::collection::vec((0..n + 2, 0u8..3), 0..(n * 4));
            (Just(n), edges, settles, 0u8..4)
        })
        .prop_map(|(n, edges, settles, callbacks)| {
            let mut nodes: Vec<NodeSpec> = (0..n).map(|i| node(&format!("n{i}"))).collect();
            for (a, b, p) in edges {
                let (from, to) = (a.min(b), a.max(b));
                let name = format!("n{from}");
                if from == to || nodes[to].after.iter().any(|d| d.node == name) {
                    continue;
                }
                let policy =
                    [EdgePolicy::Fail, EdgePolicy::Ignore, EdgePolicy::Continue][usize::from(p)];
                nodes[to]
                    .after
                    .push(Dependency::on(name).with_policy(policy));
            }
            let mut spec = WorkflowSpec {
                nodes,
                callbacks: vec![],
            };
            let whens = [WhenEnded::Success, WhenEnded::Failure, WhenEnded::Complete];
            for c in 0..usize::from(callbacks) {
                spec = spec.on(whens[c % 3], node(&format!("cb{c}")));
            }
            (spec.validate().unwrap(), settles)
        })
        .prop_map(|(graph, settles)| {
            let n = graph.len();
            let settles = settles.into_iter().map(|(i, r)| (i % n, r)).collect();
            (graph, settles)
        })
}

proptest! {
    /// Whatever the graph and whatever the order of finishes (repeats and
    /// finishes of nodes that never ran included): each node is enqueued at
    /// most once, only once every dependency it needs has settled, a node
    /// waiting under `fail` for one that did not succeed never runs, and
    /// once every running node has settled the workflow has ended, once.
    #[test]
    fn every_node_runs_at_most_once_and_the_workflow_always_ends(
        (graph, settles) in graphs()
    ) {
        let (mut progress, first) = Progress::start(&graph);
        let mut enqueued = vec![0u32; graph.len()];
        let mut ends = 0;
        let check = |progress: &Progress, step: &Step, enqueued: &mut Vec<u32>| {
            for &node in &step.enqueue {
                enqueued[node] += 1;
                for &(dep, policy) in graph.dependencies(node) {
                    let state = progress.states()[dep];
                    prop_assert!(state.is_final());
                    if policy == EdgePolicy::Fail {
                        prop_assert_eq!(state, NodeState::Succeeded);
                    }
                }
            }
            Ok(())
        };
        // The counters kept step by step agree with counting afresh.
        let agrees = |progress: &Progress| {
            let mut kept = progress.clone();
            let mut fresh = Progress::from_states(&graph, progress.states()).unwrap();
            use ledger::Ledger;
            prop_assert_eq!(kept.tally().unwrap(), fresh.tally().unwrap());
            for node in 0..graph.len() {
                let (k, f) = (kept.row(node).unwrap(), fresh.row(node).unwrap());
                if k.state == NodeState::Waiting {
                    prop_assert_eq!(k, f, "node {}", node);
                }
            }
            Ok(())
        };
        check(&progress, &first, &mut enqueued)?;
        agrees(&progress)?;
        ends += usize::from(first.ended.is_some());
        let results = [NodeResult::Succeeded, NodeResult::Failed, NodeResult::Cancelled];
        for (node, r) in settles {
            let step = progress.settle(&graph, node, results[usize::from(r)]);
            check(&progress, &step, &mut enqueued)?;
            agrees(&progress)?;
            ends += usize::from(step.ended.is_some());
        }
        // Settle whatever still runs, until nothing does.
        while let Some(node) = progress.states().iter().position(|&s| s == NodeState::Running) {
            let step = progress.settle(&graph, node, NodeResult::Succeeded);
            check(&progress, &step, &mut enqueued)?;
            ends += usize::from(step.ended.is_some());
        }
        prop_assert!(enqueued.iter().all(|&n| n <= 1), "{:?}", enqueued);
        prop_assert!(progress.is_over(), "{:?}", progress.states());
        prop_assert_eq!(ends, 1);
        prop_assert!(progress.outcome().is_some());
    }
}

/// A ledger that counts the rows it reads and writes: what a store's finish
/// would touch.
struct Counting {
    progress: Progress,
    touched: usize,
}

impl ledger::Ledger for Counting {
    fn row(&mut self, node: usize) -> Result<ledger::NodeRow, Error> {
        self.touched += 1;
        self.progress.row(node)
    }
    fn set_row(&mut self, node: usize, row: ledger::NodeRow) -> Result<(), Error> {
        self.touched += 1;
        self.progress.set_row(node, row)
    }
    fn add_row(&mut self, node: usize, row: ledger::NodeRow) -> Result<(), Error> {
        self.touched += 1;
        self.progress.add_row(node, row)
    }
    fn tally(&mut self) -> Result<ledger::Tally, Error> {
        self.progress.tally()
    }
    fn set_tally(&mut self, tally: ledger::Tally) -> Result<(), Error> {
        self.progress.set_tally(tally)
    }
}

#[test]
fn a_header_of_a_chord_of_ten_thousand_settles_touching_a_few_rows() {
    use ledger::Ledger;
    let n = 9_999;
    let graph = WorkflowSpec::chord((0..n).map(task), task(0))
        .validate()
        .unwrap();
    let (progress, step) = Progress::start(&graph);
    assert_eq!(step.enqueue.len(), n);
    let mut counting = Counting {
        progress,
        touched: 0,
    };
    let body = at(&graph, "body");
    for header in 0..n {
        counting.touched = 0;
        let step = ledger::settle(&graph, &mut counting, header, NodeResult::Succeeded).unwrap();
        // The header's row read and written, the body's read and written.
        assert!(
            counting.touched <= 4,
            "header {header}: {} rows",
            counting.touched
        );
        if header + 1 < n {
            assert!(step.enqueue.is_empty());
        } else {
            assert_eq!(step.enqueue, vec![body]);
        }
        // Heard again: one row read, nothing else.
        counting.touched = 0;
        let again = ledger::settle(&graph, &mut counting, header, NodeResult::Succeeded).unwrap();
        assert_eq!(again, Step::default());
        assert_eq!(counting.touched, 1);
    }
    assert_eq!(
        counting.progress.row(body).unwrap().state,
        NodeState::Running
    );
    let end = counting
        .progress
        .settle(&graph, body, NodeResult::Succeeded);
    assert_eq!(end.ended, Some(WorkflowOutcome::Succeeded));
}

#[test]
fn cancelling_a_workflow_settles_every_node_left_and_fires_nothing() {
    let graph = WorkflowSpec::chain((0..3).map(task))
        .on(WhenEnded::Failure, node("alarm"))
        .validate()
        .unwrap();
    let (mut progress, _) = Progress::start(&graph);
    progress.settle(&graph, 0, NodeResult::Succeeded);
    let (cancelled, step) = ledger::cancel_all(&graph, &mut progress).unwrap();
    assert_eq!(names(&graph, &cancelled), ["step-2", "step-3", "alarm"]);
    assert!(step.enqueue.is_empty());
    assert_eq!(step.ended, Some(WorkflowOutcome::Failed));
    assert!(progress.is_over());
    // The cancelled step's task finishing late changes nothing.
    assert_eq!(
        progress.settle(&graph, 1, NodeResult::Succeeded),
        Step::default()
    );
    let (again, step) = ledger::cancel_all(&graph, &mut progress).unwrap();
    assert!(again.is_empty());
    assert_eq!(step, Step::default());
}

#[test]
fn a_retry_puts_back_what_did_not_succeed_and_waits_only_for_that() {
    // top -> (left under fail, right under ignore) -> bottom after both.
    let graph = WorkflowSpec {
        nodes: vec![
            node("top"),
            node("left").after(Dependency::on("top")),
            node("side"),
            node("bottom")
                .after(Dependency::on("left"))
                .after(Dependency::on("side").with_policy(EdgePolicy::Ignore)),
        ],
        callbacks: vec![],
    }
    .on(WhenEnded::Success, node("cheer"))
    .on(WhenEnded::Failure, node("alarm"))
    .validate()
    .unwrap();
    let (mut progress, _) = Progress::start(&graph);
    assert_eq!(
        ledger::retry_failed(&graph, &mut progress).unwrap(),
        None,
        "a running workflow is not retried"
    );
    progress.settle(&graph, at(&graph, "top"), NodeResult::Succeeded);
    progress.settle(&graph, at(&graph, "side"), NodeResult::Failed);
    let step = progress.settle(&graph, at(&graph, "left"), NodeResult::Failed);
    assert_eq!(names(&graph, &step.skipped), ["bottom", "cheer"]);
    assert_eq!(names(&graph, &step.enqueue), ["alarm"]);
    progress.settle(&graph, at(&graph, "alarm"), NodeResult::Succeeded);
    assert!(progress.is_over());

    let (again, step) = ledger::retry_failed(&graph, &mut progress)
        .unwrap()
        .unwrap();
    assert_eq!(
        names(&graph, &again),
        ["left", "side", "bottom", "cheer", "alarm"]
    );
    assert_eq!(names(&graph, &step.enqueue), ["left", "side"]);
    assert_eq!(
        progress.state(at(&graph, "top")),
        Some(NodeState::Succeeded)
    );
    assert_eq!(
        progress.state(at(&graph, "bottom")),
        Some(NodeState::Waiting)
    );
    assert_eq!(progress.outcome(), None);
    // The bottom waits for both sides again, the callbacks for the end.
    let step = progress.settle(&graph, at(&graph, "left"), NodeResult::Succeeded);
    assert!(step.enqueue.is_empty());
    let step = progress.settle(&graph, at(&graph, "side"), NodeResult::Succeeded);
    assert_eq!(names(&graph, &step.enqueue), ["bottom"]);
    let step = progress.settle(&graph, at(&graph, "bottom"), NodeResult::Succeeded);
    assert_eq!(names(&graph, &step.enqueue), ["cheer"]);
    assert_eq!(names(&graph, &step.skipped), ["alarm"]);
    let step = progress.settle(&graph, at(&graph, "cheer"), NodeResult::Succeeded);
    assert_eq!(step.ended, Some(WorkflowOutcome::Succeeded));
}

#[test]
fn a_retry_after_a_succeeded_body_reruns_only_the_failed_callbacks() {
    let graph = WorkflowSpec::chain((0..2).map(task))
        .on(WhenEnded::Success, node("cheer"))
        .on(WhenEnded::Complete, node("tidy"))
        .validate()
        .unwrap();
    let (mut progress, _) = Progress::start(&graph);
    progress.settle(&graph, 0, NodeResult::Succeeded);
    progress.settle(&graph, 1, NodeResult::Succeeded);
    progress.settle(&graph, at(&graph, "cheer"), NodeResult::Failed);
    progress.settle(&graph, at(&graph, "tidy"), NodeResult::Succeeded);
    assert!(progress.is_over());
    let (again, step) = ledger::retry_failed(&graph, &mut progress)
        .unwrap()
        .unwrap();
    assert_eq!(names(&graph, &again), ["cheer"]);
    assert_eq!(names(&graph, &step.enqueue), ["cheer"]);
    assert!(!progress.is_over());
    let step = progress.settle(&graph, at(&graph, "cheer"), NodeResult::Succeeded);
    assert_eq!(step.ended, Some(WorkflowOutcome::Succeeded));
    let (again, step) = ledger::retry_failed(&graph, &mut progress)
        .unwrap()
        .unwrap();
    assert!(again.is_empty(), "nothing failed");
    assert_eq!(step, Step::default());
}

#[test]
fn the_stuck_check_names_only_nodes_that_cannot_move() {
    use crate::{TaskId, TaskState, Timestamp};
    let graph = WorkflowSpec::chain((0..3).map(task))
        .on(WhenEnded::Success, node("cheer"))
        .validate()
        .unwrap();
    let record = |states: [NodeState; 4], tasks: [Option<u64>; 4]| WorkflowRecord {
        id: WorkflowId(1),
        state: WorkflowState::Running,
        nodes: (0..4)
            .map(|i| NodeRecord::of(&graph, i, states[i], tasks[i].map(TaskId)))
            .collect(),
        created_at: Timestamp(0),
        ended_at: None,
    };
    use NodeState::{Running, Succeeded, Waiting};
    let settled_by = Timestamp(1_000);
    // A healthy chain: step-1 runs (its task running), the rest wait.
    let healthy = record(
        [Running, Waiting, Waiting, Waiting],
        [Some(1), None, None, None],
    );
    let seen = |_| Some((TaskState::Running, None));
    assert!(stuck_nodes(&healthy, settled_by, seen).is_empty());
    // Its task's record gone; or ended long ago, unsettled; or a moment
    // ago (spared: its settle may be under way).
    let gone = stuck_nodes(&healthy, settled_by, |_| None);
    assert_eq!(gone.len(), 1);
    assert_eq!(
        (gone[0].name.as_str(), gone[0].reason),
        ("step-1", StuckReason::TaskGone)
    );
    let ended = stuck_nodes(&healthy, settled_by, |_| {
        Some((TaskState::Completed, Some(Timestamp(10))))
    });
    assert_eq!(
        ended[0].reason,
        StuckReason::EndNotSettled(TaskState::Completed, Some(Timestamp(10)))
    );
    assert!(stuck_nodes(&healthy, settled_by, |_| {
        Some((TaskState::Completed, Some(Timestamp(5_000))))
    })
    .is_empty());
    // A step waiting though the one before it settled; a callback waiting
    // though the body is over.
    let lost = record(
        [Succeeded, Waiting, Waiting, Waiting],
        [Some(1), None, None, None],
    );
    let names: Vec<String> = stuck_nodes(&lost, settled_by, seen)
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["step-2"]);
    let over = record(
        [Succeeded, Succeeded, Succeeded, Waiting],
        [Some(1), Some(2), Some(3), None],
    );
    let stuck = stuck_nodes(&over, settled_by, seen);
    assert_eq!(
        (stuck[0].name.as_str(), stuck[0].reason),
        ("cheer", StuckReason::NothingLeftToWaitFor)
    );
}

proptest! {
    /// A store that reads rows ahead (only the likely ones, the rest when a
    /// decision asks for them) decides exactly as one holding every row,
    /// and writes back the same rows.
    #[test]
    fn a_read_ahead_decides_as_the_whole_ledger((graph, settles) in graphs()) {
        use ledger::Ledger;
        let (mut whole, _) = Progress::start(&graph);
        let results = [NodeResult::Succeeded, NodeResult::Failed, NodeResult::Cancelled];
        for (node, r) in settles {
            let result = results[usize::from(r)];
            let mut stored = whole.clone();
            let tally = stored.tally().unwrap();
            let mut ahead = ReadAhead::new(tally);
            for n in ReadAhead::likely(&graph, node, &tally) {
                ahead.insert(n, stored.row(n).unwrap());
            }
            let mut rounds = 0;
            let step = loop {
                rounds += 1;
                prop_assert!(rounds <= graph.len() + 2, "reads never end");
                match ahead.run(|l| ledger::settle(&graph, l, node, result)).unwrap() {
                    Some(step) => break step,
                    None => {
                        for n in ahead.missing() {
                            ahead.insert(n, stored.row(n).unwrap());
                        }
                    }
                }
            };
            for (n, row) in ahead.written_rows() {
                stored.set_row(n, row).unwrap();
            }
            if let Some(t) = ahead.written_tally() {
                stored.set_tally(t).unwrap();
            }
            let expected = whole.settle(&graph, node, result);
            prop_assert_eq!(step, expected);
            prop_assert_eq!(&stored, &whole);
        }
    }
}

#[test]
fn a_node_settles_only_on_its_tasks_final_states() {
    use crate::TaskState;
    assert_eq!(
        NodeResult::of(TaskState::Completed),
        Some(NodeResult::Succeeded)
    );
    assert_eq!(NodeResult::of(TaskState::Dead), Some(NodeResult::Failed));
    assert_eq!(
        NodeResult::of(TaskState::Cancelled),
        Some(NodeResult::Cancelled)
    );
    for waiting in [
        TaskState::Scheduled,
        TaskState::Available,
        TaskState::Running,
        TaskState::Retrying,
    ] {
        assert_eq!(NodeResult::of(waiting), None, "{waiting:?}");
    }
}
