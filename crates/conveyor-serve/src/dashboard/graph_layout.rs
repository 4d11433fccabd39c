//! A workflow's graph laid out for an SVG drawn on the server: each node in
//! a column by its depth (the longest chain of dependencies before it), the
//! callbacks in a column after the rest, edges as curves from a node's
//! right side to its dependent's left side. A column shows at most
//! [`MAX_PER_COLUMN`] nodes and one box saying how many more it has (a
//! chord of 10,000 stays a page, not a poster). A node that expanded is
//! drawn before the nodes it added, and its dependents after their last
//! ones.

use std::collections::HashMap;

use conveyor_core::workflow::WorkflowRecord;

/// Node box size and the gaps between them, in SVG units.
const WIDTH: u32 = 168;
const HEIGHT: u32 = 34;
const GAP_X: u32 = 56;
const GAP_Y: u32 = 14;
const MARGIN: u32 = 10;
/// Nodes drawn per column.
pub(crate) const MAX_PER_COLUMN: usize = 40;

/// One box.
pub(crate) struct NodeBox {
    pub x: u32,
    pub y: u32,
    pub label: String,
    /// The node's state (its CSS class).
    pub state: &'static str,
    /// Its task's page, once it has a task.
    pub href: Option<String>,
    /// The tooltip: name, state, task.
    pub title: String,
}

/// One edge, as an SVG path.
pub(crate) struct Edge {
    pub path: String,
}

/// The drawing.
pub(crate) struct Layout {
    pub width: u32,
    pub height: u32,
    pub boxes: Vec<NodeBox>,
    pub edges: Vec<Edge>,
    pub box_width: u32,
    pub box_height: u32,
}

/// A label cut to fit its box.
fn fit(text: &str) -> String {
    const CHARS: usize = 22;
    if text.chars().count() <= CHARS {
        return text.to_string();
    }
    let mut out: String = text.chars().take(CHARS - 1).collect();
    out.push('…');
    out
}

/// The nodes drawn before node `i`, each with an edge to it: what it
/// waits for, where a node that expanded stands for its expansion's last
/// nodes (so its dependents come after them); and for a node an
/// expansion added that waits for nothing, the node that added it.
fn predecessors(w: &WorkflowRecord, index: &HashMap<&str, usize>, i: usize) -> Vec<usize> {
    fn push(w: &WorkflowRecord, index: &HashMap<&str, usize>, j: usize, out: &mut Vec<usize>) {
        match &w.nodes[j].expanded {
            Some((_, last)) if !last.is_empty() => {
                for name in last {
                    if let Some(&k) = index.get(name.as_str()) {
                        if k != j && !out.contains(&k) {
                            push(w, index, k, out);
                        }
                    }
                }
            }
            _ => out.push(j),
        }
    }
    let n = &w.nodes[i];
    let mut out = Vec::new();
    for a in &n.after {
        if let Some(&j) = index.get(a.as_str()) {
            push(w, index, j, &mut out);
        }
    }
    if n.after.is_empty() {
        let parent = n
            .name
            .rsplit_once('/')
            .and_then(|(p, _)| index.get(p).copied())
            .filter(|&p| w.nodes[p].expanded.is_some());
        out.extend(parent);
    }
    out
}

/// Lays out `w`'s nodes and edges.
pub(crate) fn layout(w: &WorkflowRecord) -> Layout {
    let index: HashMap<&str, usize> = w
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let preds: Vec<Vec<usize>> = (0..w.nodes.len())
        .map(|i| predecessors(w, &index, i))
        .collect();
    // Nodes come in an order where every dependency is declared before its
    // dependents is not guaranteed: settle depths until none changes (a
    // graph has no cycle, so this ends within its length).
    let mut depth = vec![0usize; w.nodes.len()];
    for _ in 0..w.nodes.len() {
        let mut changed = false;
        for (i, n) in w.nodes.iter().enumerate() {
            if n.callback.is_some() {
                continue;
            }
            let d = preds[i].iter().map(|&j| depth[j] + 1).max().unwrap_or(0);
            if d != depth[i] {
                depth[i] = d;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let body_depth = w
        .nodes
        .iter()
        .zip(&depth)
        .filter(|(n, _)| n.callback.is_none())
        .map(|(_, &d)| d + 1)
        .max()
        .unwrap_or(0);
    for (i, n) in w.nodes.iter().enumerate() {
        if n.callback.is_some() {
            depth[i] = body_depth;
        }
    }
    let columns = depth.iter().copied().max().map_or(0, |d| d + 1);
    let mut per_column: Vec<Vec<usize>> = vec![Vec::new(); columns];
    for (i, &d) in depth.iter().enumerate() {
        per_column[d].push(i);
    }
    let mut at: HashMap<usize, (u32, u32)> = HashMap::new();
    let mut boxes = Vec::new();
    let mut rows = 0usize;
    for (c, nodes) in per_column.iter().enumerate() {
        let x = MARGIN + c as u32 * (WIDTH + GAP_X);
        let shown = nodes.len().min(MAX_PER_COLUMN);
        for (r, &i) in nodes.iter().take(shown).enumerate() {
            let y = MARGIN + r as u32 * (HEIGHT + GAP_Y);
            at.insert(i, (x, y));
            let n = &w.nodes[i];
            let callback = n
                .callback
                .map(|c| format!(" ({})", c.key()))
                .unwrap_or_default();
            let task = n.task.map(|t| format!(", task {t}")).unwrap_or_default();
            boxes.push(NodeBox {
                x,
                y,
                label: fit(&n.name),
                state: n.state.as_str(),
                href: n.task.map(|t| format!("/tasks/{t}")),
                title: format!("{}{callback}: {}{task}", n.name, n.state.as_str()),
            });
        }
        let mut used = shown;
        if nodes.len() > shown {
            let y = MARGIN + shown as u32 * (HEIGHT + GAP_Y);
            boxes.push(NodeBox {
                x,
                y,
                label: format!("+ {} more", nodes.len() - shown),
                state: "more",
                href: None,
                title: format!("{} more nodes in this column", nodes.len() - shown),
            });
            used += 1;
        }
        rows = rows.max(used);
    }
    let mut edges = Vec::new();
    for (i, mine) in preds.iter().enumerate() {
        let Some(&(x2, y2)) = at.get(&i) else {
            continue;
        };
        for j in mine {
            let Some(&(x1, y1)) = at.get(j) else {
                continue;
            };
            let (sx, sy) = (x1 + WIDTH, y1 + HEIGHT / 2);
            let (ex, ey) = (x2, y2 + HEIGHT / 2);
            let mid = (sx + ex) / 2;
            edges.push(Edge {
                path: format!("M{sx},{sy} C{mid},{sy} {mid},{ey} {ex},{ey}"),
            });
        }
    }
    Layout {
        width: 2 * MARGIN + (columns.max(1) as u32) * (WIDTH + GAP_X) - GAP_X,
        height: 2 * MARGIN + (rows.max(1) as u32) * (HEIGHT + GAP_Y) - GAP_Y,
        boxes,
        edges,
        box_width: WIDTH,
        box_height: HEIGHT,
    }
}

#[cfg(test)]
mod tests {
    use conveyor_core::workflow::{
        ExpansionOutput, NodeRecord, NodeState, WorkflowId, WorkflowState,
    };
    use conveyor_core::Timestamp;

    use super::*;

    fn node(name: &str, after: &[&str]) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            state: NodeState::Running,
            task: None,
            after: after.iter().map(|a| a.to_string()).collect(),
            callback: None,
            expanded: None,
        }
    }

    #[test]
    fn an_expanded_node_comes_before_what_it_added_and_its_dependents_after() {
        let mut list = node("list", &[]);
        list.expanded = Some((
            ExpansionOutput::List,
            vec!["list/a".into(), "list/b".into()],
        ));
        let w = WorkflowRecord {
            id: WorkflowId(1),
            state: WorkflowState::Running,
            nodes: vec![
                list,
                node("sum", &["list"]),
                node("list/a", &[]),
                node("list/b", &[]),
            ],
            created_at: Timestamp(0),
            ended_at: None,
        };
        let l = layout(&w);
        let x = |label: &str| l.boxes.iter().find(|b| b.label == label).map(|b| b.x);
        assert!(x("list") < x("list/a"));
        assert_eq!(x("list/a"), x("list/b"));
        assert!(x("list/a") < x("sum"));
        // list → a, list → b, a → sum, b → sum.
        assert_eq!(l.edges.len(), 4);
    }
}
