//! Live column changes while streaming (no restart): pgoutput re-describes the relation
//! before the first change after the DDL and rows follow the new columns and types.

use std::time::Duration;

use crate::common::*;
use riptide_rules::{Row, SqliteValue};
use riptide_storage::{BatchOperation, RowChange};
use riptide_testkit::wait_for;

#[tokio::test]
async fn column_add_drop_rename_and_type_change_apply_live() {
    let db = source_db().await;
    let client = db.client().await;
    let rules = "
bucket_definitions:
  global:
    data:
      - SELECT * FROM todos
";
    let storage = memory_storage();
    let running = start(&db, storage.clone(), None, rules).await;
    running.wait_commits(1).await;
    for sql in [
        "ALTER TABLE todos ADD COLUMN extra int8; INSERT INTO todos (id, extra) VALUES ('a', 9007199254740993)",
        "ALTER TABLE todos DROP COLUMN body; INSERT INTO todos (id, title) VALUES ('b', 'no body')",
        "ALTER TABLE todos RENAME COLUMN title TO name; INSERT INTO todos (id, name) VALUES ('c', 'renamed')",
        "ALTER TABLE todos ALTER COLUMN n TYPE text; INSERT INTO todos (id, n) VALUES ('d', 'now text')",
    ] {
        client.batch_execute(sql).await.unwrap();
    }
    let storage2 = storage.clone();
    let rows: Vec<Row> = wait_for("four rows", Duration::from_secs(30), || {
        let storage = storage2.clone();
        async move {
            let rows: Vec<Row> = storage
                .ops_after(1)
                .iter()
                .filter_map(|op| match op {
                    BatchOperation::Row(r) => match &r.change {
                        RowChange::Upsert { row, .. } => Some(Row::decode(row).unwrap()),
                        RowChange::Delete => None,
                    },
                    BatchOperation::Truncate { .. } => None,
                })
                .collect();
            (rows.len() >= 4).then_some(rows)
        }
    })
    .await;
    let cols = |r: &Row| r.0.keys().cloned().collect::<Vec<_>>();
    assert_eq!(cols(&rows[0]), ["id", "title", "n", "body", "extra"]);
    assert_eq!(
        rows[0].get("extra"),
        Some(&SqliteValue::Integer(9_007_199_254_740_993))
    );
    assert_eq!(cols(&rows[1]), ["id", "title", "n", "extra"]);
    assert_eq!(cols(&rows[2]), ["id", "name", "n", "extra"]);
    assert_eq!(
        rows[2].get("name"),
        Some(&SqliteValue::Text("renamed".into()))
    );
    assert_eq!(
        rows[3].get("n"),
        Some(&SqliteValue::Text("now text".into()))
    );
    running.stop().await;
}
