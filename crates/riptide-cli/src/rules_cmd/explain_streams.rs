//! `riptide rules explain` for a file with Sync Streams: the request the service would resolve
//! for the user, their default streams and `--subscription` flags, read from the database a
//! lookup step at a time, then which stream grants one row or why none does. Classic
//! definitions of the same file count as default streams.

use std::collections::{BTreeMap, HashSet};

use anyhow::{Context, Result, bail};
use riptide_replication::TableSchema;
use riptide_rules::{
    BucketReason, LookupResults, QueryKind, RequestParameters, Resolution, StreamRequest,
    Subscription, SyncRules, TableRef, sql_literal,
};
use serde_json::Value;
use tokio_postgres::Transaction;

use super::{db, plural};

/// `STREAM` or `STREAM=JSON` (the subscription's parameters).
pub(super) fn parse_subscription(arg: &str) -> Result<Subscription> {
    let (stream, parameters) = match arg.split_once('=') {
        Some((s, json)) => match serde_json::from_str(json)
            .with_context(|| format!("--subscription {s}: parameters are not valid JSON"))?
        {
            Value::Object(m) => (s, Some(m)),
            _ => bail!("--subscription {s}: parameters must be a JSON object"),
        },
        None => (arg, None),
    };
    Ok(Subscription {
        stream: stream.to_owned(),
        parameters,
        override_priority: None,
    })
}

fn tables(rules: &SyncRules, kind: QueryKind) -> Vec<TableRef> {
    let mut out: Vec<TableRef> = rules
        .queries()
        .into_iter()
        .filter(|q| q.kind == kind)
        .filter_map(|q| q.table)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Resolves the request, reading the lookups it asks for from the database.
async fn resolve(
    rules: &SyncRules,
    tx: &Transaction<'_>,
    schemas: &BTreeMap<TableRef, TableSchema>,
    request: &StreamRequest,
) -> Result<Resolution> {
    let mut known = LookupResults::new();
    loop {
        let r = rules.resolve_request(request, &known);
        if r.missing_lookups.is_empty() {
            return Ok(r);
        }
        let wanted: HashSet<Vec<u8>> = r.missing_lookups.iter().map(|l| l.key()).collect();
        for key in &wanted {
            known.insert(key.clone(), Vec::new());
        }
        for table in tables(rules, QueryKind::Parameter) {
            let Some(schema) = schemas.get(&table) else {
                continue;
            };
            db::for_each_row(tx, schema, |row| {
                for e in rules.evaluate_parameter_row(&table, row) {
                    let key = e.lookup.key();
                    if wanted.contains(&key)
                        && let Some(results) = known.get_mut(&key)
                    {
                        results.push(e.result);
                    }
                }
            })
            .await?;
        }
    }
}

fn via(r: &Resolution, reasons: &[BucketReason]) -> String {
    reasons
        .iter()
        .map(|reason| match reason {
            BucketReason::Default(i) => format!(
                "default subscription of {}",
                r.streams.get(*i).map_or("?", |s| s.name.as_str())
            ),
            BucketReason::Subscription(i) => format!("subscription {}", i + 1),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints what the user gets and, for `target`, why.
pub(super) async fn explain(
    rules: &SyncRules,
    tx: &Transaction<'_>,
    schemas: &BTreeMap<TableRef, TableSchema>,
    request: RequestParameters,
    subscriptions: Vec<Subscription>,
    target: Option<(TableRef, String)>,
) -> Result<()> {
    let user = sql_literal(&request.user_id);
    let request = StreamRequest {
        request,
        include_defaults: true,
        subscriptions,
    };
    let r = resolve(rules, tx, schemas, &request).await?;
    println!("user {user}: {}", plural(r.buckets.len(), "bucket"));
    let width = r.buckets.iter().map(|b| b.name.len()).max().unwrap_or(0);
    for b in &r.buckets {
        println!(
            "  {:width$}  priority {}  via {}",
            b.name,
            b.priority,
            via(&r, &b.reasons)
        );
    }
    for s in &r.streams {
        for e in &s.errors {
            let which = e.subscription.map_or_else(
                || "default subscription".to_owned(),
                |i| format!("subscription {}", i + 1),
            );
            println!("  {which} of {}: {}", s.name, e.message);
        }
    }
    let Some((table, id)) = target else {
        return Ok(());
    };
    println!();
    let Some(schema) = schemas.get(&table) else {
        println!(
            "row {}:{id}: no query reads table {}",
            table.qualified(),
            table.qualified()
        );
        return Ok(());
    };
    let Some(row) = db::find_row(tx, schema, &id).await? else {
        bail!("table {} has no row with id {id:?}", table.qualified());
    };
    println!("row {}:{id}", table.qualified());
    let mut outcomes: Vec<(String, Result<String, String>)> = rules
        .explain_stream_row(&table, &row)
        .into_iter()
        .map(|o| (format!("stream {}", o.stream), o.result.map(|(b, _)| b)))
        .collect();
    outcomes.extend(rules.explain_row(&table, &row).into_iter().map(|o| {
        (
            format!("data query {} of {}", o.query_index + 1, o.definition),
            o.result.map(|(b, _)| b),
        )
    }));
    if outcomes.is_empty() {
        println!(
            "  no query syncs rows of {}: the row is in no bucket",
            table.qualified()
        );
    }
    let mut granted = Vec::new();
    for (source, result) in outcomes {
        match result {
            Err(reason) => println!("  {source} does not select it: {reason}"),
            Ok(bucket) => match r.buckets.iter().find(|b| b.name == bucket) {
                Some(b) => {
                    println!(
                        "  {source} puts it in {bucket}: GRANTED via {}",
                        via(&r, &b.reasons)
                    );
                    granted.push(bucket);
                }
                None => println!(
                    "  {source} puts it in {bucket}, which none of the user's subscriptions (with their parameters and the database's rows) gives"
                ),
            },
        }
    }
    if granted.is_empty() {
        println!("verdict: user {user} does not get this row");
    } else {
        granted.dedup();
        println!(
            "verdict: user {user} gets this row through {}",
            granted.join(", ")
        );
    }
    Ok(())
}
