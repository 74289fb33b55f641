//! A whole sync config evaluated in memory from one JSON job, as `riptide rules eval` runs it
//! for the differential test against PowerSync's own compiler (`e2e/tests/`): parse the
//! config, evaluate every row (bucket rows and lookup entries), resolve every connection, and
//! report which rows each connection gets through which subscription.
//!
//! Job: `{"yaml": "...", "tables": {"todos": [{"id": "t1", …}], "app.lists": […]},
//! "connections": [{"token": {…}, "parameters": {…}, "include_defaults": true,
//! "subscriptions": [{"stream": "s", "parameters": {…}, "override_priority": 1}]}]}`.
//! JSON integers are integers, other numbers reals, `{"real": 3}` a real 3.0, booleans 1/0.
//!
//! Answer: `{"ok": bool, "errors": [{line, column, message}], "warnings": […],
//! "connections": [{"rows": {"<table>/<id>": {"data": ["{…}"], "via": ["default:<stream>",
//! "sub:<i>"]}}, "buckets": [{name, priority, via}], "streams": [{name, is_default, errors}]}]}`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    BucketReason, LookupResults, RequestParameters, Row, RulesError, SqliteValue, StreamRequest,
    Subscription, SyncRules, TableRef,
};

/// Why a job could not run.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("invalid job")]
    Json(#[source] serde_json::Error),
}

#[derive(Deserialize)]
struct Job {
    yaml: String,
    #[serde(default)]
    tables: BTreeMap<String, Vec<Map<String, Value>>>,
    #[serde(default)]
    connections: Vec<Connection>,
}

#[derive(Deserialize)]
struct Connection {
    #[serde(default)]
    token: Map<String, Value>,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default = "yes")]
    include_defaults: bool,
    #[serde(default)]
    subscriptions: Vec<JobSubscription>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct JobSubscription {
    stream: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    override_priority: Option<u8>,
}

fn sqlite_value(v: &Value) -> SqliteValue {
    match v {
        Value::Null => SqliteValue::Null,
        Value::Bool(b) => SqliteValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqliteValue::Integer(i),
            None => SqliteValue::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => SqliteValue::Text(s.clone()),
        Value::Object(m) => match m.get("real").and_then(Value::as_f64) {
            Some(f) => SqliteValue::Real(f),
            None => SqliteValue::Text(v.to_string()),
        },
        Value::Array(_) => SqliteValue::Text(v.to_string()),
    }
}

fn table_ref(name: &str) -> TableRef {
    match name.split_once('.') {
        Some((schema, table)) => TableRef::new(schema, table),
        None => TableRef::new("public", name),
    }
}

fn located(errors: &[RulesError]) -> Value {
    Value::Array(
        errors
            .iter()
            .map(|e| json!({"line": e.line, "column": e.column, "message": e.message}))
            .collect(),
    )
}

/// Runs a job (JSON text) and returns the answer (JSON text).
pub fn run(input: &str) -> Result<String, JobError> {
    let job: Job = serde_json::from_str(input).map_err(JobError::Json)?;
    let rules = match SyncRules::parse(&job.yaml) {
        Ok(r) => r,
        Err(e) => {
            return Ok(
                json!({"ok": false, "errors": located(&e.0), "warnings": [], "connections": []})
                    .to_string(),
            );
        }
    };
    // Replication: every row into bucket rows and lookup entries.
    let mut bucket_rows: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    let mut lookups: LookupResults = LookupResults::new();
    for (name, rows) in &job.tables {
        let table = table_ref(name);
        for r in rows {
            let mut row = Row::new();
            for (k, v) in r {
                row.insert(k.clone(), sqlite_value(v));
            }
            for out in rules.evaluate_row(&table, &row).rows {
                bucket_rows
                    .entry(out.bucket)
                    .or_default()
                    .push((out.table, out.id, out.data));
            }
            for p in rules.evaluate_parameter_row(&table, &row) {
                lookups.entry(p.lookup.key()).or_default().push(p.result);
            }
        }
    }
    let connections: Vec<Value> = job
        .connections
        .into_iter()
        .map(|c| connection(&rules, c, &bucket_rows, &lookups))
        .collect();
    Ok(json!({
        "ok": true,
        "errors": [],
        "warnings": located(rules.warnings()),
        "connections": connections,
    })
    .to_string())
}

fn connection(
    rules: &SyncRules,
    c: Connection,
    bucket_rows: &BTreeMap<String, Vec<(String, String, String)>>,
    lookups: &LookupResults,
) -> Value {
    let request = StreamRequest {
        request: RequestParameters::new(c.token, c.parameters),
        include_defaults: c.include_defaults,
        subscriptions: c
            .subscriptions
            .into_iter()
            .map(|s| Subscription {
                stream: s.stream,
                parameters: s.parameters,
                override_priority: s.override_priority,
            })
            .collect(),
    };
    // Storage answers every lookup (an absent key has no rows).
    let mut known = LookupResults::new();
    let resolution = loop {
        let r = rules.resolve_request(&request, &known);
        if r.missing_lookups.is_empty() {
            break r;
        }
        for l in r.missing_lookups {
            let key = l.key();
            let rows = lookups.get(&key).cloned().unwrap_or_default();
            known.insert(key, rows);
        }
    };
    let via = |reasons: &[BucketReason]| -> Vec<String> {
        reasons
            .iter()
            .map(|r| match r {
                BucketReason::Default(i) => format!(
                    "default:{}",
                    resolution.streams.get(*i).map_or("?", |s| s.name.as_str())
                ),
                BucketReason::Subscription(i) => format!("sub:{i}"),
            })
            .collect()
    };
    // A row in several buckets may differ between them (different queries): every version.
    let mut rows: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    let mut buckets = Vec::new();
    for b in &resolution.buckets {
        let reasons = via(&b.reasons);
        buckets.push(json!({"name": b.name, "priority": b.priority, "via": reasons}));
        for (table, id, data) in bucket_rows.get(&b.name).map_or(&[][..], Vec::as_slice) {
            let entry = rows.entry(format!("{table}/{id}")).or_default();
            if !entry.0.contains(data) {
                entry.0.push(data.clone());
            }
            for r in &reasons {
                if !entry.1.contains(r) {
                    entry.1.push(r.clone());
                }
            }
        }
    }
    let rows: Map<String, Value> = rows
        .into_iter()
        .map(|(k, (data, mut via))| {
            via.sort();
            (k, json!({"data": data, "via": via}))
        })
        .collect();
    let streams: Vec<Value> = resolution
        .streams
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "is_default": s.is_default,
                "errors": s.errors.iter().map(|e| json!({
                    "subscription": e.subscription.map_or(json!("default"), |i| json!(i)),
                    "message": e.message,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"rows": rows, "buckets": buckets, "streams": streams})
}
