//! Sync rules against the source database's schema: tables, columns, publication and replica
//! identity. The admin API validates deploys with it; `riptide rules check --database` prints
//! its problems.

use std::collections::{BTreeMap, BTreeSet};

use riptide_replication::ReplicationError;
use riptide_rules::{SyncRules, TableRef};
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
    problems
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
    Ok(Some(TableFacts {
        columns,
        replica_identity: row.try_get(1).map_err(catalog)?,
        has_primary_key: row.try_get(2).map_err(catalog)?,
        published: row.try_get(3).map_err(catalog)?,
    }))
}
