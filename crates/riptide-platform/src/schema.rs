//! `generate_schema`: `web/src/lib/schema.ts` (the client's SQLite schema for `@powersync/web`)
//! from the Postgres catalog and the output tables and columns of the app's sync rules.
//!
//! Each data query of `sync-rules.yaml` contributes its output table (`FROM t AS alias` → alias)
//! and its columns (`*` = every column of the source table); `id` is implicit. Column types
//! follow PowerSync's mapping: integer and boolean types → `column.integer`, `real`/`double` →
//! `column.real`, everything else (text, uuid, timestamps, numeric, json) → `column.text`.
//! Columns ending in `_id` get an index named after the rest (`list_id` → `list`).

use std::path::PathBuf;

use serde::Serialize;
use sqlparser::ast::{Expr, SelectItem, SetExpr, Statement, TableFactor};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

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
    for q in rules.queries() {
        if q.kind != riptide_rules::QueryKind::Data {
            continue;
        }
        let Some(source) = q.table else { continue };
        let catalog = catalog_columns(client, &source.schema, &source.name).await?;
        if catalog.is_empty() {
            return Err(PlatformError::Rules(format!(
                "table {} (read by a data query of {}) does not exist in the database: run the app's migrations first",
                source.qualified(),
                q.definition
            )));
        }
        let (output, columns) = output_of(&q.sql, &source.name, &catalog)?;
        match tables.iter_mut().find(|t| t.name == output) {
            Some(t) => {
                for c in columns {
                    if !t.columns.iter().any(|(n, _)| *n == c.0) {
                        t.columns.push(c);
                    }
                }
            }
            None => tables.push(ClientTable {
                name: output,
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

/// The output table and columns of a data query.
fn output_of(
    sql: &str,
    source: &str,
    catalog: &[(String, &'static str)],
) -> Result<(String, Columns), PlatformError> {
    let bad = |why: String| PlatformError::Rules(format!("cannot read data query {sql:?}: {why}"));
    let mut statements =
        Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| bad(e.to_string()))?;
    let Some(Statement::Query(query)) = statements.pop() else {
        return Err(bad("not a SELECT".into()));
    };
    let SetExpr::Select(select) = *query.body else {
        return Err(bad("not a simple SELECT".into()));
    };
    let mut output = source.to_owned();
    if let Some(from) = select.from.first()
        && let TableFactor::Table {
            alias: Some(alias), ..
        } = &from.relation
    {
        output = alias.name.value.clone();
    }
    let type_of = |col: &str| {
        catalog
            .iter()
            .find(|(n, _)| n == col)
            .map(|(_, t)| *t)
            .unwrap_or("text")
    };
    let mut columns: Columns = Vec::new();
    let mut push = |name: String, ty: &'static str| {
        if name != "id" && !columns.iter().any(|(n, _)| *n == name) {
            columns.push((name, ty));
        }
    };
    for item in &select.projection {
        match item {
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                for (n, t) in catalog {
                    push(n.clone(), t);
                }
            }
            SelectItem::UnnamedExpr(expr) => {
                if let Some(col) = column_name(expr) {
                    push(col.clone(), type_of(&col));
                }
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                let ty = column_name(expr).map(|c| type_of(&c)).unwrap_or("text");
                push(alias.value.clone(), ty);
            }
            SelectItem::ExprWithAliases { .. } => {}
        }
    }
    Ok((output, columns))
}

fn column_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(i) => Some(i.value.clone()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.clone()),
        Expr::Nested(e) => column_name(e),
        Expr::Cast { expr, .. } => column_name(expr),
        _ => None,
    }
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
        let (t, cols) = output_of("SELECT * FROM todos", "todos", &catalog).unwrap();
        assert_eq!(t, "todos");
        assert_eq!(
            cols,
            vec![("list_id".into(), "text"), ("done".into(), "integer")]
        );
        let (t, cols) = output_of(
            "SELECT id, done AS finished, upper(x) AS y FROM todos AS items WHERE list_id = bucket.list_id",
            "todos",
            &catalog,
        )
        .unwrap();
        assert_eq!(t, "items");
        assert_eq!(
            cols,
            vec![("finished".into(), "integer"), ("y".into(), "text")]
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
