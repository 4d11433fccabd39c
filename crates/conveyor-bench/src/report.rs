//! Results of a benchmark run: a table for people, JSON lines for tools.
//!
//! A measured subject either did its whole workload, and its row has a
//! figure, or it did not (it stopped early, failed, ran out of time), and its
//! row has none: the value is `-` in the table and `null` in the JSON, and
//! the row says why (`no_figure`). A ratio exists only when both of its
//! figures do. [`Measured`] carries one or the other, and [`Report::measured`]
//! and [`Report::compared`] are where that rule is applied to a row.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// A measurement's figure, or why it has none.
pub type Measured = Result<f64, String>;

/// One row of the report.
#[derive(Debug, Clone)]
pub struct Row {
    /// The suite and backend (`queue/redis`).
    pub bench: String,
    /// What was measured.
    pub subject: String,
    /// The figure; `None` when the subject did not do its whole workload.
    pub value: Option<f64>,
    /// The figure's unit.
    pub unit: String,
    /// What the ratio is to.
    pub ratio_vs: Option<String>,
    /// The figure divided by the baseline's.
    pub ratio: Option<f64>,
    /// Why the value, or the ratio named by `ratio_vs`, is missing.
    pub no_figure: Option<String>,
}

/// All rows of a run.
#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Report {
    /// Adds a figure with no ratio.
    pub fn add(&mut self, bench: &str, subject: &str, value: f64, unit: &str) {
        self.push(Row {
            bench: bench.into(),
            subject: subject.into(),
            value: Some(value),
            unit: unit.into(),
            ratio_vs: None,
            ratio: None,
            no_figure: None,
        });
    }

    /// Adds a figure and its ratio to a baseline figure.
    pub fn add_vs(
        &mut self,
        bench: &str,
        subject: &str,
        value: f64,
        unit: &str,
        vs: &str,
        ratio: f64,
    ) {
        self.push(Row {
            bench: bench.into(),
            subject: subject.into(),
            value: Some(value),
            unit: unit.into(),
            ratio_vs: Some(vs.into()),
            ratio: Some(ratio),
            no_figure: None,
        });
    }

    /// Adds a measured subject: its figure, or a row with none that says why.
    pub fn measured(&mut self, bench: &str, subject: &str, measured: &Measured, unit: &str) {
        match measured {
            Ok(value) => self.add(bench, subject, *value, unit),
            Err(why) => self.push(Row {
                bench: bench.into(),
                subject: subject.into(),
                value: None,
                unit: unit.into(),
                ratio_vs: None,
                ratio: None,
                no_figure: Some(why.clone()),
            }),
        }
    }

    /// Adds a measured subject with its ratio to the baseline `vs`, the
    /// measured figure divided by the baseline's ([`Report::with_ratio`]).
    pub fn compared(
        &mut self,
        bench: &str,
        subject: &str,
        measured: &Measured,
        unit: &str,
        vs: &str,
        baseline: &Measured,
    ) {
        let ratio = match baseline {
            Ok(_) => ratio_of(measured, baseline),
            Err(why) => Err(format!("{vs} has no figure: {why}")),
        };
        self.with_ratio(bench, subject, measured, unit, vs, &ratio);
    }

    /// Adds a measured subject with a ratio to `vs` measured apart (a median
    /// of rounds' ratios): with no figure of its own the row has none (and
    /// says why); with a figure but no ratio, the row keeps its figure and
    /// says why it has no ratio.
    pub fn with_ratio(
        &mut self,
        bench: &str,
        subject: &str,
        measured: &Measured,
        unit: &str,
        vs: &str,
        ratio: &Measured,
    ) {
        match (measured, ratio) {
            (Err(_), _) => self.measured(bench, subject, measured, unit),
            (Ok(value), Ok(ratio)) => self.add_vs(bench, subject, *value, unit, vs, *ratio),
            (Ok(value), Err(why)) => self.push(Row {
                bench: bench.into(),
                subject: subject.into(),
                value: Some(*value),
                unit: unit.into(),
                ratio_vs: Some(vs.into()),
                ratio: None,
                no_figure: Some(format!("no ratio: {why}")),
            }),
        }
    }

    /// Adds a remark (a skipped baseline, a caveat) printed under the table.
    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        eprintln!("  note: {text}");
        self.notes.push(text);
    }

    /// Records a row and prints it to stderr as it comes.
    fn push(&mut self, r: Row) {
        eprintln!(
            "  {:<28} {:<34} {:>14} {}{}{}",
            r.bench,
            r.subject,
            value_text(r.value),
            r.unit,
            match (&r.ratio, &r.ratio_vs) {
                (Some(x), Some(vs)) => format!("  ({x:.2}x vs {vs})"),
                _ => String::new(),
            },
            r.no_figure
                .as_deref()
                .map_or(String::new(), |why| format!("  [no figure: {why}]")),
        );
        self.rows.push(r);
    }

    /// Prints the table and its notes, then one JSON object per row.
    pub fn print(&self) {
        println!(
            "{:<28} {:<34} {:>14} {:<8} {:>8}  vs",
            "bench", "subject", "value", "unit", "ratio"
        );
        for r in &self.rows {
            let ratio = r.ratio.map_or(String::from("-"), |x| format!("{x:.2}"));
            let why = r
                .no_figure
                .as_deref()
                .map_or(String::new(), |why| format!("  [no figure: {why}]"));
            println!(
                "{:<28} {:<34} {:>14} {:<8} {:>8}  {}{why}",
                r.bench,
                r.subject,
                value_text(r.value),
                r.unit,
                ratio,
                r.ratio_vs.as_deref().unwrap_or("-")
            );
        }
        for n in &self.notes {
            println!("note: {n}");
        }
        for r in &self.rows {
            let mut line = json!({
                "bench": r.bench,
                "subject": r.subject,
                "value": r.value,
                "unit": r.unit,
                "ratio_vs": r.ratio_vs,
                "ratio": r.ratio,
            });
            if let Some(why) = &r.no_figure {
                line["no_figure"] = json!(why);
            }
            println!("{line}");
        }
    }
}

/// A value as the table shows it: two decimals, or `-` for none.
fn value_text(value: Option<f64>) -> String {
    value.map_or(String::from("-"), |v| format!("{v:.2}"))
}

/// The median of `values` (the upper one of an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `a / b`, when both have a figure; else why the first that has none does
/// not.
pub fn ratio_of(a: &Measured, b: &Measured) -> Measured {
    Ok(a.as_ref().map_err(Clone::clone)? / b.as_ref().map_err(Clone::clone)?)
}

/// Whether `candidate` should replace `best` as the best of several
/// configurations (the highest figure): always over nothing (so that, when
/// none has a figure, the baseline still says why), and a figure over no
/// figure or over a lower one.
pub fn better(candidate: &Measured, best: Option<&Measured>) -> bool {
    match (candidate, best) {
        (_, None) => true,
        (Ok(c), Some(Ok(b))) => c > b,
        (Ok(_), Some(Err(_))) => true,
        (Err(_), Some(_)) => false,
    }
}

/// The median of measured rounds: a figure only when every round has one,
/// else why the first that has none does not.
pub fn median_measured(rounds: &[Measured]) -> Measured {
    let mut figures = Vec::with_capacity(rounds.len());
    for (i, round) in rounds.iter().enumerate() {
        match round {
            Ok(v) => figures.push(*v),
            Err(why) => return Err(format!("round {} of {}: {why}", i + 1, rounds.len())),
        }
    }
    if figures.is_empty() {
        return Err("no round ran".into());
    }
    Ok(median(&figures))
}

/// The longest a worker may take over a measured workload.
pub const WORKLOAD_LIMIT: Duration = Duration::from_secs(300);

/// How long a worker asked to stop may take to end.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Runs a worker's measured workload of `n` tasks to its end: waits until
/// `all` is notified (when `done` reaches `n`), then calls `stop` and waits
/// for the worker (`run`) to end. The time from `t` to the n-th task and
/// what the worker returned; or, when it ended first, failed to stop, or
/// [`WORKLOAD_LIMIT`] passed, why there is no figure (`stopped after 512 of
/// 100000 tasks: …`).
pub async fn workload<R, E: std::fmt::Debug>(
    mut run: JoinHandle<Result<R, E>>,
    stop: impl FnOnce(),
    all: &Notify,
    done: &AtomicUsize,
    n: usize,
    t: Instant,
) -> Result<(Duration, R), String> {
    let elapsed = tokio::select! {
        // The n-th task notifies before a worker that stops itself ends:
        // when both are ready, the workload was done.
        biased;
        _ = all.notified() => t.elapsed(),
        ended = &mut run => {
            let done = done.load(Ordering::Relaxed);
            return Err(match ended {
                Ok(Err(e)) => format!("stopped after {done} of {n} tasks: {e:?}"),
                Ok(Ok(_)) => format!("stopped after {done} of {n} tasks, with no error"),
                Err(e) => format!("stopped after {done} of {n} tasks: {e}"),
            });
        }
        _ = tokio::time::sleep(WORKLOAD_LIMIT) => {
            let done = done.load(Ordering::Relaxed);
            stop();
            let _ = stopped(run).await;
            return Err(format!(
                "{done} of {n} tasks done in {} s",
                WORKLOAD_LIMIT.as_secs()
            ));
        }
    };
    stop();
    let ended = stopped(run)
        .await
        .map_err(|e| format!("all {n} tasks ran, but {e}"))?;
    Ok((elapsed, ended))
}

/// Waits for a worker asked to stop to end (aborting it after 30 s): what it
/// returned, or why it did not end well.
pub async fn stopped<R, E: std::fmt::Debug>(
    mut run: JoinHandle<Result<R, E>>,
) -> Result<R, String> {
    match tokio::time::timeout(STOP_GRACE, &mut run).await {
        Ok(Ok(Ok(r))) => Ok(r),
        Ok(Ok(Err(e))) => Err(format!("the worker's stop failed: {e:?}")),
        Ok(Err(e)) => Err(format!("the worker {e}")),
        Err(_) => {
            run.abort();
            Err(format!(
                "the worker did not stop within {} s",
                STOP_GRACE.as_secs()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_subject_has_no_figure_and_no_ratio() {
        let mut report = Report::default();
        let failed: Measured = Err("stopped after 512 of 100000 tasks: timed out".into());
        report.measured("b", "peer", &failed, "tasks/s");
        report.compared("b", "ours vs peer", &Ok(10.0), "tasks/s", "peer", &failed);
        report.compared("b", "peer vs ours", &failed, "tasks/s", "ours", &Ok(10.0));
        report.compared(
            "b",
            "ours vs other",
            &Ok(10.0),
            "tasks/s",
            "other",
            &Ok(4.0),
        );
        let rows = &report.rows;
        assert_eq!(rows[0].value, None);
        assert_eq!(
            rows[0].no_figure.as_deref(),
            Some("stopped after 512 of 100000 tasks: timed out")
        );
        assert_eq!((rows[1].value, rows[1].ratio), (Some(10.0), None));
        assert_eq!(
            rows[1].no_figure.as_deref(),
            Some("no ratio: peer has no figure: stopped after 512 of 100000 tasks: timed out")
        );
        assert_eq!((rows[2].value, rows[2].ratio), (None, None));
        assert_eq!(
            (rows[3].ratio, rows[3].no_figure.as_deref()),
            (Some(2.5), None)
        );
    }

    #[test]
    fn a_median_needs_every_round() {
        assert_eq!(median_measured(&[Ok(1.0), Ok(3.0), Ok(2.0)]), Ok(2.0));
        let err = median_measured(&[Ok(1.0), Err("timed out".into()), Ok(2.0)]).unwrap_err();
        assert_eq!(err, "round 2 of 3: timed out");
        assert!(median_measured(&[]).is_err());
    }

    #[tokio::test]
    async fn a_worker_that_ends_early_has_no_figure() {
        let (all, done) = (Notify::new(), AtomicUsize::new(512));
        let run = tokio::spawn(async { Err::<(), _>("PollNextError(timed out)") });
        let why = workload(run, || {}, &all, &done, 100_000, Instant::now())
            .await
            .unwrap_err();
        assert_eq!(
            why,
            "stopped after 512 of 100000 tasks: \"PollNextError(timed out)\""
        );
    }

    #[tokio::test]
    async fn a_worker_that_stops_itself_at_the_nth_task_has_a_figure() {
        for _ in 0..100 {
            let (all, done) = (Notify::new(), AtomicUsize::new(10));
            all.notify_one();
            let run = tokio::spawn(async { Ok::<(), ()>(()) });
            while !run.is_finished() {
                tokio::task::yield_now().await;
            }
            assert!(workload(run, || {}, &all, &done, 10, Instant::now())
                .await
                .is_ok());
        }
    }

    #[tokio::test]
    async fn a_worker_that_fails_its_stop_has_no_figure() {
        let (all, done) = (Notify::new(), AtomicUsize::new(10));
        all.notify_one();
        let run = tokio::spawn(async { Err::<(), _>("timed out") });
        let why = workload(run, || {}, &all, &done, 10, Instant::now())
            .await
            .unwrap_err();
        assert_eq!(
            why,
            "all 10 tasks ran, but the worker's stop failed: \"timed out\""
        );
        let run = tokio::spawn(async { Ok::<u8, ()>(7) });
        all.notify_one();
        let (_, ended) = workload(run, || {}, &all, &done, 10, Instant::now())
            .await
            .unwrap();
        assert_eq!(ended, 7);
    }

    #[test]
    fn the_best_configuration_has_the_highest_figure() {
        let failed: Measured = Err("x".into());
        assert!(better(&failed, None));
        assert!(better(&Ok(1.0), Some(&failed)));
        assert!(!better(&failed, Some(&Ok(1.0))));
        assert!(better(&Ok(2.0), Some(&Ok(1.0))));
        assert!(!better(&Ok(1.0), Some(&Ok(2.0))));
    }
}
