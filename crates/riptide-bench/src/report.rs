//! What a run reports: one Markdown table per scenario (and the throughput and resources tables)
//! on stdout, the same tables as JSON (`--json`), and `latency.svg` next to it.

use std::path::PathBuf;

use anyhow::Result;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::Args;
use crate::chart;
use crate::usage::Resources;

/// One printed table (and its JSON).
pub struct Table {
    pub title: String,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    pub metrics: Value,
}

/// One row of the throughput table.
pub struct Row {
    pub scenario: String,
    pub amount: String,
    pub seconds: f64,
    pub rate: String,
    pub note: String,
}

/// What a live latency scenario measured, for the chart.
pub struct LiveRun {
    pub label: String,
    pub histogram: Histogram<u64>,
    /// Deliveries per second of the run, from the writer's start.
    pub per_second: Vec<u64>,
}

/// Everything the scenarios measured so far, in the order they ran.
#[derive(Default)]
pub struct Report {
    /// The scenarios' own tables.
    pub tables: Vec<Table>,
    /// The throughput table's rows.
    pub rows: Vec<Row>,
    resources: Vec<Resources>,
    /// The chart's lines: latency percentile curves and deliveries per second.
    curves: Vec<chart::Series>,
    per_second: Vec<chart::Series>,
}

impl Report {
    pub fn measured(&mut self, used: Resources) {
        self.resources.push(used);
    }

    /// The raw streams' latency curve and deliveries per second.
    pub fn latency_run(&mut self, run: LiveRun) {
        self.curves.push(chart::Series {
            label: format!("{} (raw streams)", run.label),
            points: chart::percentile_curve(&run.histogram),
        });
        self.per_second.push(chart::Series {
            label: run.label,
            points: run
                .per_second
                .iter()
                .enumerate()
                .map(|(s, n)| (s as f64, *n as f64))
                .collect(),
        });
    }

    /// The `@powersync/node` clients' latency curve.
    pub fn node_latency_run(&mut self, clients: usize, histogram: &Histogram<u64>) {
        self.curves.push(chart::Series {
            label: format!("{clients} @powersync/node clients, SQLite"),
            points: chart::percentile_curve(histogram),
        });
    }

    /// Prints every table, writes the JSON and the chart.
    pub fn finish(mut self, args: &Args) -> Result<()> {
        if !self.rows.is_empty() {
            self.tables.push(throughput(&self.rows));
        }
        self.tables.push(resources(&self.resources));
        for t in &self.tables {
            print!("{}", markdown(t));
        }
        if let Some(dir) = args.json.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let json: Vec<Value> = self
            .tables
            .iter()
            .map(|t| json!({"table": t.title, "columns": t.columns, "rows": t.rows, "metrics": t.metrics}))
            .collect();
        std::fs::write(
            &args.json,
            serde_json::to_string_pretty(&json!({"short": args.short, "tables": json}))?,
        )?;
        println!("\nresults written to {}", args.json.display());
        if !self.curves.is_empty() {
            let path = args
                .json
                .parent()
                .map_or_else(|| PathBuf::from("latency.svg"), |d| d.join("latency.svg"));
            let svg = chart::latency_svg(
                "Write → every subscribed stream",
                &self.curves,
                &self.per_second,
            );
            std::fs::write(&path, svg)?;
            println!("latency chart written to {}", path.display());
        }
        Ok(())
    }
}

/// A table as printed: a blank line, `### title`, a blank line, then Markdown rows.
fn markdown(t: &Table) -> String {
    let mut out = format!("\n### {}\n\n", t.title);
    out.push_str(&format!("| {} |\n", t.columns.join(" | ")));
    out.push_str(&format!("|{}\n", "---|".repeat(t.columns.len())));
    for r in &t.rows {
        out.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    out
}

fn throughput(rows: &[Row]) -> Table {
    Table {
        title: "Throughput".into(),
        columns: vec!["scenario", "amount", "seconds", "rate", "note"],
        rows: rows
            .iter()
            .map(|r| {
                vec![
                    r.scenario.clone(),
                    r.amount.clone(),
                    format!("{:.2}", r.seconds),
                    r.rate.clone(),
                    r.note.clone(),
                ]
            })
            .collect(),
        metrics: rows
            .iter()
            .map(|r| json!({"scenario": r.scenario, "amount": r.amount, "seconds": r.seconds, "rate": r.rate, "note": r.note}))
            .collect(),
    }
}

fn resources(resources: &[Resources]) -> Table {
    let mib = |b: u64| format!("{:.1}", b as f64 / (1024.0 * 1024.0));
    Table {
        title: "CPU time and memory per scenario (service = `riptide serve`, load = this process, \
                Postgres = source and storage databases)"
            .into(),
        columns: vec![
            "scenario",
            "service CPU s",
            "service RSS MiB (end)",
            "service peak RSS MiB",
            "load CPU s",
            "load RSS MiB (end)",
            "Postgres CPU s",
        ],
        rows: resources
            .iter()
            .map(|r| {
                vec![
                    r.scenario.clone(),
                    format!("{:.2}", r.service.1.cpu_s - r.service.0.cpu_s),
                    mib(r.service.1.rss),
                    mib(r.service.1.peak_rss),
                    format!("{:.2}", r.bench.1.cpu_s - r.bench.0.cpu_s),
                    mib(r.bench.1.rss),
                    format!("{:.2}", r.postgres.1 - r.postgres.0),
                ]
            })
            .collect(),
        metrics: resources
            .iter()
            .map(|r| {
                json!({
                    "scenario": r.scenario,
                    "service_cpu_s": r.service.1.cpu_s - r.service.0.cpu_s,
                    "service_rss_bytes": r.service.1.rss,
                    "service_peak_rss_bytes": r.service.1.peak_rss,
                    "load_cpu_s": r.bench.1.cpu_s - r.bench.0.cpu_s,
                    "load_rss_bytes": r.bench.1.rss,
                    "postgres_cpu_s": r.postgres.1 - r.postgres.0,
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_prints_as_markdown() {
        let table = Table {
            title: "T".into(),
            columns: vec!["a", "b"],
            rows: vec![vec!["1".into(), "2".into()]],
            metrics: json!({}),
        };
        assert_eq!(
            markdown(&table),
            "\n### T\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
        );
    }
}
