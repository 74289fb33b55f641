//! The golden table: Postgres value → SQLite value, checked against a real Postgres through
//! both the snapshot and streaming, in the legacy format (edition 1) and in the ISO-8601 /
//! `custom_types` format (edition 2). `e2e/tests/types.test.js` checks the same values
//! arrive in the official client's SQLite.

use crate::common::*;
use riptide_rules::{Row, SqliteValue};
use riptide_storage::{BatchOperation, RowChange};
use riptide_testkit::TestDatabase;

/// Expected SQLite value.
#[derive(Debug, Clone, PartialEq)]
enum E {
    Null,
    Int(i64),
    Real(f64),
    Nan,
    Text(&'static str),
    Blob(&'static [u8]),
}

impl E {
    fn matches(&self, v: &SqliteValue) -> bool {
        match (self, v) {
            (E::Null, SqliteValue::Null) => true,
            (E::Int(a), SqliteValue::Integer(b)) => a == b,
            (E::Real(a), SqliteValue::Real(b)) => a == b,
            (E::Nan, SqliteValue::Real(b)) => b.is_nan(),
            (E::Text(a), SqliteValue::Text(b)) => a == b,
            (E::Blob(a), SqliteValue::Blob(b)) => a == b,
            _ => false,
        }
    }
}

/// One golden case: column type, SQL literal, legacy value, ISO/edition-2 value.
struct Case {
    ty: &'static str,
    sql: &'static str,
    legacy: E,
    edition2: E,
}

fn same(ty: &'static str, sql: &'static str, v: E) -> Case {
    Case {
        ty,
        sql,
        legacy: v.clone(),
        edition2: v,
    }
}

fn two(ty: &'static str, sql: &'static str, legacy: E, edition2: E) -> Case {
    Case {
        ty,
        sql,
        legacy,
        edition2,
    }
}

/// Every type of docs/protocol.md §8.2 with its edge values. Shared with the e2e test by content.
fn golden() -> Vec<Case> {
    use E::*;
    vec![
        same("bool", "true", Int(1)),
        same("bool", "false", Int(0)),
        same("int2", "-32768", Int(-32768)),
        same("int4", "2147483647", Int(2_147_483_647)),
        same("int8", "9007199254740993", Int(9_007_199_254_740_993)),
        same("int8", "-9223372036854775808", Int(i64::MIN)),
        same("oid", "4294967295", Int(4_294_967_295)),
        same("float4", "1.25", Real(1.25)),
        same("float8", "1e308", Real(1e308)),
        same("float8", "'NaN'", Nan),
        same("float8", "'Infinity'", Real(f64::INFINITY)),
        same("float4", "'-Infinity'", Real(f64::NEG_INFINITY)),
        same(
            "numeric",
            "18014398509481982123.000001",
            Text("18014398509481982123.000001"),
        ),
        same("numeric(10,2)", "1.5", Text("1.50")),
        same("numeric", "'NaN'", Text("NaN")),
        same("money", "1000.5", Text("$1,000.50")),
        same(
            "text",
            "'héllo ''quoted'' \\ back'",
            Text("héllo 'quoted' \\ back"),
        ),
        same("varchar(10)", "''", Text("")),
        same("char(4)", "'ab'", Text("ab  ")),
        same(
            "uuid",
            "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'",
            Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        ),
        same(
            "json",
            r#"'{"test": "thing" }'"#,
            Text(r#"{"test": "thing" }"#),
        ),
        same(
            "jsonb",
            r#"'{"b": 1, "a": 18014398509481982123}'"#,
            Text(r#"{"a": 18014398509481982123, "b": 1}"#),
        ),
        same(
            "jsonpath",
            r#"'$.a[*] ? (@ > 1)'"#,
            Text(r#"$."a"[*]?(@ > 1)"#),
        ),
        same("bytea", "'\\x00ff10'", Blob(&[0, 255, 16])),
        same("date", "'2024-05-01'", Text("2024-05-01")),
        same("date", "'infinity'", Text("9999-12-31")),
        same("date", "'-infinity'", Text("0000-01-01")),
        two(
            "time",
            "'17:42:01.12'",
            Text("17:42:01.12"),
            Text("17:42:01.120000"),
        ),
        two(
            "time",
            "'allballs'",
            Text("00:00:00"),
            Text("00:00:00.000000"),
        ),
        same("timetz", "'13:45:10+02'", Text("13:45:10+02")),
        two(
            "timestamp",
            "'2023-03-06 15:47:12.4'",
            Text("2023-03-06 15:47:12.4"),
            Text("2023-03-06T15:47:12.400000"),
        ),
        two(
            "timestamp",
            "'epoch'",
            Text("1970-01-01 00:00:00"),
            Text("1970-01-01T00:00:00.000000"),
        ),
        two(
            "timestamp",
            "'infinity'",
            Text("9999-12-31 23:59:59"),
            Text("9999-12-31T23:59:59"),
        ),
        two(
            "timestamp",
            "'-infinity'",
            Text("0000-01-01 00:00:00"),
            Text("0000-01-01T00:00:00"),
        ),
        two(
            "timestamptz",
            "'2023-03-06 15:47+02'",
            Text("2023-03-06 13:47:00Z"),
            Text("2023-03-06T13:47:00.000000Z"),
        ),
        two(
            "timestamptz",
            "'2023-03-06 15:47:00.12345-05:30'",
            Text("2023-03-06 21:17:00.12345Z"),
            Text("2023-03-06T21:17:00.123450Z"),
        ),
        two(
            "timestamptz",
            "'0022-02-03 12:13:14+03'",
            Text("0022-02-03 09:13:14Z"),
            Text("0022-02-03T09:13:14.000000Z"),
        ),
        same("timestamptz", "'10022-02-03 12:13:14+03'", Null),
        two(
            "timestamptz",
            "'infinity'",
            Text("9999-12-31 23:59:59Z"),
            Text("9999-12-31T23:59:59Z"),
        ),
        two(
            "timestamptz",
            "'-infinity'",
            Text("0000-01-01 00:00:00Z"),
            Text("0000-01-01T00:00:00Z"),
        ),
        same(
            "interval",
            "'1 year 2 mons 3 days 04:05:06.5'",
            Text("1 year 2 mons 3 days 04:05:06.5"),
        ),
        same("pg_lsn", "'16/B374D848'", Text("00000016/B374D848")),
        same("inet", "'127.0.0.1'", Text("127.0.0.1")),
        // Arrays.
        same("bool[]", "'{t,f,NULL}'", Text("[1,0,null]")),
        same(
            "int8[]",
            "'{9007199254740993,NULL}'",
            Text("[9007199254740993,null]"),
        ),
        same("int4[][]", "'{{1,2},{3,4}}'", Text("[[1,2],[3,4]]")),
        same("int4[]", "'[0:1]={5,6}'", Text("[5,6]")),
        same("int4[]", "'{}'", Text("[]")),
        same(
            "float8[]",
            "'{1.5,NaN,Infinity,314}'",
            Text("[1.5,null,null,314]"),
        ),
        same("numeric[]", "'{1.10,2}'", Text(r#"["1.10","2"]"#)),
        same(
            "text[]",
            r#"ARRAY['text', '}te][xt{"', NULL, 'NULL', 'null']"#,
            Text(r#"["text","}te][xt{\"",null,"NULL","null"]"#),
        ),
        same(
            "text[][]",
            "ARRAY[['one', '1'], ['three', NULL]]",
            Text(r#"[["one","1"],["three",null]]"#),
        ),
        same(
            "uuid[]",
            "'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'",
            Text(r#"["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]"#),
        ),
        same(
            "jsonb[]",
            r#"ARRAY['{"n": 18014398509481982123, "f": 5.0}'::jsonb, NULL]"#,
            Text(r#"[{"f": 5.0, "n": 18014398509481982123},null]"#),
        ),
        same(
            "json[]",
            r#"ARRAY['{"test": "}te][xt{"}'::json]"#,
            Text(r#"[{"test": "}te][xt{"}]"#),
        ),
        same("bytea[]", "'{\"\\\\x01\"}'", Text("[null]")),
        same(
            "date[]",
            "'{2023-03-06,infinity}'",
            Text(r#"["2023-03-06","9999-12-31"]"#),
        ),
        two(
            "time[]",
            "'{15:47}'",
            Text(r#"["15:47:00"]"#),
            Text(r#"["15:47:00.000000"]"#),
        ),
        two(
            "timestamp[]",
            "ARRAY['2023-03-06 15:47'::timestamp]",
            Text(r#"["2023-03-06 15:47:00"]"#),
            Text(r#"["2023-03-06T15:47:00.000000"]"#),
        ),
        two(
            "timestamptz[]",
            "ARRAY['2023-03-06 15:47+02'::timestamptz, '2023-03-06 15:47:00.12345+02']",
            Text(r#"["2023-03-06 13:47:00Z","2023-03-06 13:47:00.12345Z"]"#),
            Text(r#"["2023-03-06T13:47:00.000000Z","2023-03-06T13:47:00.123450Z"]"#),
        ),
        same("interval[]", "'{\"1 hour\"}'", Text(r#"["01:00:00"]"#)),
        same(
            "pg_lsn[]",
            "'{16/B374D848}'",
            Text(r#"["00000016/B374D848"]"#),
        ),
        same("money[]", "'{1.5}'", Text(r#"["$1.50"]"#)),
        // User-defined types.
        same("mood", "'happy'", Text("happy")),
        same("mood[]", "'{sad,NULL}'", Text(r#"["sad",null]"#)),
        two("rating", "1", Text("1"), Real(1.0)),
        two(
            "rating[]",
            "'{1,2.5}'",
            Text(r#"["1","2.5"]"#),
            Text("[1,2.5]"),
        ),
        same("pair", "ROW(ARRAY[2,3], 'bar')", Text(r#"("{2,3}",bar)"#)),
        same("int4range", "'[1,5)'", Text("[1,5)")),
        same(
            "int4range[]",
            "'{\"[1,5)\",empty}'",
            Text(r#"["[1,5)","empty"]"#),
        ),
        same(
            "tstzrange",
            "'[2024-01-01 00:00+00,)'",
            Text(r#"["2024-01-01 00:00:00+00",)"#),
        ),
        two("nonneg", "7", Text("7"), Int(7)),
    ]
}

fn column(i: usize) -> String {
    format!("c{i}")
}

async fn run(edition: u8) {
    let cases = golden();
    let db = TestDatabase::create().await;
    let client = db.client().await;
    let columns: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} {}", column(i), c.ty))
        .collect();
    let literals: Vec<&str> = cases.iter().map(|c| c.sql).collect();
    client
        .batch_execute(&format!(
            "SET TimeZone = 'Pacific/Chatham';
             CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
             CREATE DOMAIN rating AS float8 CHECK (VALUE BETWEEN 0 AND 5);
             CREATE DOMAIN nonneg AS int4 CHECK (VALUE >= 0);
             CREATE TYPE pair AS (foo int4[], bar text);
             CREATE TABLE golden (id text PRIMARY KEY, {});
             CREATE PUBLICATION powersync FOR ALL TABLES;
             INSERT INTO golden VALUES ('snapshot', {});",
            columns.join(", "),
            literals.join(", ")
        ))
        .await
        .unwrap();
    let rules = format!(
        "{}bucket_definitions:\n  global:\n    data:\n      - SELECT * FROM golden\n",
        if edition >= 2 {
            "config:\n  edition: 2\n"
        } else {
            ""
        }
    );
    let storage = memory_storage();
    let running = start(&db, storage.clone(), None, &rules).await;
    running.wait_commits(1).await;
    client
        .batch_execute(&format!(
            "INSERT INTO golden VALUES ('stream', {})",
            literals.join(", ")
        ))
        .await
        .unwrap();
    let storage2 = storage.clone();
    let rows: Vec<Row> = riptide_testkit::wait_for(
        "streamed golden row",
        std::time::Duration::from_secs(30),
        || {
            let storage = storage2.clone();
            async move {
                let rows: Vec<Row> = storage
                    .ops_after(0)
                    .iter()
                    .filter_map(|op| match op {
                        BatchOperation::Row(r) => match &r.change {
                            RowChange::Upsert { row, .. } => Some(Row::decode(row).unwrap()),
                            RowChange::Delete => None,
                        },
                        BatchOperation::Truncate { .. } => None,
                    })
                    .collect();
                (rows.len() >= 2).then_some(rows)
            }
        },
    )
    .await;
    let mut failures = Vec::new();
    for row in &rows {
        let phase = row.get("id").cloned();
        for (i, case) in cases.iter().enumerate() {
            let expected = if edition >= 2 {
                &case.edition2
            } else {
                &case.legacy
            };
            let got = row.get(&column(i)).cloned().unwrap_or(SqliteValue::Null);
            if !expected.matches(&got) {
                failures.push(format!(
                    "{phase:?} {} {}: expected {expected:?}, got {got:?}",
                    case.ty, case.sql
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    running.stop().await;
}

#[tokio::test]
async fn golden_table_legacy() {
    run(1).await;
}

#[tokio::test]
async fn golden_table_edition_2() {
    run(2).await;
}
