//! The latency waterfall (`app-latency.svg`): one row per step of a write's path, each a bar
//! from the previous step's median to its own (the time the step adds, at the median) and a
//! whisker out to its 95th percentile, on one axis of milliseconds since the write started.

use std::fmt::Write;

use crate::chart::{escape, nice_ticks, number};
use crate::steps::Step;

const WIDTH: f64 = 860.0;
const ROW: f64 = 34.0;
/// Where the bars' axis starts and ends, px.
const AXIS: (f64, f64) = (250.0, 800.0);
const BAR: &str = "#0072b2";
const WHISKER: &str = "#d55e00";

/// The chart of `steps` (in path order, times since the write's start).
pub fn waterfall_svg(title: &str, subtitle: &str, steps: &[Step]) -> String {
    let p50: Vec<f64> = steps.iter().map(|s| s.percentile(50.0)).collect();
    let p95: Vec<f64> = steps.iter().map(|s| s.percentile(95.0)).collect();
    let max = p95.iter().chain(&p50).copied().fold(1.0, f64::max);
    let ticks = nice_ticks(max);
    let end = ticks.last().copied().unwrap_or(max);
    let x = |ms: f64| AXIS.0 + (AXIS.1 - AXIS.0) * (ms / end).clamp(0.0, 1.0);
    let top = 78.0;
    let bottom = top + ROW * steps.len() as f64;
    let height = bottom + 62.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"{WIDTH}\" height=\"{height}\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"26\" text-anchor=\"middle\" font-size=\"17\" font-weight=\"bold\">{}</text>\n\
         <text x=\"{}\" y=\"46\" text-anchor=\"middle\" fill=\"#444\">{}</text>\n",
        WIDTH / 2.0,
        escape(title),
        WIDTH / 2.0,
        escape(subtitle),
    );
    for t in &ticks {
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"{top}\" x2=\"{0:.1}\" y2=\"{bottom}\" stroke=\"#ddd\"/>\
             <text x=\"{0:.1}\" y=\"{1}\" text-anchor=\"middle\">{2}</text>",
            x(*t),
            bottom + 16.0,
            number(*t)
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">ms since A pressed Enter \
         (bar: what the step adds at the median; whisker: its 95th percentile)</text>",
        (AXIS.0 + AXIS.1) / 2.0,
        bottom + 38.0
    );
    let mut previous: f64 = 0.0;
    for (i, step) in steps.iter().enumerate() {
        let y = top + ROW * i as f64;
        let from = previous.min(p50[i]);
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n\
             <rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{BAR}\"/>\n\
             <line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{WHISKER}\" stroke-width=\"2\"/>\n\
             <line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{WHISKER}\" stroke-width=\"2\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#222\">p50 {} · p95 {} ms</text>",
            AXIS.0 - 10.0,
            y + ROW / 2.0 + 4.0,
            escape(&step.label),
            x(from),
            y + 8.0,
            (x(p50[i]) - x(from)).max(1.5),
            ROW - 16.0,
            x(p50[i]),
            y + ROW / 2.0,
            x(p95[i]),
            y + ROW / 2.0,
            x(p95[i]),
            y + 11.0,
            x(p95[i]),
            y + ROW - 11.0,
            x(p95[i]).max(x(p50[i])) + 6.0,
            y + ROW / 2.0 + 4.0,
            number((p50[i] * 10.0).round() / 10.0),
            number((p95[i] * 10.0).round() / 10.0),
        );
        previous = previous.max(p50[i]);
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_step_with_its_figures() {
        let steps = vec![
            Step {
                label: "first <step>".into(),
                ms: vec![1.0, 2.0, 3.0],
            },
            Step {
                label: "second".into(),
                ms: vec![10.0, 20.0, 30.0],
            },
        ];
        let svg = waterfall_svg("Title", "sub", &steps);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("first &lt;step&gt;"), "labels are escaped");
        assert!(svg.contains(">p50 2 · p95 3 ms<"), "{svg}");
        assert!(svg.contains(">p50 20 · p95 30 ms<"), "{svg}");
        assert_eq!(svg.matches("<rect").count(), 1 + steps.len());
    }
}
