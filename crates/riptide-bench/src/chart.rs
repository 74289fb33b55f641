//! The latency chart (`target/bench/latency.svg`): hand-written SVG, two panels side by side.
//! Left, each latency scenario's distribution as a percentile curve from its HDR histogram, on
//! a "nines" axis (0, 90, 99, 99.9, 99.99 % equally spaced) so that the tail is as wide as the
//! body; right, deliveries per second over the run.

use std::fmt::Write;

use hdrhistogram::Histogram;

/// Width and height of the whole picture, px.
const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 500.0;
/// Series colours, in order (colour-blind safe).
const COLOURS: [&str; 4] = ["#0072b2", "#d55e00", "#009e73", "#cc79a7"];
/// The highest percentile drawn: 99.99 %, four nines.
const MAX_NINES: f64 = 4.0;

/// One labelled line.
pub struct Series {
    pub label: String,
    /// (x, y) in the panel's own units (x already on the panel's scale).
    pub points: Vec<(f64, f64)>,
}

/// One plot: axes, ticks and lines.
struct Panel<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    /// The x axis' range and its labelled ticks.
    x_range: (f64, f64),
    x_ticks: Vec<(f64, String)>,
    series: &'a [Series],
}

/// A latency distribution's percentile curve: (nines, ms) where nines = −log10(1 − q), from
/// 0 (the minimum) to 4 (99.99 %).
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    (0..=200)
        .map(|i| {
            let nines = MAX_NINES * f64::from(i) / 200.0;
            let q = 1.0 - 10f64.powf(-nines);
            (nines, h.value_at_quantile(q) as f64 / 1000.0)
        })
        .collect()
}

/// The chart: latency curves on the left, deliveries per second (one series per scenario,
/// one value per second of the run) on the right.
pub fn latency_svg(title: &str, curves: &[Series], per_second: &[Series]) -> String {
    let nines_ticks = ["0", "90", "99", "99.9", "99.99"]
        .iter()
        .enumerate()
        .map(|(i, label)| (i as f64, format!("{label}%")))
        .collect();
    let latency = Panel {
        title: "Latency by percentile",
        x_label: "percentile",
        y_label: "ms",
        x_range: (0.0, MAX_NINES),
        x_ticks: nines_ticks,
        series: curves,
    };
    let last_second = per_second
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let throughput = Panel {
        title: "Deliveries per second",
        x_label: "second of the run",
        y_label: "deliveries/s",
        x_range: (0.0, last_second),
        x_ticks: nice_ticks(last_second)
            .into_iter()
            .map(|t| (t, number(t)))
            .collect(),
        series: per_second,
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"28\" text-anchor=\"middle\" font-size=\"17\" font-weight=\"bold\">{}</text>\n",
        WIDTH / 2.0,
        escape(title)
    );
    let top = 70.0;
    let bottom = HEIGHT - 60.0;
    panel(&mut svg, &latency, (65.0, 375.0), (top, bottom));
    panel(&mut svg, &throughput, (470.0, 780.0), (top, bottom));
    svg.push_str("</svg>\n");
    svg
}

/// One side of [`over_time_svg`]: its title, y-axis label and lines (x in seconds).
pub struct Side<'a> {
    pub title: &'a str,
    pub y_label: &'a str,
    pub series: &'a [Series],
}

/// Two panels of lines over the seconds of a run, side by side (the compaction scenario's
/// storage over time).
pub fn over_time_svg(title: &str, left: &Side, right: &Side) -> String {
    let last_second = [left, right]
        .iter()
        .flat_map(|side| side.series.iter())
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let ticks: Vec<(f64, String)> = nice_ticks(last_second)
        .into_iter()
        .map(|t| (t, number(t)))
        .collect();
    let x_range = (0.0, ticks.last().map_or(last_second, |t| t.0));
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"28\" text-anchor=\"middle\" font-size=\"17\" font-weight=\"bold\">{}</text>\n",
        WIDTH / 2.0,
        escape(title)
    );
    let (top, bottom) = (70.0, HEIGHT - 60.0);
    for (side, x) in [(left, (65.0, 375.0)), (right, (470.0, 780.0))] {
        let p = Panel {
            title: side.title,
            x_label: "second of the run",
            y_label: side.y_label,
            x_range,
            x_ticks: ticks.clone(),
            series: side.series,
        };
        panel(&mut svg, &p, x, (top, bottom));
    }
    svg.push_str("</svg>\n");
    svg
}

/// Draws one panel into the plot area `x` (left, right) × `y` (top, bottom).
fn panel(svg: &mut String, p: &Panel, x: (f64, f64), y: (f64, f64)) {
    let y_max = p
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|pt| pt.1))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    // Headroom above the highest line for the legend.
    let y_ticks = nice_ticks(if y_max > 0.0 { y_max * 1.2 } else { 1.0 });
    let y_top = y_ticks.last().copied().unwrap_or(1.0);
    let (x0, x1) = p.x_range;
    let px = |v: f64| x.0 + (v - x0) / (x1 - x0).max(f64::EPSILON) * (x.1 - x.0);
    let py = |v: f64| y.1 - v / y_top * (y.1 - y.0);
    let _ = writeln!(
        svg,
        "<g class=\"panel\">\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"14\" \
         font-weight=\"bold\">{}</text>",
        (x.0 + x.1) / 2.0,
        y.0 - 14.0,
        escape(p.title)
    );
    // Grid and tick labels.
    for t in &y_ticks {
        let _ = writeln!(
            svg,
            "<line x1=\"{:.1}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#e0e0e0\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            x.0,
            x.1,
            x.0 - 6.0,
            py(*t) + 4.0,
            number(*t),
            yy = py(*t),
        );
    }
    for (t, label) in &p.x_ticks {
        let _ = writeln!(
            svg,
            "<line x1=\"{xx:.1}\" y1=\"{:.1}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#e0e0e0\"/>\n\
             <text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            y.0,
            y.1,
            y.1 + 18.0,
            escape(label),
            xx = px(*t),
        );
    }
    // Axes and their labels.
    let _ = writeln!(
        svg,
        "<line x1=\"{x0:.1}\" y1=\"{y1:.1}\" x2=\"{x1:.1}\" y2=\"{y1:.1}\" stroke=\"black\"/>\n\
         <line x1=\"{x0:.1}\" y1=\"{y0:.1}\" x2=\"{x0:.1}\" y2=\"{y1:.1}\" stroke=\"black\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n\
         <text transform=\"translate({:.1} {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        (x.0 + x.1) / 2.0,
        y.1 + 38.0,
        escape(p.x_label),
        x.0 - 48.0,
        (y.0 + y.1) / 2.0,
        escape(p.y_label),
        x0 = x.0,
        x1 = x.1,
        y0 = y.0,
        y1 = y.1,
    );
    if p.series.iter().all(|s| s.points.is_empty()) {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#888\">no data</text>",
            (x.0 + x.1) / 2.0,
            (y.0 + y.1) / 2.0
        );
    }
    // Lines, then the legend (top left, inside the plot).
    for (i, s) in p.series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<String> = s
            .points
            .iter()
            .filter(|(a, b)| a.is_finite() && b.is_finite())
            .map(|(a, b)| format!("{:.1},{:.1}", px(*a), py(*b)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        let ly = y.0 + 14.0 + 18.0 * i as f64;
        let _ = writeln!(
            svg,
            "<line x1=\"{:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{colour}\" \
             stroke-width=\"3\"/>\n<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x.0 + 10.0,
            x.0 + 30.0,
            x.0 + 36.0,
            ly + 4.0,
            escape(&s.label)
        );
    }
    svg.push_str("</g>\n");
}

/// Ticks from 0 to at least `max`, 1/2/5 × 10^k apart, about five of them.
pub fn nice_ticks(max: f64) -> Vec<f64> {
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let n = (max / step).ceil().max(1.0) as usize;
    (0..=n).map(|i| i as f64 * step).collect()
}

/// A tick label: no trailing zeros.
pub fn number(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_of_synthetic_runs_is_well_formed() {
        let mut h = crate::live::histogram();
        for us in 1..=10_000u64 {
            h.record(us * 3).unwrap();
        }
        let curve = percentile_curve(&h);
        assert_eq!(curve.first().map(|p| p.0), Some(0.0));
        assert_eq!(curve.last().map(|p| p.0), Some(MAX_NINES));
        assert!(curve.windows(2).all(|w| w[0].1 <= w[1].1), "monotonic");
        let per_second = vec![Series {
            label: "100 streams <&> writes".into(),
            points: (0..60).map(|s| (f64::from(s), 10_000.0)).collect(),
        }];
        let svg = latency_svg(
            "Write → stream",
            &[Series {
                label: "raw streams".into(),
                points: curve,
            }],
            &per_second,
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        for label in [
            "99.99%",
            "99.9%",
            "percentile",
            "ms",
            "deliveries/s",
            "second of the run",
        ] {
            assert!(svg.contains(&format!(">{label}<")), "axis label {label}");
        }
        assert!(svg.contains("&lt;&amp;&gt;"), "legend text is escaped");
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        // Every element opened is closed (all are self-closing or paired).
        assert_eq!(svg.matches("<g ").count(), svg.matches("</g>").count());
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    }

    #[test]
    fn empty_input_still_draws_axes() {
        let svg = latency_svg("empty", &[], &[]);
        assert!(svg.starts_with("<svg") && svg.contains("no data"));
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn over_time_chart_is_well_formed() {
        let series = |label: &str| Series {
            label: label.into(),
            points: (0..30).map(|s| (f64::from(s), f64::from(s % 7))).collect(),
        };
        let svg = over_time_svg(
            "Storage",
            &Side {
                title: "ops",
                y_label: "thousands",
                series: &[series("written"), series("stored")],
            },
            &Side {
                title: "size",
                y_label: "MiB",
                series: &[series("bucket_data")],
            },
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains(">second of the run<") && svg.contains(">MiB<"));
        assert!(!svg.contains("NaN"));
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    }

    #[test]
    fn ticks_are_round() {
        let labels =
            |max: f64| -> Vec<String> { nice_ticks(max).into_iter().map(number).collect() };
        assert_eq!(labels(9.0), ["0", "2", "4", "6", "8", "10"]);
        assert_eq!(labels(1.0), ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
        assert_eq!(labels(1234.0), ["0", "500", "1000", "1500"]);
    }
}
