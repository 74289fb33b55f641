//! The template's upload body (`POST /api/upload`): the SDK's CRUD batch, checked against the
//! schema catalog and turned into SQL.

use std::collections::HashMap;
use std::sync::OnceLock;

use app_server::upload::catalog::{Catalog, Column, Table, ValueKind, quote_ident};
use app_server::upload::entry::{Op, parse_batch};
use app_server::upload::{convert, sql};

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let column = |name: &str, sql_type: &str, kind: ValueKind, generated: bool| Column {
            name: name.into(),
            quoted: quote_ident(name),
            sql_type: sql_type.into(),
            kind,
            generated,
        };
        let columns = [
            column("id", "uuid", ValueKind::Uuid, false),
            column("done", "boolean", ValueKind::Bool, false),
            column("n", "bigint", ValueKind::Integer, false),
            column("x", "double precision", ValueKind::Number, false),
            column("t", "text", ValueKind::Text, false),
            column("j", "jsonb", ValueKind::Json, false),
            column("at", "timestamp with time zone", ValueKind::DateTime, false),
            column("o", "interval", ValueKind::Other, false),
            column("g", "text", ValueKind::Text, true),
        ];
        let todos = Table {
            name: "todos".into(),
            quoted: "\"public\".\"todos\"".into(),
            columns: columns.into_iter().map(|c| (c.name.clone(), c)).collect(),
        };
        let mut text_id = todos.clone();
        text_id.name = "notes".into();
        text_id.quoted = "\"public\".\"notes\"".into();
        text_id
            .columns
            .insert("id".into(), column("id", "text", ValueKind::Text, false));
        Catalog {
            tables: HashMap::from([("todos".into(), todos), ("notes".into(), text_id)]),
        }
    })
}

/// `parse_batch` of any body: entries or a typed error; each entry checked against a catalog
/// and, when it passes, turned into a statement whose every value is a bind parameter.
pub fn body(data: &[u8]) {
    let Ok(entries) = parse_batch(data) else {
        return;
    };
    let catalog = catalog();
    for (index, entry) in entries.iter().enumerate() {
        let Ok(write) = convert::check(catalog, index, entry) else {
            continue;
        };
        assert!(
            write.values.iter().all(|v| !v.column.generated),
            "a generated column written"
        );
        // Values never enter the SQL text: the same write with other values gives the same SQL.
        let mut blank = write.clone();
        blank.id = "x".into();
        for v in &mut blank.values {
            v.value = v.value.as_ref().map(|_| "x".into());
        }
        assert_eq!(
            statement(&write).map(|s| s.sql()),
            statement(&blank).map(|s| s.sql()),
            "an uploaded value changed the SQL text"
        );
    }
}

fn statement(write: &convert::Write<'_>) -> Option<sql::Statement> {
    match write.op {
        Op::Put => sql::upsert(write),
        Op::Patch => sql::update(write),
        Op::Delete => sql::delete(write),
    }
}
