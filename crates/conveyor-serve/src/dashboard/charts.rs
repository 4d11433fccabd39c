//! The overview's charts, drawn on the server as SVG by `plotters`: the
//! page needs no script to show them, and they arrive with each live update.

use plotters::prelude::*;

use super::history::{Rate, Sample};

/// Width and height of a chart, in pixels.
const SIZE: (u32, u32) = (560, 200);
const GREEN: RGBColor = RGBColor(0x1a, 0x7f, 0x37);
const RED: RGBColor = RGBColor(0xcf, 0x22, 0x2e);
const BLUE: RGBColor = RGBColor(0x09, 0x69, 0xda);
const AMBER: RGBColor = RGBColor(0x9a, 0x67, 0x00);
const GREY: RGBColor = RGBColor(0x65, 0x6d, 0x76);

/// One line of a chart.
struct Line<'a> {
    label: &'a str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// Completed and dead-lettered tasks per second.
pub(crate) fn throughput(rates: &[Rate]) -> String {
    let lines = [
        Line {
            label: "completed / s",
            color: GREEN,
            points: rates.iter().map(|r| (r.x, r.completed)).collect(),
        },
        Line {
            label: "dead / s",
            color: RED,
            points: rates.iter().map(|r| (r.x, r.dead)).collect(),
        },
    ];
    draw("Finished per second", &lines)
}

/// Tasks ready, running and waiting for a retry.
pub(crate) fn backlog(samples: &[Sample]) -> String {
    let Some(newest) = samples.last() else {
        return draw("Backlog", &[]);
    };
    let x = |s: &Sample| -newest.at.since(s.at).as_secs_f64();
    let series = |f: fn(&Sample) -> u64| samples.iter().map(|s| (x(s), f(s) as f64)).collect();
    let lines = [
        Line {
            label: "available",
            color: BLUE,
            points: series(|s| s.available),
        },
        Line {
            label: "running",
            color: GREEN,
            points: series(|s| s.running),
        },
        Line {
            label: "retrying",
            color: AMBER,
            points: series(|s| s.retrying),
        },
    ];
    draw("Backlog", &lines)
}

/// Seconds before now as a short label: `-5m`, `-30s`, `now`.
fn ago(x: &f64) -> String {
    let s = (-x).round() as i64;
    match s {
        0 => "now".to_string(),
        s if s % 60 == 0 => format!("-{}m", s / 60),
        s => format!("-{s}s"),
    }
}

/// A chart of `lines` over the seconds before now; an empty frame with a
/// note when there is nothing to draw yet.
fn draw(title: &str, lines: &[Line<'_>]) -> String {
    let mut svg = String::new();
    // Drawing into a string fails only on a plotters bug; the page then
    // shows no chart rather than failing.
    if let Err(e) = draw_into(&mut svg, title, lines) {
        tracing::debug!(error = %e, "a chart could not be drawn");
        svg.clear();
    }
    svg
}

fn draw_into(
    svg: &mut String,
    title: &str,
    lines: &[Line<'_>],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let points = || lines.iter().flat_map(|l| l.points.iter());
    let oldest = points().map(|p| p.0).fold(0.0_f64, f64::min).min(-60.0);
    let highest = points().map(|p| p.1).fold(0.0_f64, f64::max);
    let top = if highest > 0.0 { highest * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(22)
        .y_label_area_size(52)
        .build_cartesian_2d(oldest..0.0, 0.0..top)?;
    chart
        .configure_mesh()
        .x_labels(6)
        .y_labels(5)
        .x_label_formatter(&ago)
        .y_label_formatter(&|y| format_count(*y))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(GREY.mix(0.15))
        .axis_style(GREY.mix(0.6))
        .label_style(("sans-serif", 11).into_font().color(&GREY))
        .draw()?;
    let mut drawn = false;
    for line in lines.iter().filter(|l| !l.points.is_empty()) {
        let color = line.color;
        chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(line.label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2)));
        drawn = true;
    }
    if drawn {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(GREY.mix(0.3))
            .label_font(("sans-serif", 11))
            .draw()?;
    } else {
        root.draw(&Text::new(
            "collecting: the first points come with the next samples",
            (90, 100),
            ("sans-serif", 12).into_font().color(&GREY),
        ))?;
    }
    root.present()?;
    Ok(())
}

/// A count or rate, short: `12`, `1.5`, `12.3k`, `4.1M`.
fn format_count(y: f64) -> String {
    match y {
        y if y >= 1e6 => format!("{:.1}M", y / 1e6),
        y if y >= 1e4 => format!("{:.0}k", y / 1e3),
        y if y >= 1e3 => format!("{:.1}k", y / 1e3),
        y if y.fract() == 0.0 => format!("{y:.0}"),
        y => format!("{y:.1}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conveyor_core::Timestamp;

    #[test]
    fn charts_are_svg_with_their_lines_or_a_note() {
        let empty = throughput(&[]);
        assert!(empty.starts_with("<svg"), "{empty}");
        assert!(empty.contains("collecting"));
        let rates = [
            Rate {
                x: -5.0,
                completed: 10.0,
                dead: 1.0,
            },
            Rate {
                x: 0.0,
                completed: 12.0,
                dead: 0.0,
            },
        ];
        let svg = throughput(&rates);
        assert!(svg.contains("completed / s") && svg.contains("dead / s"));
        assert!(svg.contains("<polyline") || svg.contains("<path"), "{svg}");
        let sample = Sample {
            at: Timestamp(1_000),
            completed: 0,
            dead: 0,
            available: 3,
            running: 1,
            retrying: 0,
        };
        assert!(backlog(&[sample]).contains("available"));
    }

    #[test]
    fn labels_are_short() {
        assert_eq!(ago(&-300.0), "-5m");
        assert_eq!(ago(&-30.0), "-30s");
        assert_eq!(ago(&0.0), "now");
        assert_eq!(format_count(12_345.0), "12k");
        assert_eq!(format_count(1_500.0), "1.5k");
        assert_eq!(format_count(3.0), "3");
        assert_eq!(format_count(2.5), "2.5");
    }
}
