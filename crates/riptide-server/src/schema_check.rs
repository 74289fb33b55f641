//! Sync rules against the source database's schema: tables, columns, publication and replica
//! identity. The admin API validates deploys with it; `riptide rules check --database` prints
//! its problems.

use std::collections::{BTreeMap, BTreeSet};

use riptide_replication::ReplicationError;
use riptide_rules::{QueryKind, SyncRules, TableRef};
use tokio_postgres::Client;

/// One problem, located in the rules file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Why the schema could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum SchemaCheckError {
    #[error("cannot connect to the database")]
    Connect(#[source] ReplicationError),
    #[error("cannot read pg_publication")]
    Publication(#[source] tokio_postgres::Error),
    #[error("cannot read the catalog for {table}")]
    Catalog {
        table: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("cannot read the columns of {table}")]
    Columns {
        table: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// What the check needs to know about one table.
#[derive(Debug, Clone)]
struct TableFacts {
    /// Column name and whether it is generated (logical replication does not send those).
    columns: Vec<(String, bool)>,
    /// `pg_class.relreplident`: d, n, f or i.
    replica_identity: String,
    has_primary_key: bool,
    published: bool,
    /// Replica identity columns (every column with `REPLICA IDENTITY FULL`).
    identity: Vec<String>,
}

/// Tables, columns, publication and replica identity of `rules` against the database at
/// `source` (connected with the replicator's session settings).
pub async fn schema_problems(
    rules: &SyncRules,
    source: &tokio_postgres::Config,
    publication: &str,
) -> Result<Vec<Problem>, SchemaCheckError> {
    let client = riptide_replication::connect(source)
        .await
        .map_err(SchemaCheckError::Connect)?;
    let publication_exists = publication_exists(&client, publication).await?;
    let mut facts: BTreeMap<TableRef, Option<TableFacts>> = BTreeMap::new();
    for table in rules.source_tables() {
        let f = table_facts(&client, &table, publication).await?;
        facts.insert(table, f);
    }
    let mut problems = table_problems(rules, &facts, publication_exists, publication);
    problems.extend(column_problems(rules, &facts));
    Ok(problems)
}

/// Table-level problems, at every query reading the table.
fn table_problems(
    rules: &SyncRules,
    facts: &BTreeMap<TableRef, Option<TableFacts>>,
    publication_exists: bool,
    publication: &str,
) -> Vec<Problem> {
    let mut problems = Vec::new();
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
        for message in table_issues(
            &name,
            facts.get(table).and_then(Option::as_ref),
            publication_exists,
            publication,
        ) {
            problems.push(at(message));
        }
    }
    problems
}

/// What keeps `name` (with its catalog facts, `None`: no such table) from replicating.
fn table_issues(
    name: &str,
    facts: Option<&TableFacts>,
    publication_exists: bool,
    publication: &str,
) -> Vec<String> {
    let Some(f) = facts else {
        return vec![format!("table {name} does not exist")];
    };
    let mut issues = Vec::new();
    if !publication_exists {
        issues.push(format!(
            "table {name} is not replicated: publication {publication} does not exist; run `CREATE PUBLICATION {publication} FOR ALL TABLES;`"
        ));
    } else if !f.published {
        issues.push(format!(
            "table {name} is not in publication {publication}: run `ALTER PUBLICATION {publication} ADD TABLE {name};`"
        ));
    }
    match f.replica_identity.as_str() {
        "n" => issues.push(format!(
            "table {name} has REPLICA IDENTITY NOTHING, so its updates and deletes cannot be replicated: run `ALTER TABLE {name} REPLICA IDENTITY DEFAULT;` (with a primary key) or `... REPLICA IDENTITY FULL;`"
        )),
        "d" if !f.has_primary_key => issues.push(format!(
            "table {name} has no primary key, so its updates and deletes cannot be replicated: add a primary key or run `ALTER TABLE {name} REPLICA IDENTITY FULL;`"
        )),
        _ => {}
    }
    issues
}

/// One source table of the rules, as the admin API's diagnostics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    pub table: TableRef,
    /// The columns that identify a row in the WAL: the replica identity index's (the primary
    /// key by default), or every column with `REPLICA IDENTITY FULL`.
    pub replication_id: Vec<String>,
    pub data_queries: bool,
    pub parameter_queries: bool,
    /// What keeps the table from replicating (empty: nothing).
    pub issues: Vec<String>,
}

/// Every source table of `rules` with its replica identity, the kinds of queries reading it and
/// its problems, and every located problem of the rules ([`schema_problems`]'s), from one
/// connection.
pub async fn table_reports(
    rules: &SyncRules,
    source: &tokio_postgres::Config,
    publication: &str,
) -> Result<(Vec<TableReport>, Vec<Problem>), SchemaCheckError> {
    let client = riptide_replication::connect(source)
        .await
        .map_err(SchemaCheckError::Connect)?;
    let publication_exists = publication_exists(&client, publication).await?;
    let mut facts: BTreeMap<TableRef, Option<TableFacts>> = BTreeMap::new();
    for table in rules.source_tables() {
        let f = table_facts(&client, &table, publication).await?;
        facts.insert(table, f);
    }
    let queries = rules.queries();
    let reads = |table: &TableRef, kind: QueryKind| {
        queries
            .iter()
            .any(|q| q.kind == kind && q.table.as_ref() == Some(table))
    };
    let reports = facts
        .iter()
        .map(|(table, f)| TableReport {
            table: table.clone(),
            replication_id: f.as_ref().map(|f| f.identity.clone()).unwrap_or_default(),
            data_queries: reads(table, QueryKind::Data),
            parameter_queries: reads(table, QueryKind::Parameter),
            issues: table_issues(
                &table.qualified(),
                f.as_ref(),
                publication_exists,
                publication,
            ),
        })
        .collect();
    let mut problems = table_problems(rules, &facts, publication_exists, publication);
    problems.extend(column_problems(rules, &facts));
    Ok((reports, problems))
}

/// Column-level problems, at the column.
fn column_problems(
    rules: &SyncRules,
    facts: &BTreeMap<TableRef, Option<TableFacts>>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
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
    problems
}

/// Whether the publication exists.
async fn publication_exists(client: &Client, publication: &str) -> Result<bool, SchemaCheckError> {
    let row = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(SchemaCheckError::Publication)?;
    Ok(row.is_some())
}

/// Catalog facts of `table`, `None` if it does not exist (as a table).
async fn table_facts(
    client: &Client,
    table: &TableRef,
    publication: &str,
) -> Result<Option<TableFacts>, SchemaCheckError> {
    let catalog = |source| SchemaCheckError::Catalog {
        table: table.qualified(),
        source,
    };
    let Some(row) = client
        .query_opt(
            "SELECT c.oid::int8, c.relreplident::text, \
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), \
                    EXISTS (SELECT 1 FROM pg_publication_tables pt \
                            WHERE pt.pubname = $3 AND pt.schemaname = n.nspname AND pt.tablename = c.relname) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&table.schema, &table.name, &publication],
        )
        .await
        .map_err(catalog)?
    else {
        return Ok(None);
    };
    let oid: i64 = row.try_get(0).map_err(catalog)?;
    let columns_error = |source| SchemaCheckError::Columns {
        table: table.qualified(),
        source,
    };
    let columns = client
        .query(
            "SELECT attname::text, attgenerated <> '' FROM pg_attribute \
             WHERE attrelid = $1::int8::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&oid],
        )
        .await
        .map_err(columns_error)?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<Vec<(String, bool)>, tokio_postgres::Error>>()
        .map_err(columns_error)?;
    let identity = client
        .query(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = $1::int8::oid \
               AND (i.indisreplident OR (i.indisprimary AND $2 = 'd')) \
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&oid, &row.try_get::<_, String>(1).map_err(catalog)?],
        )
        .await
        .map_err(columns_error)?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<Vec<String>, tokio_postgres::Error>>()
        .map_err(columns_error)?;
    let full = row.try_get::<_, String>(1).map_err(catalog)? == "f";
    let identity = if full {
        columns
            .iter()
            .filter(|(_, generated)| !generated)
            .map(|(n, _)| n.clone())
            .collect()
    } else {
        identity
    };
    Ok(Some(TableFacts {
        identity,
        columns,
        replica_identity: row.try_get(1).map_err(catalog)?,
        has_primary_key: row.try_get(2).map_err(catalog)?,
        published: row.try_get(3).map_err(catalog)?,
    }))
}
