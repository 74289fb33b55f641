//! `POST /api/admin/v1/execute-sql`: one query on the source database, for operators.
//!
//! Refused (`success: false`, "SQL querying is not enabled") unless the connection sets
//! `debug_api: true`, as upstream. The query runs in its own transaction, `READ ONLY` unless
//! `api.execute_sql.read_only` is `false`, under `statement_timeout`, and at most `max_rows`
//! rows are read (the rest is never fetched); the transaction is rolled back either way when
//! read-only, committed otherwise. Arguments are bound through `PREPARE … AS <query>` /
//! `EXECUTE (…)` with each argument a quoted literal, so Postgres infers their types from the
//! query as it does for `$n` parameters. Values come back as Postgres prints them (strings),
//! `NULL` as `null`; the database's error message is returned as `error`.

use std::time::Duration;

use futures::TryStreamExt;
use riptide_service::instance_admin::{SqlArg, SqlOutcome, SqlResults};
use tokio_postgres::SimpleQueryMessage;

use super::chain;

/// How `execute-sql` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecuteSqlOptions {
    /// `replication.connections[0].debug_api`: whether the route runs queries at all.
    pub enabled: bool,
    /// `api.execute_sql.read_only` (Riptide key, default true): `BEGIN READ ONLY`.
    pub read_only: bool,
    /// `api.execute_sql.max_rows` (default 1,000): rows returned at most.
    pub max_rows: usize,
    /// `api.execute_sql.statement_timeout_ms` (default 10 s).
    pub statement_timeout: Duration,
}

impl Default for ExecuteSqlOptions {
    /// Disabled; when enabled, read-only, 1,000 rows, 10 s.
    fn default() -> Self {
        ExecuteSqlOptions {
            enabled: false,
            read_only: true,
            max_rows: 1000,
            statement_timeout: Duration::from_secs(10),
        }
    }
}

/// The name of the prepared statement (one per connection, and each request has its own).
const STATEMENT: &str = "riptide_admin_query";

pub(super) async fn execute(
    source: &tokio_postgres::Config,
    options: &ExecuteSqlOptions,
    query: &str,
    args: &[SqlArg],
) -> SqlOutcome {
    if !options.enabled {
        return SqlOutcome::failed("SQL querying is not enabled");
    }
    match run(source, options, query, args).await {
        Ok(results) => SqlOutcome {
            success: true,
            results,
            error: None,
        },
        Err(message) => SqlOutcome::failed(message),
    }
}

async fn run(
    source: &tokio_postgres::Config,
    options: &ExecuteSqlOptions,
    query: &str,
    args: &[SqlArg],
) -> Result<SqlResults, String> {
    let client = riptide_replication::connect(source)
        .await
        .map_err(|e| chain(&e))?;
    let db_error = |e: tokio_postgres::Error| match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => chain(&e),
    };
    let mode = if options.read_only {
        "READ ONLY"
    } else {
        "READ WRITE"
    };
    client
        .batch_execute(&format!(
            "BEGIN {mode}; SET LOCAL statement_timeout = {}; \
             SET LOCAL standard_conforming_strings = on",
            options.statement_timeout.as_millis().max(1)
        ))
        .await
        .map_err(db_error)?;
    let sql = if args.is_empty() {
        query.to_owned()
    } else {
        let literals: Vec<String> = args.iter().map(literal).collect();
        format!(
            "PREPARE {STATEMENT} AS {query};\nEXECUTE {STATEMENT}({})",
            literals.join(", ")
        )
    };
    let results = read_rows(&client, &sql, options.max_rows)
        .await
        .map_err(db_error)?;
    let end = if options.read_only {
        "ROLLBACK"
    } else {
        "COMMIT"
    };
    // With rows left unread the connection is mid-result: dropping it ends the transaction.
    if results.1 {
        client.batch_execute(end).await.map_err(db_error)?;
    }
    Ok(results.0)
}

/// The last result set of `sql`, at most `max_rows` rows; whether every message was read.
async fn read_rows(
    client: &tokio_postgres::Client,
    sql: &str,
    max_rows: usize,
) -> Result<(SqlResults, bool), tokio_postgres::Error> {
    let stream = client.simple_query_raw(sql).await?;
    futures::pin_mut!(stream);
    let mut results = SqlResults::default();
    while let Some(message) = stream.try_next().await? {
        match message {
            SimpleQueryMessage::RowDescription(columns) => {
                results.columns = columns.iter().map(|c| c.name().to_owned()).collect();
                results.rows.clear();
            }
            SimpleQueryMessage::Row(row) => {
                if results.rows.len() >= max_rows {
                    return Ok((results, false));
                }
                let values = (0..row.len())
                    .map(|i| match row.get(i) {
                        Some(v) => serde_json::Value::String(v.to_owned()),
                        None => serde_json::Value::Null,
                    })
                    .collect();
                results.rows.push(values);
            }
            // A statement without rows (PREPARE, SET) leaves the last result set in place.
            _ => {}
        }
    }
    Ok((results, true))
}

/// An argument as a SQL literal: strings quoted (`'` doubled; `standard_conforming_strings`
/// is on, so backslashes are plain), numbers as JSON prints them, booleans as `true`/`false`.
fn literal(arg: &SqlArg) -> String {
    match arg {
        SqlArg::Bool(b) => b.to_string(),
        SqlArg::Number(n) => n.to_string(),
        SqlArg::Text(s) => format!("'{}'", s.replace('\'', "''")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_become_literals_that_cannot_escape_their_quotes() {
        assert_eq!(literal(&SqlArg::Text("it's".into())), "'it''s'");
        assert_eq!(literal(&SqlArg::Text("\\'); DROP".into())), "'\\''); DROP'");
        assert_eq!(literal(&SqlArg::Bool(true)), "true");
        assert_eq!(
            literal(&SqlArg::Number(serde_json::Number::from(-42))),
            "-42"
        );
    }
}
