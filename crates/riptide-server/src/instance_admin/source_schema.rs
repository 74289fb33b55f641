//! `POST /api/admin/v1/schema`: the tables and columns of the source database (ordinary and
//! partitioned tables outside the system schemas), with the SQLite type each column syncs as.

use std::collections::BTreeMap;

use riptide_service::InstanceAdminError;
use riptide_service::instance_admin::{
    ColumnSchema, ConnectionSchema, DatabaseSchema, InstanceSchema, TableSchema,
};

use super::{CONNECTION_ID, chain};

/// The schema rules name tables in when they give none.
const DEFAULT_SCHEMA: &str = "public";

pub(super) async fn schema(
    source: &tokio_postgres::Config,
) -> Result<InstanceSchema, InstanceAdminError> {
    let failed = |e: &dyn std::error::Error| {
        InstanceAdminError::Failed(format!("cannot read the source schema: {}", chain(e)))
    };
    let client = riptide_replication::connect(source)
        .await
        .map_err(|e| failed(&e))?;
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, a.attname::text, \
                    format_type(a.atttypid, a.atttypmod), t.typname::text, \
                    COALESCE(et.typname::text, '') \
             FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             JOIN pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A' \
             WHERE c.relkind IN ('r', 'p') \
               AND n.nspname NOT IN ('information_schema', 'pg_catalog', 'pg_toast') \
               AND n.nspname NOT LIKE 'pg_temp_%' AND n.nspname NOT LIKE 'pg_toast_temp_%' \
               AND has_schema_privilege(n.oid, 'USAGE') \
             ORDER BY n.nspname, c.relname, a.attnum",
            &[],
        )
        .await
        .map_err(|e| failed(&e))?;
    let mut schemas: BTreeMap<String, BTreeMap<String, Vec<ColumnSchema>>> = BTreeMap::new();
    for row in rows {
        let schema: String = row.get(0);
        let table: String = row.get(1);
        let internal_type: String = row.get(3);
        let typname: String = row.get(4);
        let element: String = row.get(5);
        let pg_type = if element.is_empty() {
            typname.clone()
        } else {
            format!("{element}[]")
        };
        schemas
            .entry(schema)
            .or_default()
            .entry(table)
            .or_default()
            .push(ColumnSchema {
                name: row.get(2),
                sqlite_type: sqlite_type(&typname).into(),
                type_name: internal_type.clone(),
                internal_type,
                pg_type,
            });
    }
    Ok(InstanceSchema {
        connections: vec![ConnectionSchema {
            id: CONNECTION_ID.into(),
            tag: CONNECTION_ID.into(),
            schemas: schemas
                .into_iter()
                .map(|(name, tables)| DatabaseSchema {
                    name,
                    tables: tables
                        .into_iter()
                        .map(|(name, columns)| TableSchema { name, columns })
                        .collect(),
                })
                .collect(),
        }],
        default_connection_tag: CONNECTION_ID.into(),
        default_schema: DEFAULT_SCHEMA.into(),
    })
}

/// The SQLite type a value of this Postgres type syncs as (docs/protocol.md §8.2): integers and
/// booleans as `integer`, floats as `real`, `bytea` as `blob`, everything else (numeric, dates,
/// JSON, arrays, enums, …) as `text`.
fn sqlite_type(typname: &str) -> &'static str {
    match typname {
        "int2" | "int4" | "int8" | "oid" | "bool" => "integer",
        "float4" | "float8" => "real",
        "bytea" => "blob",
        _ => "text",
    }
}

#[cfg(test)]
mod tests {
    use super::sqlite_type;

    #[test]
    fn postgres_types_map_to_their_sqlite_types() {
        assert_eq!(sqlite_type("int8"), "integer");
        assert_eq!(sqlite_type("bool"), "integer");
        assert_eq!(sqlite_type("float8"), "real");
        assert_eq!(sqlite_type("numeric"), "text");
        assert_eq!(sqlite_type("bytea"), "blob");
        assert_eq!(sqlite_type("_int4"), "text");
        assert_eq!(sqlite_type("timestamptz"), "text");
    }
}
