//! On Redis, the same measurements with conveyor's Lua code sent as scripts
//! (`?scripts=eval`: `EVALSHA`, every call running the shared code anew)
//! beside the default function library (`FCALL`, the shared code loaded
//! once): what the library saves, in the same run on the same server.
//!
//! The two are measured in [`ROUNDS`] alternating rounds
//! ([`crate::alternate`]) and each row is the median of its side's rounds:
//! measured one after the other, the machine's drift between the two halves
//! showed as a difference between them (in one run the library came out at
//! 0.85× the scripts at 500 slots; alternated, it is 1.02–1.04×).

use crate::alternate::alternate;
use crate::queue::{enqueue_rates, processed_quiet, EnqueueRates, Ours};
use crate::report::{median_measured, Measured, Report};

/// Rounds of each side.
const ROUNDS: usize = 3;

/// Measures conveyor with its function library and with `scripts=eval` at
/// `url`, alternated, and adds each scripts row with the ratio of the
/// library to it. `ours` gives the `processed` rows to measure (their slot
/// counts; the rates are measured again, beside the scripts').
pub async fn beside(report: &mut Report, bench: &str, url: &str, scale: usize, ours: &Ours<'_>) {
    let sep = if url.contains('?') { '&' } else { '?' };
    let eval = format!("{url}{sep}scripts=eval");
    let (functions, scripts) = alternate(ROUNDS, |on_eval| {
        let url = if on_eval { eval.as_str() } else { url };
        async move { enqueue_rates(Some(url), scale).await }
    })
    .await;
    let mut rows: Vec<(String, Measured, Measured)> = EnqueueRates::ROWS
        .iter()
        .map(|row| {
            let f = EnqueueRates::median(&functions, row);
            (row.0.to_string(), f, EnqueueRates::median(&scripts, row))
        })
        .collect();
    for row in ours.processed {
        let (functions, scripts) = alternate(ROUNDS, |on_eval| {
            let url = if on_eval { eval.as_str() } else { url };
            async move { processed_quiet(url, scale, row.slots).await }
        })
        .await;
        rows.push((
            row.subject(),
            median_measured(&functions),
            median_measured(&scripts),
        ));
    }
    for (what, functions, scripts) in rows {
        let name = format!("{what}, scripts (EVALSHA)");
        report.measured(bench, &name, &scripts, "tasks/s");
        report.compared(
            bench,
            &format!("{what}, functions vs scripts"),
            &functions,
            "tasks/s",
            &name,
            &scripts,
        );
    }
    report.note(format!(
        "functions vs scripts: medians of {ROUNDS} alternating rounds each"
    ));
}
