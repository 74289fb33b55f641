//! The realtime app template in Chromium, two users (`e2e/bench/app-latency.mjs`): A adds
//! todos to a list shared with B, one at a time; each step of a todo's path from A's Enter key
//! to B's screen is timed (the script's header says how). p50/p95 per step, and the waterfall
//! chart `app-latency.svg` next to the JSON.
//!
//! It runs its own `riptide serve` and `realtime-app-server` (the one next to `--riptide`) on
//! fresh databases of the bench cluster, which commits as a production database does for the
//! scenario's duration (`synchronous_commit = on`, Postgres's default `wal_writer_delay`), as
//! the platform's local cluster does. Skipped, with the reason, only when Chromium is missing.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::Bench;
use crate::report::Table;
use crate::steps::{self, Step};
use crate::waterfall;

/// The script's keys, in path order, and what they time.
const STEPS: [(&str, &str); 7] = [
    ("local", "in A's SQLite"),
    ("request", "POST /api/sync received"),
    ("commit", "committed to Postgres"),
    ("replicated", "replicated (storage commit)"),
    ("sent", "sent on B's sync stream"),
    ("applied", "in B's SQLite"),
    ("rendered", "on B's screen"),
];

/// The table and the chart, or `None` when Chromium is missing (the reason is printed).
pub async fn run(bench: &Bench<'_>) -> Result<Option<Table>> {
    let todos = if bench.args.short { 10 } else { 50 };
    bench.databases.commit_durably().await?;
    let result = drive(bench, todos).await;
    bench.databases.reset_commits().await?;
    let v = result?;
    if let Some(reason) = v["skipped"].as_str() {
        eprintln!("skipping the app-latency scenario: {reason}");
        return Ok(None);
    }
    let samples = v["samples"].as_array().context("samples")?;
    if samples.len() < todos {
        bail!("{} of {todos} todos timed", samples.len());
    }
    let steps = steps::collect(samples, &STEPS);
    let title = "Template in Chromium: A adds a todo → it shows on B's screen";
    let subtitle = format!(
        "{todos} todos, one at a time; riptide serve, realtime-app-server and Postgres on one machine"
    );
    let path = bench.args.json.parent().map_or_else(
        || PathBuf::from("app-latency.svg"),
        |d| d.join("app-latency.svg"),
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, waterfall::waterfall_svg(title, &subtitle, &steps))?;
    println!("app-latency waterfall written to {}", path.display());
    let mut table = table(todos, &steps);
    table.metrics["samples"] = Value::Array(samples.clone());
    Ok(Some(table))
}

fn table(todos: usize, steps: &[Step]) -> Table {
    Table {
        title: format!(
            "Template in Chromium, two users: A adds {todos} todos one at a time (ms since A \
             pressed Enter, per step)"
        ),
        columns: vec!["step", "todos", "p50", "p95", "max"],
        rows: steps
            .iter()
            .map(|s| {
                vec![
                    s.label.clone(),
                    s.ms.len().to_string(),
                    format!("{:.1}", s.percentile(50.0)),
                    format!("{:.1}", s.percentile(95.0)),
                    format!("{:.1}", s.percentile(100.0)),
                ]
            })
            .collect(),
        metrics: json!({
            "todos": todos,
            "steps": steps.iter().map(Step::json).collect::<Vec<_>>(),
        }),
    }
}

/// Runs the script; its JSON line.
async fn drive(bench: &Bench<'_>, todos: usize) -> Result<Value> {
    let script = PathBuf::from("e2e/bench/app-latency.mjs");
    for (dir, what) in [
        ("e2e/node_modules/playwright-core", "cd e2e && npm ci"),
        (
            "templates/realtime/web/node_modules",
            "cd templates/realtime/web && npm ci",
        ),
    ] {
        if !Path::new(dir).is_dir() {
            bail!("{dir} missing ({what})");
        }
    }
    let app_server = bench.args.riptide.with_file_name("realtime-app-server");
    if !app_server.is_file() {
        bail!(
            "{} missing (cargo build -p realtime-app-server)",
            app_server.display()
        );
    }
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .env(
            "RIPTIDE_TEST_PG_URL",
            riptide_localpg::url(bench.databases.pg_port, "postgres"),
        )
        .env("RIPTIDE_BIN", &bench.args.riptide)
        .env("REALTIME_APP_SERVER_BIN", &app_server)
        .env("COUNT", todos.to_string())
        .kill_on_drop(true)
        .output()
        .await?;
    if !out.status.success() {
        bail!(
            "node app-latency.mjs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    super::json_line(&out.stdout, "app-latency.mjs")
}
