//! Round trips: for generated rows and tokens, the migrated streams give every user exactly the
//! rows (with the same values) the classic rules gave.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::*;
use crate::{LookupResults, RequestParameters, Row, StreamRequest, TableRef};

/// A tiny deterministic generator (xorshift).
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

/// `(table, id) → data` a request gets.
fn synced(
    rules: &SyncRules,
    rows: &[(TableRef, Row)],
    token: Value,
) -> BTreeSet<(String, String, String)> {
    let mut store = LookupResults::new();
    let mut buckets: Vec<(String, String, String, String)> = Vec::new();
    for (t, r) in rows {
        for o in rules.evaluate_row(t, r).rows {
            buckets.push((o.bucket, o.table, o.id, o.data));
        }
        for p in rules.evaluate_parameter_row(t, r) {
            store.entry(p.lookup.key()).or_default().push(p.result);
        }
    }
    let Value::Object(jwt) = token else {
        return BTreeSet::new();
    };
    let request = StreamRequest {
        request: RequestParameters::new(jwt, Map::new()),
        include_defaults: true,
        subscriptions: Vec::new(),
    };
    let mut known = LookupResults::new();
    let resolution = loop {
        let r = rules.resolve_request(&request, &known);
        if r.missing_lookups.is_empty() {
            break r;
        }
        for l in r.missing_lookups {
            known.insert(l.key(), store.get(&l.key()).cloned().unwrap_or_default());
        }
    };
    let names: BTreeSet<&str> = resolution.buckets.iter().map(|b| b.name.as_str()).collect();
    buckets
        .into_iter()
        .filter(|(b, ..)| names.contains(b.as_str()))
        .map(|(_, table, id, data)| (table, id, data))
        .collect()
}

const DEFINITIONS: &[&str] = &[
    "  global:\n    data:\n      - SELECT * FROM tags\n",
    "  mine:\n    priority: 1\n    parameters: SELECT request.user_id() AS u\n    data:\n      - SELECT * FROM lists WHERE owner_id = bucket.u AND NOT archived\n      - SELECT id, upper(title) AS title FROM todos WHERE created_by = bucket.u\n",
    "  shared:\n    parameters: SELECT list_id FROM list_members WHERE user_id = request.user_id() AND role != 'banned'\n    data:\n      - SELECT * FROM lists WHERE id = bucket.list_id\n      - SELECT * FROM todos WHERE list_id = bucket.list_id AND status != 'done'\n",
    "  by_org:\n    parameters: SELECT token_parameters.org AS org\n    data:\n      - SELECT * FROM lists AS org_lists WHERE org_id = bucket.org\n",
    "  tagged:\n    parameters: SELECT value AS tag FROM json_each(request.jwt() -> 'tags')\n    data:\n      - SELECT * FROM todos WHERE tag = bucket.tag\n",
    "  team:\n    parameters:\n      - SELECT list_id AS l, user_id AS u FROM list_members WHERE user_id = request.user_id()\n      - SELECT id AS l, owner_id AS u FROM lists WHERE owner_id = request.user_id() AND NOT archived\n    data:\n      - SELECT * FROM todos WHERE list_id = bucket.l AND created_by = bucket.u\n",
    "  labelled:\n    parameters: SELECT request.user_id() AS u\n    data:\n      - SELECT * FROM todos WHERE bucket.u IN watchers AND status IN ('open', 'new')\n",
    "  \"Odd\":\n    parameters: SELECT \"User\" AS u FROM \"Members\" WHERE \"User\" = request.user_id()\n    data:\n      - SELECT * FROM \"Todos\" WHERE \"Owner\" = bucket.u\n",
];

fn rows(g: &mut Gen) -> Vec<(TableRef, Row)> {
    let users = [json!("u1"), json!("u2"), json!(null)];
    let lists = [json!("L1"), json!("L2"), json!(null)];
    let text = |v: &Value| match v {
        Value::String(s) => SqliteValue::Text(s.clone()),
        Value::Number(n) => SqliteValue::Integer(n.as_i64().unwrap_or(0)),
        _ => SqliteValue::Null,
    };
    let mut out = Vec::new();
    let mut add = |table: &str, values: Vec<(&str, SqliteValue)>| {
        let mut r = Row::new();
        for (k, v) in values {
            r.insert(k, v);
        }
        out.push((TableRef::new("public", table), r));
    };
    for i in 0..3 {
        add("tags", vec![("id", SqliteValue::Text(format!("g{i}")))]);
    }
    for i in 0..4 {
        add(
            "lists",
            vec![
                ("id", text(&json!(format!("L{i}")))),
                ("owner_id", text(g.pick(&users))),
                ("org_id", text(g.pick(&[json!("o1"), json!("o2")]))),
                ("archived", text(g.pick(&[json!(0), json!(1), json!(null)]))),
            ],
        );
    }
    for i in 0..6 {
        add(
            "list_members",
            vec![
                ("id", SqliteValue::Text(format!("m{i}"))),
                ("list_id", text(g.pick(&lists))),
                ("user_id", text(g.pick(&users))),
                (
                    "role",
                    text(g.pick(&[json!("banned"), json!("ok"), json!(null)])),
                ),
            ],
        );
    }
    for i in 0..10 {
        add(
            "todos",
            vec![
                ("id", SqliteValue::Text(format!("t{i}"))),
                ("list_id", text(g.pick(&lists))),
                ("created_by", text(g.pick(&users))),
                // ASCII only: classic `upper` is SQLite's (ASCII), a stream's is PowerSync's
                // (Unicode); the one difference migration cannot carry over.
                (
                    "title",
                    text(g.pick(&[json!("a"), json!("B"), json!(null)])),
                ),
                (
                    "status",
                    text(g.pick(&[json!("done"), json!("open"), json!("new"), json!(null)])),
                ),
                ("tag", text(g.pick(&[json!("red"), json!("blue")]))),
                (
                    "watchers",
                    text(g.pick(&[json!("[\"u1\"]"), json!("[\"u1\",\"u2\"]"), json!(null)])),
                ),
            ],
        );
        add(
            "Todos",
            vec![
                ("id", SqliteValue::Text(format!("T{i}"))),
                ("Owner", text(g.pick(&users))),
            ],
        );
    }
    add(
        "Members",
        vec![
            ("id", SqliteValue::Text("M".into())),
            ("User", SqliteValue::Text("u1".into())),
        ],
    );
    out
}

#[test]
fn migrated_streams_sync_what_the_classic_rules_synced() {
    for (seed, config) in [(1u64, ""), (2, "config:\n  edition: 2\n"), (3, "")] {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15 ^ seed);
        let classic_yaml = format!("{config}bucket_definitions:\n{}", DEFINITIONS.concat());
        let classic = match SyncRules::parse(&classic_yaml) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let migrated_yaml = match migrate_to_streams(&classic_yaml) {
            Ok(y) => y,
            Err(e) => panic!("{e}"),
        };
        let migrated = match SyncRules::parse(&migrated_yaml) {
            Ok(r) => r,
            Err(e) => panic!("migrated file does not parse: {e}\n{migrated_yaml}"),
        };
        for _ in 0..8 {
            let data = rows(&mut g);
            for token in [
                json!({"sub": "u1", "tags": ["red"], "parameters": {"org": "o1"}}),
                json!({"sub": "u2", "tags": ["blue", "red"], "parameters": {"org": "o2"}}),
                json!({"tags": "nope"}),
            ] {
                let a = synced(&classic, &data, token.clone());
                let b = synced(&migrated, &data, token.clone());
                assert_eq!(a, b, "token {token}\n{migrated_yaml}");
            }
        }
    }
}

#[test]
fn migration_output_reads_like_streams() {
    let yaml = "bucket_definitions:\n  mine:\n    priority: 1\n    parameters: SELECT request.user_id() AS u\n    data:\n      - SELECT * FROM lists WHERE owner_id = bucket.u\n";
    let out = match migrate_to_streams(yaml) {
        Ok(o) => o,
        Err(e) => panic!("{e}"),
    };
    assert!(
        out.contains("config:\n  edition: 3\n  timestamps_iso8601: false\n"),
        "{out}"
    );
    assert!(
        out.contains("  mine:\n    auto_subscribe: true\n    priority: 1\n    queries:\n      - \"SELECT lists.* FROM lists WHERE lists.owner_id = auth.user_id()\"\n"),
        "{out}"
    );
    assert!(matches!(
        migrate_to_streams("config:\n  edition: 3\nstreams:\n  s:\n    query: SELECT * FROM t\n"),
        Err(MigrateError::AlreadyStreams)
    ));
    assert!(matches!(
        migrate_to_streams(
            "bucket_definitions:\n  w:\n    data:\n      - SELECT * FROM \"t_%\" WHERE _table_suffix = 'a'\n"
        ),
        Err(MigrateError::Unsupported { .. })
    ));
}
