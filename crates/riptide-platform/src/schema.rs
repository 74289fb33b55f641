//! `generate_schema`: `web/src/lib/schema.ts` (the client's SQLite schema for `@powersync/web`)
//! from the Postgres catalog and the output tables and columns of the app's sync rules.
//!
//! Each data query and each stream query of `sync-rules.yaml` contributes its output table
//! (`FROM t AS alias` → alias) and its columns (`*` = every column of the source table); `id` is implicit. Column types
//! follow PowerSync's mapping: integer and boolean types → `column.integer`, `real`/`double` →
//! `column.real`, everything else (text, uuid, timestamps, numeric, json) → `column.text`.
//! Columns ending in `_id` get an index named after the rest (`list_id` → `list`).

use std::path::PathBuf;

use serde::Serialize;

use crate::database::LOCK_WAIT;
use crate::state::{Store, write_atomic};
use crate::{Platform, PlatformError, app, pg};

/// Where the schema goes in an app.
pub const SCHEMA_PATH: &str = "web/src/lib/schema.ts";

/// What `generate_schema` returns.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaInfo {
    pub app_id: String,
    pub path: PathBuf,
    pub tables: Vec<String>,
    /// The file had this content already.
    pub already: bool,
}

/// Columns in order: (name, PowerSync type).
type Columns = Vec<(String, &'static str)>;

/// A client table: name and (column, PowerSync type) in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTable {
    pub name: String,
    pub columns: Vec<(String, &'static str)>,
}

/// Writes the app's `web/src/lib/schema.ts` from its connected database and sync rules.
pub async fn generate_schema(
    platform: &Platform,
    app_key: &str,
) -> Result<SchemaInfo, PlatformError> {
    let store = Store::open(platform.home(), LOCK_WAIT).await?;
    let app = app::find(&store, app_key)?;
    let db_id = app.database_id.clone().ok_or_else(|| {
        PlatformError::Conflict(format!(
            "app {:?} is not connected to a database; run `riptide connect {} DATABASE` first",
            app.name, app.name
        ))
    })?;
    let db = store.state.database(&db_id)?.clone();
    drop(store);
    let rules_path = app.path.join("sync-rules.yaml");
    let yaml = std::fs::read_to_string(&rules_path).map_err(PlatformError::io(&rules_path))?;
    let client = pg::connect(&db.direct_uri).await?;
    let tables = client_tables(&client, &yaml).await?;
    let text = render(&tables);
    let path = app.path.join(SCHEMA_PATH);
    let already = std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str());
    if !already {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(PlatformError::io(dir))?;
        }
        write_atomic(&path, text.as_bytes(), 0o644)?;
    }
    Ok(SchemaInfo {
        app_id: app.id,
        path,
        tables: tables.into_iter().map(|t| t.name).collect(),
        already,
    })
}

/// The client tables of the rules in `yaml`, typed from the catalog of `client`'s database.
pub async fn client_tables(
    client: &tokio_postgres::Client,
    yaml: &str,
) -> Result<Vec<ClientTable>, PlatformError> {
    let rules = riptide_rules::SyncRules::parse(yaml).map_err(|errors| {
        let list: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
        PlatformError::Rules(format!("sync-rules.yaml is invalid: {}", list.join("; ")))
    })?;
    let mut tables: Vec<ClientTable> = Vec::new();
    for output in rules.output_tables() {
        let source = &output.source;
        let catalog = catalog_columns(client, &source.schema, &source.name).await?;
        if catalog.is_empty() {
            return Err(PlatformError::Rules(format!(
                "table {} (read by a query of {}) does not exist in the database: run the app's migrations first",
                source.qualified(),
                output.definition
            )));
        }
        let columns = client_columns(&output.columns, &catalog);
        match tables.iter_mut().find(|t| t.name == output.name) {
            Some(t) => {
                for c in columns {
                    if !t.columns.iter().any(|(n, _)| *n == c.0) {
                        t.columns.push(c);
                    }
                }
            }
            None => tables.push(ClientTable {
                name: output.name,
                columns,
            }),
        }
    }
    Ok(tables)
}

async fn catalog_columns(
    client: &tokio_postgres::Client,
    schema: &str,
    table: &str,
) -> Result<Vec<(String, &'static str)>, PlatformError> {
    let rows = client
        .query(
            "SELECT a.attname::text, t.typname::text
               FROM pg_attribute a
               JOIN pg_class c ON c.oid = a.attrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_type t ON t.oid = a.atttypid
              WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&schema, &table],
        )
        .await
        .map_err(PlatformError::pg("cannot read the catalog"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            let ty: String = r.get(1);
            (name, powersync_type(&ty))
        })
        .collect())
}

/// The PowerSync client type of a Postgres type name.
fn powersync_type(typname: &str) -> &'static str {
    match typname {
        "bool" | "int2" | "int4" | "int8" => "integer",
        "float4" | "float8" => "real",
        _ => "text",
    }
}

/// A client table's columns (the `id` column aside) typed from the source table's catalog:
/// `*` gives every catalog column, a column copied from the source its type, anything else
/// text.
fn client_columns(
    columns: &[riptide_rules::OutputColumn],
    catalog: &[(String, &'static str)],
) -> Columns {
    let type_of = |col: &str| {
        catalog
            .iter()
            .find(|(n, _)| n == col)
            .map(|(_, t)| *t)
            .unwrap_or("text")
    };
    let mut out: Columns = Vec::new();
    let mut push = |name: String, ty: &'static str| {
        if name != "id" && !out.iter().any(|(n, _)| *n == name) {
            out.push((name, ty));
        }
    };
    for c in columns {
        match c {
            riptide_rules::OutputColumn::All => {
                for (n, t) in catalog {
                    push(n.clone(), t);
                }
            }
            riptide_rules::OutputColumn::Named {
                name,
                source_column,
            } => push(
                name.clone(),
                source_column.as_deref().map_or("text", type_of),
            ),
        }
    }
    out
}

/// The TypeScript of the schema.
pub fn render(tables: &[ClientTable]) -> String {
    let mut out = String::from(
        "// Generated by `riptide schema` from the Postgres catalog and sync-rules.yaml: the local\n\
         // (SQLite) tables the sync rules fill. `id` is implicit. Regenerate after a migration\n\
         // (`riptide dev` does it for you) instead of editing by hand.\n\
         import { column, Schema, Table } from '@powersync/web';\n",
    );
    for t in tables {
        out.push_str(&format!("\nconst {} = new Table(\n  {{\n", ident(&t.name)));
        for (c, ty) in &t.columns {
            out.push_str(&format!("    {}: column.{ty},\n", key(c)));
        }
        out.push_str("  },\n");
        let indexes: Vec<String> = t
            .columns
            .iter()
            .filter_map(|(c, _)| {
                c.strip_suffix("_id")
                    .filter(|base| !base.is_empty())
                    .map(|base| format!("{}: [{}]", key(base), quote(c)))
            })
            .collect();
        if indexes.is_empty() {
            out.push_str(");\n");
        } else {
            out.push_str(&format!(
                "  {{ indexes: {{ {} }} }},\n);\n",
                indexes.join(", ")
            ));
        }
    }
    let names: Vec<String> = tables.iter().map(|t| ident(&t.name)).collect();
    out.push_str(&format!(
        "\nexport const AppSchema = new Schema({{ {} }});\n\nexport type Database = (typeof AppSchema)['types'];\n",
        tables
            .iter()
            .zip(&names)
            .map(|(t, n)| if *n == t.name { n.clone() } else { format!("{}: {n}", quote(&t.name)) })
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for t in tables {
        out.push_str(&format!(
            "export type {}Record = Database[{}];\n",
            pascal_singular(&t.name),
            quote(&t.name)
        ));
    }
    out
}

fn is_ident(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A TypeScript variable name for a table.
fn ident(name: &str) -> String {
    if is_ident(name) {
        name.to_owned()
    } else {
        let s: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("t_{s}")
    }
}

fn key(name: &str) -> String {
    if is_ident(name) {
        name.to_owned()
    } else {
        quote(name)
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `list_members` → `ListMember`.
fn pascal_singular(name: &str) -> String {
    let base = name
        .strip_suffix('s')
        .filter(|b| !b.is_empty())
        .unwrap_or(name);
    base.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut cs = p.chars();
            cs.next()
                .map(|f| f.to_ascii_uppercase().to_string() + cs.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_tables_and_columns() {
        let catalog = vec![
            ("id".to_owned(), "text"),
            ("list_id".to_owned(), "text"),
            ("done".to_owned(), "integer"),
        ];
        let tables = |yaml: &str| match riptide_rules::SyncRules::parse(yaml) {
            Ok(r) => r.output_tables(),
            Err(e) => panic!("{e}"),
        };
        let t = tables("bucket_definitions:\n  b:\n    data: [SELECT * FROM todos]\n");
        assert_eq!(t[0].name, "todos");
        assert_eq!(
            client_columns(&t[0].columns, &catalog),
            vec![("list_id".into(), "text"), ("done".into(), "integer")]
        );
        let t = tables(
            "bucket_definitions:\n  b:\n    parameters: SELECT request.user_id() AS list_id\n    data:\n      - SELECT id, done AS finished, upper(x) AS y FROM todos AS items WHERE list_id = bucket.list_id\n",
        );
        assert_eq!(t[0].name, "items");
        assert_eq!(
            client_columns(&t[0].columns, &catalog),
            vec![("finished".into(), "integer"), ("y".into(), "text")]
        );
        // Streams too, whatever their WHERE clause says.
        let t = tables(
            "config:\n  edition: 3\nstreams:\n  s:\n    query: SELECT t.id, t.done FROM todos t WHERE t.list_id IN subscription.parameter('lists')\n",
        );
        assert_eq!(t[0].name, "t");
        assert_eq!(
            client_columns(&t[0].columns, &catalog),
            vec![("done".into(), "integer")]
        );
    }

    #[test]
    fn renders_like_the_template() {
        let ts = render(&[ClientTable {
            name: "list_members".into(),
            columns: vec![("list_id".into(), "text"), ("user_id".into(), "text")],
        }]);
        assert!(
            ts.contains("{ indexes: { list: ['list_id'], user: ['user_id'] } }"),
            "{ts}"
        );
        assert!(ts.contains("export type ListMemberRecord = Database['list_members'];"));
        assert!(ts.contains("new Schema({ list_members })"));
    }
}
