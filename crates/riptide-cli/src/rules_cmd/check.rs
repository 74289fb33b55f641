//! `riptide rules check FILE [--database URL]`.

use std::path::Path;

use anyhow::Result;
use riptide_server::schema_check::schema_problems;

use super::{db, load, plural};

/// Checks the file; prints problems (or an `ok:` summary). `Ok(false)` when there were problems.
pub async fn check(file: &Path, database: Option<&str>, publication: &str) -> Result<bool> {
    let Some(rules) = load(file)? else {
        return Ok(false);
    };
    let mut problems = match database {
        Some(url) => schema_problems(&rules, &db::parse_url(url)?, publication).await?,
        None => Vec::new(),
    };
    problems.sort();
    problems.dedup();
    for p in &problems {
        println!("{}:{}:{}: {}", file.display(), p.line, p.column, p.message);
    }
    if !problems.is_empty() {
        println!("{} found", plural(problems.len(), "error"));
        return Ok(false);
    }
    let streams = match rules.streams().len() {
        0 => String::new(),
        n => format!("{}, ", plural(n, "stream")),
    };
    println!(
        "ok: {streams}{}, {}, {}{}",
        plural(rules.definitions().len(), "bucket definition"),
        match rules.queries().len() {
            1 => "1 query".to_string(),
            n => format!("{n} queries"),
        },
        plural(rules.source_tables().len(), "table"),
        if database.is_some() {
            " (checked against the database)"
        } else {
            ""
        }
    );
    Ok(true)
}
