//! Reading the source database for `riptide rules`: catalog facts about the tables the rules
//! read, and rows paged through a cursor and mapped exactly as the replicator maps them.

use anyhow::{Context, Result};
use riptide_pg::{PgConnection, quote_ident, quote_literal};
use riptide_replication::{TableSchema, TypeMap};
use riptide_rules::{Row, TableRef};
use tokio_postgres::{Client, GenericClient, SimpleQueryMessage, Transaction};

/// Rows per cursor fetch: memory stays bounded whatever the table size.
pub const FETCH_ROWS: usize = 1000;

/// Connects with the replicator's session settings (so values print as it sees them); TLS
/// per the URL (`sslmode`, `sslrootcert`, `channel_binding`, ...).
pub async fn connect(url: &str) -> Result<Client> {
    let connection = PgConnection::from_uri(url)
        .context("invalid --database URL (expected postgres://user:password@host:port/db)")?;
    riptide_replication::connect(&connection)
        .await
        .context("cannot connect to the database")
}

/// What `rules check` needs to know about one table.
#[derive(Debug, Clone)]
pub struct TableFacts {
    /// Column name and whether it is generated (logical replication does not send those).
    pub columns: Vec<(String, bool)>,
    /// `pg_class.relreplident`: d, n, f or i.
    pub replica_identity: String,
    pub has_primary_key: bool,
    pub published: bool,
}

/// Whether the publication exists.
pub async fn publication_exists(client: &Client, publication: &str) -> Result<bool> {
    let row = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .context("cannot read pg_publication")?;
    Ok(row.is_some())
}

/// Catalog facts of `table`, `None` if it does not exist (as a table).
pub async fn table_facts(
    client: &Client,
    table: &TableRef,
    publication: &str,
) -> Result<Option<TableFacts>> {
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
        .with_context(|| format!("cannot read the catalog for {}", table.qualified()))?
    else {
        return Ok(None);
    };
    let oid: i64 = row.try_get(0)?;
    let columns = client
        .query(
            "SELECT attname::text, attgenerated <> '' FROM pg_attribute \
             WHERE attrelid = $1::int8::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&oid],
        )
        .await
        .with_context(|| format!("cannot read the columns of {}", table.qualified()))?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<Vec<(String, bool)>, tokio_postgres::Error>>()?;
    Ok(Some(TableFacts {
        columns,
        replica_identity: row.try_get(1)?,
        has_primary_key: row.try_get(2)?,
        published: row.try_get(3)?,
    }))
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
