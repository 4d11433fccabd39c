//! On Redis, the same measurements with conveyor's Lua code sent as scripts
//! (`?scripts=eval`: `EVALSHA`, every call running the shared code anew)
//! beside the default function library (`FCALL`, the shared code loaded
//! once): what the library saves, in the same run on the same server.

use crate::queue::{enqueue_rates, processed_quiet, Ours};
use crate::report::Report;

/// Measures conveyor with `scripts=eval` at `url` and adds each row with the
/// ratio of the default (`ours`) to it.
pub async fn beside(report: &mut Report, bench: &str, url: &str, scale: usize, ours: &Ours<'_>) {
    let sep = if url.contains('?') { '&' } else { '?' };
    let eval = format!("{url}{sep}scripts=eval");
    let rates = enqueue_rates(Some(&eval), scale).await;
    let mut rows = vec![
        (
            "enqueue 1/call, 1 caller".to_string(),
            ours.single,
            rates.single,
        ),
        (
            "enqueue 1/call, 32 callers".to_string(),
            ours.concurrent,
            rates.concurrent,
        ),
        (
            "enqueue batches of 1000".to_string(),
            ours.batched,
            rates.batched,
        ),
    ];
    for row in ours.processed {
        rows.push((
            row.subject(),
            row.rate,
            processed_quiet(&eval, scale, row.slots).await,
        ));
    }
    for (what, functions, scripts) in rows {
        let name = format!("{what}, scripts (EVALSHA)");
        report.add(bench, &name, scripts, "tasks/s");
        report.add_vs(
            bench,
            &format!("{what}, functions vs scripts"),
            functions,
            "tasks/s",
            &name,
            functions / scripts,
        );
    }
}
