//! `riptide rules check FILE [--database URL]`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Result;
use riptide_rules::{SyncRules, TableRef};

use super::db::{self, TableFacts};
use super::{load, plural};

/// One problem, located in the rules file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Problem {
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) message: String,
}

/// Checks the file; prints problems (or an `ok:` summary). `Ok(false)` when there were problems.
pub async fn check(file: &Path, database: Option<&str>, publication: &str) -> Result<bool> {
    let Some(rules) = load(file)? else {
        return Ok(false);
    };
    let mut problems = match database {
        Some(url) => schema_problems(&rules, url, publication).await?,
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

/// Tables, columns, publication and replica identity of `rules` against the database at
/// `url` (also used by the admin API's validation).
pub(crate) async fn schema_problems(
    rules: &SyncRules,
    url: &str,
    publication: &str,
) -> Result<Vec<Problem>> {
    let client = db::connect(url).await?;
    let publication_exists = db::publication_exists(&client, publication).await?;
    let mut facts: BTreeMap<TableRef, Option<TableFacts>> = BTreeMap::new();
    for table in rules.source_tables() {
        let f = db::table_facts(&client, &table, publication).await?;
        facts.insert(table, f);
    }
    let mut problems = Vec::new();
    // Table-level problems, at every query reading the table.
    for q in rules.queries() {
        let Some(table) = &q.table else { continue };
        let name = table.qualified();
        let at = |message: String| Problem {
            line: q.line,
            column: q.column,
            message: if q.stream {
                format!(
                    "{message} (query {} of stream `{}`)",
                    q.index + 1,
                    q.definition
                )
            } else {
                format!(
                    "{message} ({} {} of bucket definition `{}`)",
                    q.kind,
                    q.index + 1,
                    q.definition
                )
            },
        };
        let Some(Some(f)) = facts.get(table) else {
            problems.push(at(format!("table {name} does not exist")));
            continue;
        };
        if !publication_exists {
            problems.push(at(format!(
                "table {name} is not replicated: publication {publication} does not exist; run `CREATE PUBLICATION {publication} FOR ALL TABLES;`"
            )));
        } else if !f.published {
            problems.push(at(format!(
                "table {name} is not in publication {publication}: run `ALTER PUBLICATION {publication} ADD TABLE {name};`"
            )));
        }
        match f.replica_identity.as_str() {
            "n" => problems.push(at(format!(
                "table {name} has REPLICA IDENTITY NOTHING, so its updates and deletes cannot be replicated: run `ALTER TABLE {name} REPLICA IDENTITY DEFAULT;` (with a primary key) or `... REPLICA IDENTITY FULL;`"
            ))),
            "d" if !f.has_primary_key => problems.push(at(format!(
                "table {name} has no primary key, so its updates and deletes cannot be replicated: add a primary key or run `ALTER TABLE {name} REPLICA IDENTITY FULL;`"
            ))),
            _ => {}
        }
    }
    // Column-level problems, at the column.
    for c in rules.referenced_columns() {
        let Some(Some(f)) = facts.get(&c.table) else {
            continue;
        };
        let context = if c.stream {
            format!("(query {} of stream `{}`)", c.query_index + 1, c.definition)
        } else {
            format!(
                "({} {} of bucket definition `{}`)",
                c.kind,
                c.query_index + 1,
                c.definition
            )
        };
        match f.columns.iter().find(|(name, _)| *name == c.column) {
            None => {
                let known: BTreeSet<&str> = f.columns.iter().map(|(n, _)| n.as_str()).collect();
                let known: Vec<&str> = known.into_iter().collect();
                let hint = if known.is_empty() {
                    "it has no columns".to_string()
                } else if known.len() <= 15 {
                    format!("its columns: {}", known.join(", "))
                } else {
                    format!("it has {} columns", known.len())
                };
                problems.push(Problem {
                    line: c.line,
                    column: c.column_no,
                    message: format!(
                        "column `{}` does not exist in table {}; {hint} {context}",
                        c.column,
                        c.table.qualified()
                    ),
                });
            }
            Some((_, true)) => problems.push(Problem {
                line: c.line,
                column: c.column_no,
                message: format!(
                    "column `{}` of table {} is a generated column, which logical replication does not send: it would always be NULL {context}",
                    c.column,
                    c.table.qualified()
                ),
            }),
            Some(_) => {}
        }
    }
    Ok(problems)
}
