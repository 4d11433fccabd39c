//! The backend's failover modes ([`Capabilities::failover`]) agree with the
//! table in `docs/high-availability.md`: the same modes, in the same
//! order, each guarantee the same.
//!
//! [`Capabilities::failover`]: conveyor_core::Capabilities::failover

use std::sync::Arc;

use conveyor_core::{FailoverMode, Kept, ManualClock};

use super::Subject;

/// The table's file, beside the workspace's crates.
const DOC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/high-availability.md"
);

/// The backend's name in the table's first column.
fn shown_as(kind: &str) -> &str {
    match kind {
        "postgres" => "PostgreSQL",
        "redis" => "Redis",
        "nats" => "NATS",
        "amqp" => "RabbitMQ",
        other => other,
    }
}

/// What a cell says, as a [`Kept`]: `kept…`, `—` (not tested), `no …` (a
/// capability the backend lacks), anything else how it is lost.
fn kept(cell: &str) -> Kept {
    if cell.starts_with("kept") {
        Kept::Kept
    } else if cell == "—" {
        Kept::Untested
    } else if cell.starts_with("no ") {
        Kept::Absent
    } else {
        Kept::Lost
    }
}

/// The table's rows of backend `name`: (mode, tested, the guarantees).
fn rows(doc: &str, name: &str) -> Vec<(String, bool, Vec<Kept>)> {
    doc.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .trim()
                .strip_prefix('|')?
                .strip_suffix('|')?
                .split('|')
                .map(str::trim)
                .collect();
            (cells.len() == 10 && cells[0] == name).then(|| {
                let tested = cells[2].starts_with("yes");
                (
                    cells[1].to_string(),
                    tested,
                    cells[3..].iter().map(|c| kept(c)).collect(),
                )
            })
        })
        .collect()
}

/// The backend's declared modes are the table's rows for it.
pub async fn failover_modes_match_the_docs(b: Subject, _clock: Arc<ManualClock>) {
    let doc = std::fs::read_to_string(DOC).unwrap_or_else(|e| panic!("read {DOC}: {e}"));
    let name = shown_as(b.kind());
    let declared: Vec<(String, bool, Vec<Kept>)> = b
        .capabilities()
        .failover
        .iter()
        .map(|m: &FailoverMode| {
            let kept = m.guarantees().iter().map(|(_, k)| *k).collect();
            (m.name.to_string(), m.tested, kept)
        })
        .collect();
    for (mode, tested, kept) in &declared {
        assert!(
            *tested || kept.iter().all(|k| *k == Kept::Untested),
            "{name} {mode}: a mode no test runs claims nothing"
        );
    }
    assert_eq!(
        rows(&doc, name),
        declared,
        "{name}: the failover modes in docs/high-availability.md differ from the backend's \
         Capabilities::failover (mode, tested, then {:?})",
        FailoverMode::untested("").guarantees().map(|(g, _)| g)
    );
}
