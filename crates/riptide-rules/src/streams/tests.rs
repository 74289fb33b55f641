//! Sync Streams through the public API: parsing, row and lookup evaluation, request resolution.

use serde_json::{Map, Value, json};

use crate::{
    BucketReason, LookupResults, RequestParameters, Row, RulesError, RulesErrors, SqliteValue,
    StreamRequest, Subscription, SyncRules, TableRef,
};

fn parse(yaml: &str) -> SyncRules {
    match SyncRules::parse(yaml) {
        Ok(r) => r,
        Err(e) => panic!("should parse: {e}\n{yaml}"),
    }
}

fn rejected(yaml: &str) -> Vec<RulesError> {
    match SyncRules::parse(yaml) {
        Ok(_) => panic!("should be rejected: {yaml}"),
        Err(RulesErrors(errors)) => errors,
    }
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn row(v: Value) -> Row {
    let mut r = Row::new();
    for (k, v) in object(v) {
        let value = match v {
            Value::Null => SqliteValue::Null,
            Value::Bool(b) => SqliteValue::Integer(i64::from(b)),
            Value::Number(n) => n.as_i64().map_or_else(
                || SqliteValue::Real(n.as_f64().unwrap_or(0.0)),
                SqliteValue::Integer,
            ),
            Value::String(s) => SqliteValue::Text(s),
            other => SqliteValue::Text(other.to_string()),
        };
        r.insert(k, value);
    }
    r
}

fn t(name: &str) -> TableRef {
    TableRef::new("public", name)
}

/// Replication of `rows` into bucket → [(table, id)] and the lookup store.
struct Store {
    buckets: Vec<(String, String, String)>,
    lookups: LookupResults,
}

fn replicate(rules: &SyncRules, rows: &[(&str, Value)]) -> Store {
    let mut store = Store {
        buckets: Vec::new(),
        lookups: LookupResults::new(),
    };
    for (table, r) in rows {
        let r = row(r.clone());
        for out in rules.evaluate_row(&t(table), &r).rows {
            store.buckets.push((out.bucket, out.table, out.id));
        }
        for p in rules.evaluate_parameter_row(&t(table), &r) {
            store
                .lookups
                .entry(p.lookup.key())
                .or_default()
                .push(p.result);
        }
    }
    store
}

fn request(token: Value, subscriptions: Vec<Subscription>) -> StreamRequest {
    StreamRequest {
        request: RequestParameters::new(object(token), Map::new()),
        include_defaults: true,
        subscriptions,
    }
}

fn sub(stream: &str, parameters: Value) -> Subscription {
    Subscription {
        stream: stream.into(),
        parameters: Some(object(parameters)),
        override_priority: None,
    }
}

/// Resolves like the service: reads missing lookups from `store` until complete.
fn resolve(rules: &SyncRules, store: &Store, req: &StreamRequest) -> crate::Resolution {
    let mut known = LookupResults::new();
    for _ in 0..10 {
        let r = rules.resolve_request(req, &known);
        if r.missing_lookups.is_empty() {
            return r;
        }
        for l in r.missing_lookups {
            let key = l.key();
            known.insert(
                key.clone(),
                store.lookups.get(&key).cloned().unwrap_or_default(),
            );
        }
    }
    panic!("resolution did not converge");
}

/// `(table/id, reasons)` a request gets.
fn rows_of(store: &Store, resolution: &crate::Resolution) -> Vec<(String, Vec<BucketReason>)> {
    let mut out: Vec<(String, Vec<BucketReason>)> = Vec::new();
    for b in &resolution.buckets {
        for (bucket, table, id) in &store.buckets {
            if *bucket == b.name {
                let key = format!("{table}/{id}");
                match out.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, reasons)) => {
                        for r in &b.reasons {
                            if !reasons.contains(r) {
                                reasons.push(*r);
                            }
                        }
                    }
                    None => out.push((key, b.reasons.clone())),
                }
            }
        }
    }
    out.sort();
    out
}

const TODO_APP: &str = "config:
  edition: 3
streams:
  my_lists:
    auto_subscribe: true
    query: SELECT * FROM lists WHERE owner_id = auth.user_id()
  list_todos:
    priority: 1
    query: SELECT * FROM todos WHERE list_id = subscription.parameter('list_id') AND list_id IN (SELECT list_id FROM list_members WHERE user_id = auth.user_id())
";

fn todo_rows() -> Vec<(&'static str, Value)> {
    vec![
        ("lists", json!({"id": "L1", "owner_id": "u1"})),
        ("lists", json!({"id": "L2", "owner_id": "u2"})),
        (
            "list_members",
            json!({"id": "m1", "list_id": "L2", "user_id": "u1"}),
        ),
        ("todos", json!({"id": "t1", "list_id": "L1"})),
        ("todos", json!({"id": "t2", "list_id": "L2"})),
        ("todos", json!({"id": "t3", "list_id": "L2"})),
    ]
}

#[test]
fn docs_example_end_to_end() {
    let rules = parse(TODO_APP).with_bucket_prefix("7#");
    let store = replicate(&rules, &todo_rows());
    let buckets: Vec<&str> = store.buckets.iter().map(|(b, _, _)| b.as_str()).collect();
    assert_eq!(
        buckets,
        [
            r#"7#my_lists|0["u1"]"#,
            r#"7#my_lists|0["u2"]"#,
            r#"7#list_todos|0["L1"]"#,
            r#"7#list_todos|0["L2"]"#,
            r#"7#list_todos|0["L2"]"#,
        ]
    );
    let req = request(
        json!({"sub": "u1"}),
        vec![
            sub("list_todos", json!({"list_id": "L2"})),
            sub("list_todos", json!({"list_id": "L1"})),
        ],
    );
    let r = resolve(&rules, &store, &req);
    assert_eq!(
        rows_of(&store, &r),
        vec![
            ("lists/L1".into(), vec![BucketReason::Default(0)]),
            ("todos/t2".into(), vec![BucketReason::Subscription(0)]),
            ("todos/t3".into(), vec![BucketReason::Subscription(0)]),
        ]
    );
    let priorities: Vec<(&str, u8)> = r
        .buckets
        .iter()
        .map(|b| (b.name.as_str(), b.priority))
        .collect();
    assert_eq!(
        priorities,
        [(r#"7#list_todos|0["L2"]"#, 1), (r#"7#my_lists|0["u1"]"#, 3)]
    );
    let streams: Vec<(&str, bool, usize)> = r
        .streams
        .iter()
        .map(|s| (s.name.as_str(), s.is_default, s.errors.len()))
        .collect();
    assert_eq!(streams, [("my_lists", true, 0), ("list_todos", false, 0)]);
}

#[test]
fn membership_rows_move_rows_in_and_out() {
    let rules = parse(TODO_APP);
    let req = request(
        json!({"sub": "u3"}),
        vec![sub("list_todos", json!({"list_id": "L2"}))],
    );
    let mut rows = todo_rows();
    let before = replicate(&rules, &rows);
    assert!(rows_of(&before, &resolve(&rules, &before, &req)).is_empty());
    rows.push((
        "list_members",
        json!({"id": "m2", "list_id": "L2", "user_id": "u3"}),
    ));
    let after = replicate(&rules, &rows);
    let got: Vec<String> = rows_of(&after, &resolve(&rules, &after, &req))
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(got, ["todos/t2", "todos/t3"]);
}

#[test]
fn chained_lookups_resolve_a_stage_at_a_time() {
    let rules = parse(
        "config:\n  edition: 3\nstreams:\n  s:\n    auto_subscribe: true\n    query: SELECT * FROM todos WHERE list_id IN (SELECT list_id FROM list_members WHERE user_id IN (SELECT id FROM users WHERE org_id = auth.parameter('org')))\n",
    );
    let store = replicate(
        &rules,
        &[
            ("users", json!({"id": "u1", "org_id": "o1"})),
            ("users", json!({"id": "u2", "org_id": "o2"})),
            (
                "list_members",
                json!({"id": "m1", "list_id": "L1", "user_id": "u1"}),
            ),
            (
                "list_members",
                json!({"id": "m2", "list_id": "L2", "user_id": "u2"}),
            ),
            ("todos", json!({"id": "t1", "list_id": "L1"})),
            ("todos", json!({"id": "t2", "list_id": "L2"})),
        ],
    );
    let req = request(json!({"sub": "x", "org": "o1"}), vec![]);
    let first = rules.resolve_request(&req, &LookupResults::new());
    assert_eq!(first.missing_lookups.len(), 1, "{first:?}");
    let r = resolve(&rules, &store, &req);
    let got: Vec<String> = rows_of(&store, &r).into_iter().map(|(k, _)| k).collect();
    assert_eq!(got, ["todos/t1"]);
}

#[test]
fn two_columns_of_one_lookup_row_stay_together() {
    let rules = parse(
        "config:\n  edition: 3\nstreams:\n  s:\n    auto_subscribe: true\n    query: SELECT t.* FROM todos t, list_members m WHERE t.list_id = m.list_id AND t.owner_id = m.user_id AND m.role = auth.parameter('role')\n",
    );
    let store = replicate(
        &rules,
        &[
            (
                "list_members",
                json!({"id": "m1", "list_id": "L1", "user_id": "u1", "role": "r"}),
            ),
            (
                "list_members",
                json!({"id": "m2", "list_id": "L2", "user_id": "u2", "role": "r"}),
            ),
            (
                "todos",
                json!({"id": "a", "list_id": "L1", "owner_id": "u1"}),
            ),
            (
                "todos",
                json!({"id": "b", "list_id": "L1", "owner_id": "u2"}),
            ),
            (
                "todos",
                json!({"id": "c", "list_id": "L2", "owner_id": "u2"}),
            ),
        ],
    );
    let r = resolve(
        &rules,
        &store,
        &request(json!({"sub": "x", "role": "r"}), vec![]),
    );
    let got: Vec<String> = rows_of(&store, &r).into_iter().map(|(k, _)| k).collect();
    // Not `todos/b`: L1 and u2 come from different member rows.
    assert_eq!(got, ["t/a", "t/c"]);
}

#[test]
fn subscription_problems_stay_with_their_subscription() {
    let rules = parse(&format!(
        "{TODO_APP}  by_ids:\n    query: SELECT * FROM lists WHERE id IN subscription.parameter('ids')\n"
    ));
    let store = replicate(&rules, &todo_rows());
    let mut bad_priority = sub("list_todos", json!({"list_id": "L2"}));
    bad_priority.override_priority = Some(0);
    let req = request(
        json!({"sub": "u1"}),
        vec![
            sub("nope", json!({})),
            sub("list_todos", json!({})),
            sub("by_ids", json!({"ids": 5})),
            bad_priority,
            sub("by_ids", json!({"ids": ["L1", "L2"]})),
        ],
    );
    let r = resolve(&rules, &store, &req);
    let errors: Vec<(String, Option<usize>, String)> = r
        .streams
        .iter()
        .flat_map(|s| {
            s.errors
                .iter()
                .map(|e| (s.name.clone(), e.subscription, e.message.clone()))
        })
        .collect();
    assert_eq!(
        errors,
        vec![
            (
                "list_todos".into(),
                Some(1),
                "missing subscription parameter `list_id`".into()
            ),
            (
                "by_ids".into(),
                Some(2),
                "error evaluating bucket ids: json_each needs JSON text, not a number or blob"
                    .into()
            ),
            ("nope".into(), Some(0), "unknown stream `nope`".into()),
        ]
    );
    let got = rows_of(&store, &r);
    assert!(
        got.contains(&("todos/t2".into(), vec![BucketReason::Subscription(3)])),
        "{got:?}"
    );
    assert!(
        got.contains(&("lists/L2".into(), vec![BucketReason::Subscription(4)])),
        "{got:?}"
    );
    assert!(
        r.buckets
            .iter()
            .any(|b| b.name == r#"list_todos|0["L2"]"# && b.priority == 0)
    );
}

#[test]
fn limits_are_per_subscription() {
    let rules = parse(
        "config:\n  edition: 3\nstreams:\n  s:\n    query: SELECT * FROM lists WHERE id IN subscription.parameter('ids')\n",
    );
    let store = replicate(&rules, &[]);
    let many: Vec<String> = (0..20).map(|i| format!("L{i}")).collect();
    let req = request(
        json!({"sub": "u1"}),
        vec![
            sub("s", json!({"ids": many})),
            sub("s", json!({"ids": ["A"]})),
        ],
    );
    let limits = crate::RequestLimits {
        max_buckets_per_subscription: 10,
        max_lookups_per_subscription: 10,
    };
    let r = rules.resolve_request_with(&req, &store.lookups, limits);
    assert_eq!(r.buckets.len(), 1);
    assert_eq!(r.buckets[0].reasons, vec![BucketReason::Subscription(1)]);
    assert_eq!(r.streams[0].errors.len(), 1);
    assert!(r.streams[0].errors[0].message.contains("too many buckets"));
}

#[test]
fn defaults_follow_include_defaults() {
    let rules = parse(TODO_APP);
    let mut req = request(json!({"sub": "u1"}), vec![]);
    req.include_defaults = false;
    let r = rules.resolve_request(&req, &LookupResults::new());
    assert!(r.buckets.is_empty() && r.streams.is_empty(), "{r:?}");
    // An explicit subscription to a default stream also gets the default one.
    req.include_defaults = true;
    req.subscriptions = vec![sub("my_lists", json!({}))];
    let r = rules.resolve_request(&req, &LookupResults::new());
    assert_eq!(r.buckets.len(), 1);
    assert_eq!(
        r.buckets[0].reasons,
        vec![BucketReason::Default(0), BucketReason::Subscription(0)]
    );
}

#[test]
fn classic_rules_resolve_as_default_streams() {
    let rules = parse(
        "bucket_definitions:\n  global:\n    data: [SELECT * FROM tags]\n  mine:\n    parameters: SELECT request.user_id() AS u\n    data: [SELECT * FROM lists WHERE owner_id = bucket.u]\n",
    );
    let r = rules.resolve_request(
        &request(json!({"sub": "u1"}), vec![]),
        &LookupResults::new(),
    );
    let buckets: Vec<(&str, Vec<BucketReason>)> = r
        .buckets
        .iter()
        .map(|b| (b.name.as_str(), b.reasons.clone()))
        .collect();
    assert_eq!(
        buckets,
        [
            ("global[]", vec![BucketReason::Default(0)]),
            (r#"mine["u1"]"#, vec![BucketReason::Default(1)]),
        ]
    );
    let streams: Vec<(&str, bool)> = r
        .streams
        .iter()
        .map(|s| (s.name.as_str(), s.is_default))
        .collect();
    assert_eq!(streams, [("global", true), ("mine", true)]);
}

#[test]
fn ctes_shadow_and_are_inlined_per_use() {
    let rules = parse(
        "config:\n  edition: 3\nwith:\n  mine: SELECT id FROM lists WHERE owner_id = auth.user_id()\nstreams:\n  a:\n    auto_subscribe: true\n    query: SELECT * FROM todos WHERE list_id IN mine\n  b:\n    auto_subscribe: true\n    with:\n      mine: SELECT list_id AS id FROM list_members WHERE user_id = auth.user_id()\n    query: SELECT * FROM todos WHERE list_id IN mine\n",
    );
    let store = replicate(&rules, &todo_rows());
    let r = resolve(&rules, &store, &request(json!({"sub": "u1"}), vec![]));
    let got = rows_of(&store, &r);
    assert_eq!(
        got,
        vec![
            ("todos/t1".into(), vec![BucketReason::Default(0)]),
            ("todos/t2".into(), vec![BucketReason::Default(1)]),
            ("todos/t3".into(), vec![BucketReason::Default(1)]),
        ]
    );
}

#[test]
fn wildcard_tables_and_json_each_rows() {
    let rules = parse(
        "config:\n  edition: 3\nstreams:\n  s:\n    auto_subscribe: true\n    query: SELECT * FROM \"todos_%\" WHERE subscription.parameter('tag') IN labels\n",
    );
    let r = row(json!({"id": "a", "labels": "[\"x\",\"y\",\"x\"]"}));
    let out = rules
        .evaluate_row(&TableRef::new("public", "todos_2024"), &r)
        .rows;
    let got: Vec<(&str, &str)> = out
        .iter()
        .map(|o| (o.bucket.as_str(), o.table.as_str()))
        .collect();
    assert_eq!(
        got,
        [(r#"s|0["x"]"#, "todos_2024"), (r#"s|0["y"]"#, "todos_2024")]
    );
    assert!(rules.evaluate_row(&t("todos"), &r).rows.is_empty());
    assert!(rules.source_tables().is_empty());
}

#[test]
fn powersync_not_and_output_rows() {
    let rules = parse(
        "config:\n  edition: 3\nstreams:\n  s:\n    auto_subscribe: true\n    query: SELECT *, upper(name) AS name, CASE WHEN n > 1 THEN 'big' END AS size, doc ->> 'a.b' AS dotted FROM t WHERE status != 'done' AND NOT archived\n",
    );
    // NULL passes both negations, as PowerSync evaluates `NOT`.
    let r = row(
        json!({"id": 1, "name": "é", "n": 2, "status": null, "archived": null, "doc": "{\"a.b\": 5, \"a\": {\"b\": 6}}"}),
    );
    let out = rules.evaluate_row(&t("t"), &r).rows;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].id, "1");
    assert_eq!(
        out[0].data,
        r#"{"id":1,"name":"É","n":2,"status":null,"archived":null,"doc":"{\"a.b\": 5, \"a\": {\"b\": 6}}","size":"big","dotted":5}"#
    );
    let done = row(json!({"id": 2, "status": "done"}));
    assert!(rules.evaluate_row(&t("t"), &done).rows.is_empty());
}

#[test]
fn warnings_do_not_refuse() {
    let rules = parse(
        "config:\n  edition: 3\nwith:\n  unused: SELECT id FROM u\nstreams:\n  s:\n    query: SELECT * FROM t WHERE id = subscription.parameter('id')\n    colour: red\n",
    );
    let messages: Vec<(usize, usize, &str)> = rules
        .warnings()
        .iter()
        .map(|w| (w.line, w.column, w.message.as_str()))
        .collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(
        messages[0].2.contains("`unused` is not used"),
        "{messages:?}"
    );
    assert!(messages[1].2.contains("unauthenticated"), "{messages:?}");
    assert!(
        messages[2].2.contains("unknown key `colour`"),
        "{messages:?}"
    );
    let accepted = parse(
        "config:\n  edition: 3\nstreams:\n  s:\n    accept_potentially_dangerous_queries: true\n    query: SELECT * FROM t WHERE id = subscription.parameter('id')\n",
    );
    assert!(accepted.warnings().is_empty());
    let alpha = parse("config:\n  edition: 2\nstreams:\n  s:\n    query: SELECT * FROM t\n");
    assert!(alpha.warnings()[0].message.contains("alpha"));
}

#[test]
fn refusals_are_located() {
    let one = |q: &str| format!("config:\n  edition: 3\nstreams:\n  s:\n    query: {q}\n");
    // Queries start at line 5, column 12.
    let cases: Vec<(String, (usize, usize), &str)> = vec![
        (one("SELECT * FROM t WHERE x % 2 = 0"), (5, 34), "`%`"),
        (one("SELECT * FROM t WHERE x IN (1, 2)"), (5, 34), "ARRAY"),
        (one("SELECT name FROM t"), (5, 12), "`id`"),
        (one("SELECT * FROM t WHERE x LIKE 'a'"), (5, 34), "LIKE"),
        (one("SELECT * FROM t LEFT JOIN u ON t.a = u.b"), (5, 38), "inner joins"),
        (one("SELECT * FROM t, u"), (5, 19), "several tables"),
        (one("SELECT t.*, u.* FROM t, u"), (5, 12), "already selects from `t`"),
        (one("SELECT * FROM t WHERE x = ?"), (5, 38), "SQL parameters"),
        (one("SELECT * FROM t WHERE x + auth.user_id() = 1"), (5, 34), "both a table's rows and request values"),
        (one("SELECT t.* FROM t, u WHERE t.a > u.b"), (5, 39), "two tables"),
        (one("SELECT * FROM t WHERE x = nope(1)"), (5, 38), "unknown function `nope`"),
        (one("SELECT * FROM t WHERE x = request.user_id()"), (5, 38), "request.user_id"),
        (one("SELECT * FROM t WHERE x = y ORDER BY x"), (5, 49), "ORDER BY"),
        (one("SELECT * FROM t WHERE x = -y"), (5, 39), "unary minus"),
        (one("SELECT * FROM t WHERE CAST(x AS int) = 1"), (5, 39), "cast"),
        (one("SELECT * FROM t WHERE x = subscription.parameter(y)"), (5, 34), "request values"),
        (one("SELECT * FROM t WHERE x IN (SELECT a, b FROM u)"), (5, 40), "exactly one column"),
        (one("SELECT *, auth.user_id() AS me FROM t"), (5, 22), "request value"),
        (one("SELECT * FROM t WHERE x = ="), (5, 38), "syntax error"),
        (
            "config:\n  edition: 3\nwith:\n  c: SELECT * FROM u\nstreams:\n  s:\n    query: SELECT * FROM t WHERE x IN c\n".into(),
            (4, 13),
            "`*` is not allowed",
        ),
        (
            "config:\n  edition: 3\nstreams:\n  s:\n    with:\n      c: SELECT a, b FROM u\n    query: SELECT * FROM t WHERE x IN c\n".into(),
            (7, 39),
            "exactly one column",
        ),
        (
            "config:\n  edition: 3\nbucket_definitions:\n  b:\n    data: [SELECT * FROM t]\nstreams:\n  s:\n    query: SELECT * FROM t\n".into(),
            (3, 1),
            "not supported in edition 3",
        ),
        ("config:\n  edition: 3\n".into(), (1, 1), "`streams`"),
        (
            "config:\n  edition: 2\nstreams:\n  s:\n    queries: [SELECT * FROM t]\n".into(),
            (5, 5),
            "`queries` needs",
        ),
        (
            "config:\n  edition: 3\nstreams:\n  s:\n    priority: 9\n    query: SELECT * FROM t\n".into(),
            (5, 15),
            "priority",
        ),
        (
            "config:\n  edition: 3\nstreams:\n  s:\n    auto_subscribe: true\n".into(),
            (4, 3),
            "exactly one of `query` or `queries`",
        ),
        (
            "config:\n  edition: 3\nstreams:\n  \"a|b\":\n    query: SELECT * FROM t\n".into(),
            (4, 3),
            "invalid stream name",
        ),
        (
            "bucket_definitions:\n  s:\n    data: [SELECT * FROM t]\nconfig:\n  edition: 2\nstreams:\n  s:\n    query: SELECT * FROM t\n".into(),
            (7, 3),
            "already",
        ),
    ];
    let mut failures = Vec::new();
    for (yaml, (line, column), fragment) in cases {
        let errors = rejected(&yaml);
        if !errors
            .iter()
            .any(|e| e.message.contains(fragment) && (e.line, e.column) == (line, column))
        {
            failures.push(format!(
                "{yaml}expected {line}:{column} {fragment:?}, got {errors:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn bucket_names_are_stable_and_distinct_per_variant() {
    // Branches a request resolves the same way share a bucket; others get their own.
    let yaml = "config:\n  edition: 3\nstreams:\n  s:\n    auto_subscribe: true\n    queries:\n      - SELECT * FROM t WHERE a = auth.user_id() OR b = auth.user_id()\n      - SELECT * FROM t WHERE c = auth.parameter('team')\n";
    let r = row(json!({"id": "x", "a": "u1", "b": "u2", "c": "t1"}));
    let first: Vec<String> = parse(yaml)
        .evaluate_row(&t("t"), &r)
        .rows
        .into_iter()
        .map(|o| o.bucket)
        .collect();
    let again: Vec<String> = parse(yaml)
        .evaluate_row(&t("t"), &r)
        .rows
        .into_iter()
        .map(|o| o.bucket)
        .collect();
    assert_eq!(first, [r#"s|0["u1"]"#, r#"s|0["u2"]"#, r#"s|1["t1"]"#]);
    assert_eq!(first, again);
}

mod arbitrary_input {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn stream_queries_never_panic(sql in "[ -~]{0,80}") {
            let yaml = format!("config:\n  edition: 3\nstreams:\n  s:\n    query: {:?}\n", sql);
            if let Err(RulesErrors(errors)) = SyncRules::parse(&yaml) {
                prop_assert!(!errors.is_empty());
            }
        }

        #[test]
        fn evaluation_and_resolution_never_panic(
            a in proptest::option::of("[a-z0-9\\[\\]\", ]{0,12}"),
            n in any::<i64>(),
            f in any::<f64>(),
            param in proptest::option::of("[a-z0-9\\[\\]\", {}:]{0,12}"),
        ) {
            let rules = parse(
                "config:\n  edition: 3\nstreams:\n  s:\n    auto_subscribe: true\n    query: SELECT *, n / 2 AS h, upper(a) AS u FROM t WHERE a IN subscription.parameter('p') AND n > 1 AND a IN (SELECT x FROM u WHERE y = auth.parameter('p'))\n  j:\n    query: SELECT t.* FROM t, json_each(t.a) AS e WHERE e.value = subscription.parameter('p')\n",
            );
            let mut r = Row::new();
            r.insert("id", SqliteValue::Integer(n));
            r.insert("a", a.clone().map_or(SqliteValue::Null, SqliteValue::Text));
            r.insert("n", SqliteValue::Integer(n));
            r.insert("f", SqliteValue::Real(f));
            r.insert("x", a.map_or(SqliteValue::Real(f), SqliteValue::Text));
            r.insert("y", SqliteValue::Integer(n));
            let _ = rules.evaluate_row(&t("t"), &r);
            let _ = rules.evaluate_parameter_row(&t("u"), &r);
            let p = param.map_or(Value::Null, Value::String);
            let req = StreamRequest {
                request: RequestParameters::new(object(json!({"sub": "u", "p": p.clone()})), Map::new()),
                include_defaults: true,
                subscriptions: vec![sub("s", json!({"p": p.clone()})), sub("j", json!({"p": p}))],
            };
            let _ = rules.resolve_request(&req, &LookupResults::new());
        }
    }
}
