//! Results of a benchmark run: a table for people, JSON lines for tools.

use serde_json::json;

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Row {
    pub bench: String,
    pub subject: String,
    pub value: f64,
    pub unit: String,
    pub ratio_vs: Option<String>,
    pub ratio: Option<f64>,
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
        self.rows.push(Row {
            bench: bench.into(),
            subject: subject.into(),
            value,
            unit: unit.into(),
            ratio_vs: None,
            ratio: None,
        });
        eprintln!("  {bench:<28} {subject:<34} {value:>14.2} {unit}");
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
        self.rows.push(Row {
            bench: bench.into(),
            subject: subject.into(),
            value,
            unit: unit.into(),
            ratio_vs: Some(vs.into()),
            ratio: Some(ratio),
        });
        eprintln!("  {bench:<28} {subject:<34} {value:>14.2} {unit}  ({ratio:.2}x vs {vs})");
    }

    /// Adds a remark (a skipped baseline, a caveat) printed under the table.
    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        eprintln!("  note: {text}");
        self.notes.push(text);
    }

    /// Prints the table and its notes, then one JSON object per row.
    pub fn print(&self) {
        println!(
            "{:<28} {:<34} {:>14} {:<8} {:>8}  vs",
            "bench", "subject", "value", "unit", "ratio"
        );
        for r in &self.rows {
            let ratio = r.ratio.map_or(String::from("-"), |x| format!("{x:.2}"));
            println!(
                "{:<28} {:<34} {:>14.2} {:<8} {:>8}  {}",
                r.bench,
                r.subject,
                r.value,
                r.unit,
                ratio,
                r.ratio_vs.as_deref().unwrap_or("-")
            );
        }
        for n in &self.notes {
            println!("note: {n}");
        }
        for r in &self.rows {
            println!(
                "{}",
                json!({
                    "bench": r.bench,
                    "subject": r.subject,
                    "value": r.value,
                    "unit": r.unit,
                    "ratio_vs": r.ratio_vs,
                    "ratio": r.ratio,
                })
            );
        }
    }
}

/// The median of `values` (the upper one of an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
