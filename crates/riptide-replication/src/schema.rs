//! What the replicator knows about a source table: its columns, how each column's values
//! convert, which columns form the replica identity, and whether the sync rules use it.
//! Built from the catalog (snapshot) or from pgoutput Relation messages (stream) and shared
//! through an `Arc` so rows never copy it.

use std::collections::HashMap;
use std::sync::Arc;

use riptide_rules::TableRef;
use tokio_postgres::{Client, GenericClient};

use crate::error::ReplicationError;
use crate::pgoutput::{Relation, ReplicaIdentity};
use crate::values::{self, ScalarKind, ValueKind, ValueOptions};

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
    pub kind: ValueKind,
    pub is_key: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    /// Relation OID.
    pub id: u32,
    pub table: TableRef,
    /// `schema.name`, the storage `source_table`.
    pub qualified: String,
    pub columns: Vec<Column>,
    pub replica_identity: ReplicaIdentity,
    /// Whether the sync rules read this table.
    pub used: bool,
}

impl TableSchema {
    /// From a pgoutput Relation message.
    pub fn from_relation(relation: &Relation, types: &TypeMap, used: bool) -> TableSchema {
        let table = TableRef::new(relation.namespace.clone(), relation.name.clone());
        TableSchema {
            id: relation.id,
            qualified: table.qualified(),
            table,
            columns: relation
                .columns
                .iter()
                .map(|c| Column {
                    name: c.name.clone(),
                    type_oid: c.type_oid,
                    kind: types.kind(c.type_oid),
                    is_key: c.is_key,
                })
                .collect(),
            replica_identity: relation.replica_identity,
            used,
        }
    }

    /// From the catalog, with the same columns (and order) pgoutput sends: non-dropped,
    /// non-generated, by attribute number. `None` if the table does not exist.
    pub async fn load(
        client: &impl GenericClient,
        table: &TableRef,
        types: &TypeMap,
    ) -> Result<Option<TableSchema>, ReplicationError> {
        let rows = client
            .query(
                "SELECT c.oid::int8, c.relreplident::text, a.attname::text, a.atttypid::int8, \
                        CASE c.relreplident \
                          WHEN 'f' THEN true \
                          WHEN 'd' THEN COALESCE(a.attnum = ANY ((SELECT i.indkey FROM pg_index i \
                               WHERE i.indrelid = c.oid AND i.indisprimary LIMIT 1)::int2[]), false) \
                          WHEN 'i' THEN COALESCE(a.attnum = ANY ((SELECT i.indkey FROM pg_index i \
                               WHERE i.indrelid = c.oid AND i.indisreplident LIMIT 1)::int2[]), false) \
                          ELSE false END \
                 FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') \
                   AND a.attgenerated = '' \
                 ORDER BY a.attnum",
                &[&table.schema, &table.name],
            )
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let oid: i64 = first.try_get(0)?;
        let identity: String = first.try_get(1)?;
        let replica_identity = identity
            .bytes()
            .next()
            .and_then(ReplicaIdentity::from_byte)
            .ok_or_else(|| ReplicationError::Catalog(format!("relreplident {identity:?}")))?;
        let mut columns = Vec::with_capacity(rows.len());
        for row in &rows {
            let type_oid = u32::try_from(row.try_get::<_, i64>(3)?)
                .map_err(|_| ReplicationError::Catalog("type oid out of range".into()))?;
            columns.push(Column {
                name: row.try_get(2)?,
                type_oid,
                kind: types.kind(type_oid),
                is_key: row.try_get(4)?,
            });
        }
        Ok(Some(TableSchema {
            id: u32::try_from(oid)
                .map_err(|_| ReplicationError::Catalog("relation oid out of range".into()))?,
            qualified: table.qualified(),
            table: table.clone(),
            columns,
            replica_identity,
            used: true,
        }))
    }
}

/// Value kinds of the source's own types (arrays of enums, composites, ranges and domains;
/// domains over built-ins when `custom_types` is on), on top of the built-in mapping, with
/// the deployment's [`ValueOptions`]. Types created after loading map as text.
#[derive(Debug, Clone, Default)]
pub struct TypeMap {
    custom: HashMap<u32, ValueKind>,
    options: ValueOptions,
}

impl TypeMap {
    pub fn kind(&self, type_oid: u32) -> ValueKind {
        self.custom
            .get(&type_oid)
            .copied()
            .unwrap_or_else(|| values::value_kind_with(type_oid, self.options))
    }

    /// The mapping options.
    pub fn options(&self) -> ValueOptions {
        self.options
    }

    /// Loads user-defined domains and arrays with legacy options.
    pub async fn load(client: &Client) -> Result<Arc<TypeMap>, ReplicationError> {
        Self::load_with(client, ValueOptions::default()).await
    }

    /// Loads user-defined domains and arrays. Without `custom_types`, domains are raw text
    /// (like the official service's legacy mapping); with it, their base type's mapping.
    pub async fn load_with(
        client: &Client,
        options: ValueOptions,
    ) -> Result<Arc<TypeMap>, ReplicationError> {
        let rows = client
            .query(
                "SELECT t.oid::int8, t.typtype::text, t.typbasetype::int8, t.typelem::int8, \
                        COALESCE(e.typtype::text, ''), COALESCE(e.typbasetype::int8, 0) \
                 FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem \
                 WHERE t.oid >= 16384 AND (t.typtype = 'd' OR (t.typcategory = 'A' AND t.typelem <> 0))",
                &[],
            )
            .await?;
        let oid = |v: i64| u32::try_from(v).unwrap_or(0);
        let mut custom = HashMap::new();
        for row in rows {
            let id = oid(row.try_get(0)?);
            let typtype: String = row.try_get(1)?;
            let base = oid(row.try_get(2)?);
            let elem = oid(row.try_get(3)?);
            let elem_typtype: String = row.try_get(4)?;
            let elem_base = oid(row.try_get(5)?);
            let kind = if typtype == "d" {
                if options.custom_types {
                    values::value_kind_with(base, options)
                } else {
                    ValueKind::Scalar(ScalarKind::Text)
                }
            } else {
                let elem = match (elem_typtype.as_str(), options.custom_types) {
                    ("d", true) => elem_base,
                    ("d", false) => values::oid::TEXT,
                    _ => elem,
                };
                match values::value_kind_with(elem, options) {
                    ValueKind::Scalar(s) => ValueKind::Array(s),
                    ValueKind::Array(_) => ValueKind::Array(ScalarKind::Text),
                }
            };
            custom.insert(id, kind);
        }
        Ok(Arc::new(TypeMap { custom, options }))
    }
}
