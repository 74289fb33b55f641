//! Reading the source database for `riptide rules explain`: table schemas, and rows paged
//! through a cursor and mapped exactly as the replicator maps them.

use anyhow::{Context, Result};
use riptide_replication::{TableSchema, TypeMap};
use riptide_rules::{Row, TableRef};
use tokio_postgres::{Client, GenericClient, SimpleQueryMessage, Transaction};

/// Rows per cursor fetch: memory stays bounded whatever the table size.
pub const FETCH_ROWS: usize = 1000;

/// The `--database` URL as a connection config.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config> {
    url.parse()
        .context("invalid --database URL (expected postgres://user:password@host:port/db)")
}

/// Connects with the replicator's session settings (so values print as it sees them).
pub async fn connect(url: &str) -> Result<Client> {
    riptide_replication::connect(&parse_url(url)?)
        .await
        .context("cannot connect to the database")
}

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The replicator's view of a table (columns as pgoutput sends them, value kinds).
pub async fn load_schema(
    client: &impl GenericClient,
    table: &TableRef,
    types: &TypeMap,
) -> Result<Option<TableSchema>> {
    TableSchema::load(client, table, types)
        .await
        .with_context(|| format!("cannot read the schema of {}", table.qualified()))
}

fn select_sql(schema: &TableSchema) -> String {
    let columns = schema
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let list = if columns.is_empty() {
        "NULL".into()
    } else {
        columns
    };
    format!(
        "SELECT {list} FROM {}.{}",
        quote_ident(&schema.table.schema),
        quote_ident(&schema.table.name)
    )
}

fn rows_of(schema: &TableSchema, messages: &[SimpleQueryMessage]) -> Vec<Row> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                let values = (0..schema.columns.len()).map(|i| r.get(i));
                Some(riptide_replication::text_row(schema, values).1)
            }
            _ => None,
        })
        .collect()
}

/// Calls `f` on every row of the table, [`FETCH_ROWS`] at a time through a cursor.
/// Returns the number of rows.
pub async fn for_each_row(
    tx: &Transaction<'_>,
    schema: &TableSchema,
    mut f: impl FnMut(&Row),
) -> Result<u64> {
    let context = || format!("cannot read the rows of {}", schema.qualified);
    tx.batch_execute(&format!(
        "DECLARE riptide_rules_rows NO SCROLL CURSOR FOR {}",
        select_sql(schema)
    ))
    .await
    .with_context(context)?;
    let fetch = format!("FETCH {FETCH_ROWS} FROM riptide_rules_rows");
    let mut total = 0u64;
    loop {
        let messages = tx.simple_query(&fetch).await.with_context(context)?;
        let rows = rows_of(schema, &messages);
        if rows.is_empty() {
            break;
        }
        total += rows.len() as u64;
        rows.iter().for_each(&mut f);
    }
    tx.batch_execute("CLOSE riptide_rules_rows")
        .await
        .with_context(context)?;
    Ok(total)
}

/// The row of `schema` whose `id` column (or single replica-identity column) has the text
/// value `id`.
pub async fn find_row(tx: &Transaction<'_>, schema: &TableSchema, id: &str) -> Result<Option<Row>> {
    let keys: Vec<_> = schema.columns.iter().filter(|c| c.is_key).collect();
    let column = match schema.columns.iter().find(|c| c.name == "id") {
        Some(c) => c,
        None => match keys.as_slice() {
            [single] => *single,
            _ => anyhow::bail!(
                "table {} has no `id` column and no single-column key: cannot find a row by id",
                schema.qualified
            ),
        },
    };
    let sql = format!(
        "{} WHERE {}::text = {} LIMIT 2",
        select_sql(schema),
        quote_ident(&column.name),
        quote_literal(id)
    );
    let messages = tx
        .simple_query(&sql)
        .await
        .with_context(|| format!("cannot read {}", schema.qualified))?;
    Ok(rows_of(schema, &messages).into_iter().next())
}
