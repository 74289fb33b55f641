//! The schema catalog: the tables clients may write (those in the `powersync` publication),
//! their columns and column types, read from `pg_catalog` at start-up — and again when a batch
//! names a table or column the catalog lacks, since migrations can be applied while the process
//! runs (`riptide dev` does).
//!
//! Table and column names in SQL come only from here, quoted; never from the request.

use std::collections::HashMap;

/// The publication whose tables are synced, and so writable through uploads.
pub const PUBLICATION: &str = "powersync";

/// The catalog could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read the schema catalog")]
    Query(#[source] tokio_postgres::Error),
    #[error("cannot get a database connection to read the schema catalog")]
    Pool(#[source] deadpool_postgres::PoolError),
}

/// How an uploaded JSON value becomes a value of the column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Uuid,
    Bool,
    Integer,
    Number,
    Text,
    Json,
    /// Dates and times: strings parsed by Postgres.
    DateTime,
    /// Anything else: passed as text and cast by Postgres.
    Other,
}

impl ValueKind {
    fn of(typname: &str, category: &str) -> ValueKind {
        match typname {
            "uuid" => ValueKind::Uuid,
            "bool" => ValueKind::Bool,
            "int2" | "int4" | "int8" => ValueKind::Integer,
            "float4" | "float8" | "numeric" => ValueKind::Number,
            "text" | "varchar" | "bpchar" | "citext" | "name" => ValueKind::Text,
            "json" | "jsonb" => ValueKind::Json,
            _ if category == "D" => ValueKind::DateTime,
            _ => ValueKind::Other,
        }
    }
}

/// A column of a writable table.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    /// The name as a quoted SQL identifier.
    pub quoted: String,
    /// The SQL type as Postgres spells it (`format_type`), used in casts.
    pub sql_type: String,
    pub kind: ValueKind,
    /// Generated columns cannot be written.
    pub generated: bool,
}

/// A writable table.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    /// `"schema"."table"`.
    pub quoted: String,
    pub columns: HashMap<String, Column>,
}

impl Table {
    /// The `id` column (the row identity of synced tables).
    pub fn id_column(&self) -> Option<&Column> {
        self.columns.get("id")
    }
}

/// All writable tables by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tables: HashMap<String, Table>,
}

/// Quotes an identifier for SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Catalog {
    /// Reads the tables of the `powersync` publication. A table name present in several schemas
    /// resolves to the one in `public`.
    pub async fn load(client: &tokio_postgres::Client) -> Result<Catalog, CatalogError> {
        let rows = client
            .query(
                "SELECT pt.schemaname::text, pt.tablename::text, a.attname::text,
                        format_type(a.atttypid, a.atttypmod),
                        COALESCE(bt.typname, t.typname)::text,
                        COALESCE(bt.typcategory, t.typcategory)::text,
                        a.attgenerated <> ''
                   FROM pg_publication_tables pt
                   JOIN pg_namespace n ON n.nspname = pt.schemaname
                   JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
                   JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                   JOIN pg_type t ON t.oid = a.atttypid
                   LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
                  WHERE pt.pubname = $1
                  ORDER BY (pt.schemaname = 'public') DESC, 1, 2, a.attnum",
                &[&PUBLICATION],
            )
            .await
            .map_err(CatalogError::Query)?;
        let mut tables: HashMap<String, Table> = HashMap::new();
        let mut schema_of: HashMap<String, String> = HashMap::new();
        for row in rows {
            let schema: String = row.get(0);
            let table: String = row.get(1);
            // The first schema seen for a name wins (public sorts first).
            let owner = schema_of
                .entry(table.clone())
                .or_insert_with(|| schema.clone());
            if *owner != schema {
                continue;
            }
            let column: String = row.get(2);
            let typname: String = row.get(4);
            let category: String = row.get(5);
            let entry = tables.entry(table.clone()).or_insert_with(|| Table {
                name: table.clone(),
                quoted: format!("{}.{}", quote_ident(&schema), quote_ident(&table)),
                columns: HashMap::new(),
            });
            entry.columns.insert(
                column.clone(),
                Column {
                    quoted: quote_ident(&column),
                    name: column,
                    sql_type: row.get(3),
                    kind: ValueKind::of(&typname, &category),
                    generated: row.get(6),
                },
            );
        }
        Ok(Catalog { tables })
    }

    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.get(name)
    }
}
