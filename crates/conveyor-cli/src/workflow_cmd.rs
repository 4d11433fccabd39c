//! `conveyor workflow submit|show|cancel|retry|list|check`: workflows declared as JSON
//! (`conveyor::durable::workflow::declared`), stored by the backend with
//! their first tasks, and read back node by node.

use std::collections::HashMap;
use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use conveyor::durable::workflow::{
    declared, stuck_nodes, NodeRecord, NodeState, Retried, StuckNode, WorkflowFilter, WorkflowId,
    WorkflowRecord, WorkflowState, WorkflowSummary,
};
use conveyor::durable::Backend;
use conveyor::Timestamp;
use serde_json::{json, Value};

use crate::cli::{WorkflowCommand, WorkflowSubmitArgs};
use crate::show_cmd::time;
use crate::verdict::decoded;

/// Exit status when no workflow has the id.
const UNKNOWN: u8 = 5;

/// Exit status when the workflow has not ended (a retry changes nothing).
const NOT_ENDED: u8 = 3;

/// How often `--wait` reads the workflow back.
const POLL: Duration = Duration::from_millis(100);

/// Runs one `conveyor workflow` command.
pub async fn run(backend: Arc<dyn Backend>, cmd: WorkflowCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        WorkflowCommand::Submit(args) => submit(backend, args).await,
        WorkflowCommand::Show { id, json } => show(backend, WorkflowId(id), json).await,
        WorkflowCommand::Cancel { id } => cancel(backend, WorkflowId(id)).await,
        WorkflowCommand::Retry { id } => retry(backend, WorkflowId(id)).await,
        WorkflowCommand::Check { grace, json } => check(backend, grace, json).await,
        WorkflowCommand::List {
            state,
            limit,
            before,
            json,
        } => {
            let filter = WorkflowFilter {
                state,
                limit,
                before: before.map(WorkflowId),
            };
            list(backend, &filter, json).await
        }
    }
}

async fn list(
    backend: Arc<dyn Backend>,
    filter: &WorkflowFilter,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let page = backend.list_workflows(filter).await?;
    if as_json {
        let rows: Vec<Value> = page.iter().map(summary_json).collect();
        println!("{}", Value::Array(rows));
        return Ok(ExitCode::SUCCESS);
    }
    if page.is_empty() {
        println!("no workflows");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>8}  {:<10} {:>7} {:>7}  {:<24}  ENDED",
        "ID", "STATE", "NODES", "LEFT", "SUBMITTED"
    );
    for s in &page {
        println!(
            "{:>8}  {:<10} {:>7} {:>7}  {:<24}  {}",
            s.id.0,
            s.state.as_str(),
            s.nodes,
            s.left,
            time(s.created_at),
            s.ended_at.map(time).unwrap_or_else(|| "-".to_string())
        );
    }
    if page.len() == filter.limit {
        if let Some(last) = page.last() {
            println!("(more: --before {})", last.id.0);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A listed workflow as JSON.
pub fn summary_json(s: &WorkflowSummary) -> Value {
    json!({
        "id": s.id.0,
        "state": s.state.as_str(),
        "nodes": s.nodes,
        "left": s.left,
        "created_at": time(s.created_at),
        "ended_at": s.ended_at.map(time),
    })
}

/// Reads the declaration, submits it, and prints its id (or, with
/// `--wait`, the workflow once it has ended).
pub async fn submit(
    backend: Arc<dyn Backend>,
    args: WorkflowSubmitArgs,
) -> anyhow::Result<ExitCode> {
    let text = if args.file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading the workflow from stdin")?;
        buf
    } else {
        std::fs::read(&args.file)
            .with_context(|| format!("reading the workflow {}", args.file.display()))?
    };
    let spec = match declared::from_json(&text) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("conveyor: {}: {e}", args.file.display());
            return Ok(ExitCode::from(2));
        }
    };
    let submitted = match backend.submit_workflow(spec).await {
        Ok(s) => s,
        Err(e @ conveyor::Error::InvalidConfig(_)) => {
            eprintln!("conveyor: {}: {e}", args.file.display());
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    if !args.wait {
        println!("{}", submitted.id);
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "workflow {}: submitted, waiting for it to end",
        submitted.id
    );
    let deadline = args.timeout.map(|t| tokio::time::Instant::now() + t);
    loop {
        let Some(w) = backend.workflow(submitted.id).await? else {
            anyhow::bail!("workflow {} is gone (pruned?)", submitted.id);
        };
        if w.state != WorkflowState::Running {
            print_table(&backend, &w).await?;
            return Ok(ExitCode::from(match w.state {
                WorkflowState::Succeeded => 0,
                WorkflowState::Failed => 1,
                WorkflowState::Cancelled => 4,
                WorkflowState::Running => 3,
            }));
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            eprintln!("workflow {}: not ended by --timeout", submitted.id);
            return Ok(ExitCode::from(NOT_ENDED));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn show(
    backend: Arc<dyn Backend>,
    id: WorkflowId,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let Some(w) = backend.workflow(id).await? else {
        eprintln!("workflow {id}: unknown (no workflow has this id, or it was pruned)");
        return Ok(ExitCode::from(UNKNOWN));
    };
    if as_json {
        println!("{}", workflow_json(&backend, &w).await?);
    } else {
        print_table(&backend, &w).await?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn cancel(backend: Arc<dyn Backend>, id: WorkflowId) -> anyhow::Result<ExitCode> {
    match backend.cancel_workflow(id).await? {
        None => {
            println!("workflow {id}: unknown");
            Ok(ExitCode::from(UNKNOWN))
        }
        Some(0) => {
            println!("workflow {id}: had ended; nothing to cancel");
            Ok(ExitCode::SUCCESS)
        }
        Some(n) => {
            println!("workflow {id}: cancelled {n} node(s)");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn retry(backend: Arc<dyn Backend>, id: WorkflowId) -> anyhow::Result<ExitCode> {
    match backend.retry_workflow(id).await? {
        None => {
            println!("workflow {id}: unknown");
            Ok(ExitCode::from(UNKNOWN))
        }
        Some(Retried::Running) => {
            println!("{}", Retried::running_refusal(id));
            Ok(ExitCode::from(NOT_ENDED))
        }
        Some(Retried::Nodes(0)) => {
            println!("workflow {id}: nothing failed; nothing to retry");
            Ok(ExitCode::SUCCESS)
        }
        Some(Retried::Nodes(n)) => {
            println!("workflow {id}: {n} node(s) put back to run");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// How many running workflows `check` reads per page.
const CHECK_PAGE: usize = 200;

async fn check(
    backend: Arc<dyn Backend>,
    grace: Duration,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let settled_by = Timestamp::now().minus(grace);
    let mut found: Vec<(WorkflowId, StuckNode)> = Vec::new();
    let mut before = None;
    loop {
        let filter = WorkflowFilter {
            state: Some(WorkflowState::Running),
            limit: CHECK_PAGE,
            before,
        };
        let page = backend.list_workflows(&filter).await?;
        for summary in &page {
            let Some(w) = backend.workflow(summary.id).await? else {
                continue;
            };
            let mut seen = HashMap::new();
            for node in w.nodes.iter().filter(|n| n.state == NodeState::Running) {
                if let Some(task) = node.task {
                    let record = backend.get(task).await?;
                    seen.insert(task, record.map(|r| (r.state, r.finished_at)));
                }
            }
            for stuck in stuck_nodes(&w, settled_by, |t| seen.get(&t).copied().flatten()) {
                found.push((w.id, stuck));
            }
        }
        match page.last() {
            Some(last) if page.len() == CHECK_PAGE => before = Some(last.id),
            _ => break,
        }
    }
    if as_json {
        let rows: Vec<Value> = found
            .iter()
            .map(|(id, s)| {
                json!({
                    "workflow": id.0,
                    "node": s.name,
                    "task": s.task.map(|t| t.0),
                    "reason": s.reason.code(),
                    "detail": s.reason.describe(),
                })
            })
            .collect();
        println!("{}", Value::Array(rows));
    } else if found.is_empty() {
        println!("no stuck node in any running workflow");
    } else {
        println!("{:>8}  {:<20}  {:>8}  WHY", "WORKFLOW", "NODE", "TASK");
        for (id, s) in &found {
            let task = s.task.map_or("-".to_string(), |t| t.0.to_string());
            println!(
                "{:>8}  {:<20}  {:>8}  {}",
                id.0,
                s.name,
                task,
                s.reason.describe()
            );
        }
    }
    Ok(if found.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What a node's task left: attempts, result, error (`None`: no task yet,
/// or its record is gone).
async fn task_of(
    backend: &Arc<dyn Backend>,
    node: &NodeRecord,
) -> anyhow::Result<Option<conveyor::durable::TaskRecord>> {
    match node.task {
        Some(id) => Ok(backend.get(id).await?),
        None => Ok(None),
    }
}

/// When a callback runs, as the table and JSON say it.
fn callback_name(node: &NodeRecord) -> Option<&'static str> {
    node.callback.map(|w| w.key())
}

async fn workflow_json(backend: &Arc<dyn Backend>, w: &WorkflowRecord) -> anyhow::Result<Value> {
    let mut nodes = Vec::with_capacity(w.nodes.len());
    for node in &w.nodes {
        let task = task_of(backend, node).await?;
        nodes.push(json!({
            "name": node.name,
            "state": node.state.as_str(),
            "task": node.task.map(|t| t.0),
            "after": node.after,
            "callback": callback_name(node),
            "expanded": node.expansion_json(),
            "attempts": task.as_ref().map(|t| t.attempts),
            "result": task.as_ref().and_then(|t| t.result.as_deref()).map(decoded),
            "error": task.as_ref().and_then(|t| t.error.clone()),
        }));
    }
    Ok(json!({
        "id": w.id.0,
        "state": w.state.as_str(),
        "created_at": time(w.created_at),
        "ended_at": w.ended_at.map(time),
        "nodes": nodes,
    }))
}

/// Cuts `text` to `max` characters, marking the cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

async fn print_table(backend: &Arc<dyn Backend>, w: &WorkflowRecord) -> anyhow::Result<()> {
    let ended = w
        .ended_at
        .map(|t| format!(", ended {}", time(t)))
        .unwrap_or_default();
    println!(
        "workflow {}: {} (submitted {}{ended})",
        w.id,
        w.state.as_str(),
        time(w.created_at)
    );
    let width = w
        .nodes
        .iter()
        .map(|n| n.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<width$}  {:<9}  {:>8}  {:>8}  AFTER / RESULT / ERROR",
        "NODE", "STATE", "TASK", "ATTEMPTS"
    );
    for node in &w.nodes {
        let task = task_of(backend, node).await?;
        let after = match callback_name(node) {
            Some(c) => format!("({c})"),
            None if node.after.is_empty() => String::new(),
            None => format!("after {}", node.after.join(", ")),
        };
        let outcome = match &task {
            // Its result asked for the nodes it added: say so, not the
            // declaration.
            _ if node.expanded.is_some() => {
                let added = node.expanded.as_ref().map_or(0, |(_, last)| last.len());
                let prefix = format!("{}/", node.name);
                let all = w
                    .nodes
                    .iter()
                    .filter(|n| n.name.starts_with(&prefix))
                    .count();
                format!("expanded: {all} node(s) added, settles with the last {added}")
            }
            Some(t) if t.error.is_some() => t.error.clone().unwrap_or_default(),
            Some(t) => t
                .result
                .as_deref()
                .map(|r| decoded(r).to_string())
                .unwrap_or_default(),
            None => String::new(),
        };
        let detail = [after, cut(&outcome, 60)]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("  ");
        println!(
            "{:<width$}  {:<9}  {:>8}  {:>8}  {detail}",
            node.name,
            node.state.as_str(),
            node.task
                .map(|t| t.to_string())
                .unwrap_or_else(|| "-".into()),
            task.map(|t| t.attempts.to_string())
                .unwrap_or_else(|| "-".into()),
        );
    }
    Ok(())
}
