//! What a workflow node costs: `conveyor-bench workflow [--backend URL]
//! [--quick]`.
//!
//! The same N no-op tasks (10,000; `--quick` 2,000), run by the same worker
//! (64 slots) on the same store, three ways: enqueued as plain tasks (in
//! batches of 1,000), submitted as a group of N nodes, and as a chord of N
//! header nodes and a body that receives their N results. Each figure is
//! tasks/s from the submit to the last task's end (the chord's body
//! included), the median of three alternating rounds, each in a namespace
//! of its own; the group's and the chord's are given as ratios to the plain
//! tasks' — the price of settling each node (its row, its tally, the
//! dependents it counts down) in the step that ends its task. A fourth
//! way, one node whose task expands the workflow into the same group of N
//! (`{"$expand": …}`), is given as a ratio to the group submitted whole:
//! the price of adding the nodes at run time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use conveyor::durable::workflow::WorkflowSpec;
use conveyor::durable::{Backend, Worker};
use conveyor::{Handler, TaskError};
use tokio::sync::Notify;

use crate::namespace::Subject;
use crate::queue::noop_task;
use crate::report::{median_measured, ratio_of, Measured, Report};

/// Rounds of each shape, alternating which goes first.
const ROUNDS: usize = 3;

/// The worker's slots.
const SLOTS: usize = 64;

/// How the tasks are submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Plain,
    Group,
    Chord,
    Expanded,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Plain => "plain tasks",
            Shape::Group => "a group",
            Shape::Chord => "a chord (N headers and a body)",
            Shape::Expanded => "a node expanding into a group",
        }
    }
}

/// Runs the workflow benchmark.
pub async fn run(report: &mut Report, quick: bool, url: Option<&str>) {
    let n = if quick { 2_000 } else { 10_000 };
    let kind = Subject::new(url, "probe").kind().await;
    let bench = format!("workflow/{kind}");
    let shapes = [Shape::Plain, Shape::Group, Shape::Chord, Shape::Expanded];
    let mut runs: [Vec<Measured>; 4] = Default::default();
    let mut ratios: [Vec<Measured>; 3] = Default::default();
    for round in 0..ROUNDS {
        let mut rates: [Measured; 4] = std::array::from_fn(|_| Err(String::new()));
        for k in 0..shapes.len() {
            let i = (round + k) % shapes.len();
            rates[i] = measure(url, n, shapes[i]).await;
            eprintln!(
                "  round {}: {}: {:?}",
                round + 1,
                shapes[i].name(),
                rates[i]
            );
        }
        ratios[0].push(ratio_of(&rates[1], &rates[0]));
        ratios[1].push(ratio_of(&rates[2], &rates[0]));
        ratios[2].push(ratio_of(&rates[3], &rates[1]));
        for (run, rate) in runs.iter_mut().zip(rates) {
            run.push(rate);
        }
    }
    report.measured(
        &bench,
        &format!("{n} no-op {}, {SLOTS} slots", Shape::Plain.name()),
        &median_measured(&runs[0]),
        "tasks/s",
    );
    for (i, shape) in [Shape::Group, Shape::Chord].into_iter().enumerate() {
        report.with_ratio(
            &bench,
            &format!("{n} no-op tasks as {}, {SLOTS} slots", shape.name()),
            &median_measured(&runs[i + 1]),
            "tasks/s",
            &format!("plain tasks (median of {ROUNDS} alternating rounds)"),
            &median_measured(&ratios[i]),
        );
    }
    report.with_ratio(
        &bench,
        &format!(
            "{n} no-op tasks added by {}, {SLOTS} slots",
            Shape::Expanded.name()
        ),
        &median_measured(&runs[3]),
        "tasks/s",
        &format!("the group submitted whole (median of {ROUNDS} alternating rounds)"),
        &median_measured(&ratios[2]),
    );
}

/// Runs `n` no-op tasks submitted as `shape` in a namespace of their own;
/// tasks/s from the submit to the last task's end.
async fn measure(url: Option<&str>, n: usize, shape: Shape) -> Measured {
    let s = Subject::new(url, &format!("wf{}", shape as u8));
    let b = s.open().await;
    let rate = run_shape(b.clone(), n, shape).await;
    drop(b);
    s.close().await;
    rate
}

async fn run_shape(b: Arc<dyn Backend>, n: usize, shape: Shape) -> Measured {
    let total = if matches!(shape, Shape::Chord | Shape::Expanded) {
        n + 1
    } else {
        n
    };
    let done = Arc::new(AtomicUsize::new(0));
    let all = Arc::new(Notify::new());
    let (d, a) = (done.clone(), all.clone());
    let noop = Handler::io("noop", |_: u64, _ctx| async { Ok::<_, TaskError>(()) });
    let sum = Handler::io("sum", |results: (Vec<()>,), _ctx| async move {
        Ok::<_, TaskError>(results.0.len())
    });
    let fan_out = Handler::io("fanout", |count: usize, _ctx| async move {
        let group: Vec<serde_json::Value> = (0..count)
            .map(|i| serde_json::json!({"handler": "noop", "params": i}))
            .collect();
        Ok::<_, TaskError>(serde_json::json!({"$expand": {"group": group}}))
    });
    let worker = match Worker::builder(b.clone())
        .handler(noop)
        .handler(sum)
        .handler(fan_out)
        .slots(SLOTS)
        .fetch_batch(256)
        .on_task_complete(move |_| {
            if d.fetch_add(1, Ordering::Relaxed) + 1 == total {
                a.notify_one();
            }
        })
        .build()
    {
        Ok(w) => w,
        Err(e) => return Err(format!("cannot build the worker: {e}")),
    };
    let stopper = worker.stopper();
    let run = tokio::spawn(worker.run_until(std::future::pending()));
    let t = Instant::now();
    let submitted = match shape {
        Shape::Plain => {
            let mut out = Ok(());
            for chunk in (0..n).collect::<Vec<_>>().chunks(1_000) {
                let tasks = chunk.iter().map(|&i| noop_task(i)).collect();
                if let Err(e) = b.enqueue_many(tasks).await {
                    out = Err(format!("enqueue: {e}"));
                    break;
                }
            }
            out
        }
        Shape::Group => b
            .submit_workflow(WorkflowSpec::group((0..n).map(noop_task)))
            .await
            .map(|_| ())
            .map_err(|e| format!("submit: {e}")),
        Shape::Chord => b
            .submit_workflow(WorkflowSpec::chord(
                (0..n).map(noop_task),
                conveyor::durable::NewTask::new("sum", b"[]".to_vec()),
            ))
            .await
            .map(|_| ())
            .map_err(|e| format!("submit: {e}")),
        Shape::Expanded => b
            .submit_workflow(WorkflowSpec::group([conveyor::durable::NewTask::new(
                "fanout",
                n.to_string().into_bytes(),
            )]))
            .await
            .map(|_| ())
            .map_err(|e| format!("submit: {e}")),
    };
    if let Err(e) = submitted {
        stopper.stop();
        let _ = crate::report::stopped(run).await;
        return Err(e);
    }
    let (elapsed, ended) =
        crate::report::workload(run, || stopper.stop(), &all, &done, total, t).await?;
    if ended.stats.completed < total as u64 {
        return Err(format!(
            "the worker stored {} of {total} completions",
            ended.stats.completed
        ));
    }
    Ok(n as f64 / elapsed.as_secs_f64())
}
