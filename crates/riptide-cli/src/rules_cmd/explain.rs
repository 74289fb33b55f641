//! `riptide rules explain FILE --database URL --user ID [--claims JSON] [--params JSON]
//! [--row TABLE:ID] [--subscription STREAM[=JSON]]…`: evaluates the rules over the database as
//! the service would for that user's token, in one read-only snapshot (files with streams:
//! `explain_streams.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use riptide_replication::{TableSchema, TypeMap};
use riptide_rules::{
    BucketDescription, QueryKind, RequestParameters, Row, SyncRules, TableRef, sql_literal,
};
use serde_json::{Map, Value};
use tokio_postgres::{IsolationLevel, Transaction};

use super::{db, load, plural};

/// Arguments of `riptide rules explain`.
#[derive(Debug, Clone)]
pub struct ExplainOptions {
    pub file: PathBuf,
    pub database: String,
    pub user: String,
    pub claims: Option<String>,
    pub params: Option<String>,
    pub row: Option<String>,
    /// `STREAM` or `STREAM={…}` stream subscriptions (files with streams).
    pub subscriptions: Vec<String>,
}

fn json_object(text: Option<&str>, flag: &str) -> Result<Map<String, Value>> {
    let Some(text) = text else {
        return Ok(Map::new());
    };
    match serde_json::from_str(text).with_context(|| format!("{flag} is not valid JSON"))? {
        Value::Object(m) => Ok(m),
        _ => bail!("{flag} must be a JSON object"),
    }
}

/// The request the service would build for a token of `user` with these claims.
fn request(o: &ExplainOptions) -> Result<RequestParameters> {
    let mut jwt = json_object(o.claims.as_deref(), "--claims")?;
    jwt.insert("sub".into(), Value::String(o.user.clone()));
    let params = json_object(o.params.as_deref(), "--params")?;
    Ok(RequestParameters::new(jwt, params))
}

/// `TABLE:ID` → (table, id); the schema defaults to `public`.
fn parse_row_arg(arg: &str) -> Result<(TableRef, String)> {
    let Some((table, id)) = arg.split_once(':') else {
        bail!("--row must be TABLE:ID (e.g. lists:L1 or app.lists:L1), got {arg:?}");
    };
    let table = match table.split_once('.') {
        Some((schema, name)) => TableRef::new(schema, name),
        None => TableRef::new("public", table),
    };
    if table.name.is_empty() || table.schema.is_empty() {
        bail!("--row must be TABLE:ID, got {arg:?}");
    }
    Ok((table, id.to_owned()))
}

fn tables_of(rules: &SyncRules, kind: QueryKind) -> BTreeSet<TableRef> {
    rules
        .queries()
        .into_iter()
        .filter(|q| q.kind == kind)
        .filter_map(|q| q.table)
        .collect()
}

/// Evaluates and prints; `Ok(false)` when the rules file has errors.
pub async fn explain(o: &ExplainOptions) -> Result<bool> {
    let Some(rules) = load(&o.file)? else {
        return Ok(false);
    };
    let request = request(o)?;
    let target = o.row.as_deref().map(parse_row_arg).transpose()?;
    let mut client = db::connect(&o.database).await?;
    // The same value mapping the replicator uses for these rules (edition, compat options).
    let types = TypeMap::load_with(
        &client,
        riptide_replication::values::ValueOptions::from_rules(&rules),
    )
    .await
    .context("cannot read the database's types")?;
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .context("cannot start a read-only transaction")?;

    let mut schemas: BTreeMap<TableRef, TableSchema> = BTreeMap::new();
    for table in rules.source_tables() {
        match db::load_schema(&tx, &table, &types).await? {
            Some(s) => {
                schemas.insert(table, s);
            }
            None => println!(
                "warning: table {} does not exist; the queries reading it are skipped",
                table.qualified()
            ),
        }
    }

    if !rules.streams().is_empty() {
        let subscriptions = o
            .subscriptions
            .iter()
            .map(|s| super::explain_streams::parse_subscription(s))
            .collect::<Result<Vec<_>>>()?;
        super::explain_streams::explain(&rules, &tx, &schemas, request, subscriptions, target)
            .await?;
        tx.commit().await.context("cannot end the transaction")?;
        return Ok(true);
    }

    // Parameter lookups, as replication would index them; only the ones this request asks
    // for are kept, so memory stays bounded by what the user can see.
    let wanted: HashSet<Vec<u8>> = rules
        .parameter_lookups(&request)
        .iter()
        .map(|l| l.key())
        .collect();
    let mut lookups: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
    let mut scanned: Vec<(String, u64)> = Vec::new();
    if !wanted.is_empty() {
        for table in tables_of(&rules, QueryKind::Parameter) {
            let Some(schema) = schemas.get(&table) else {
                continue;
            };
            let n = db::for_each_row(&tx, schema, |row| {
                for e in rules.evaluate_parameter_row(&table, row) {
                    let key = e.lookup.key();
                    if wanted.contains(&key) {
                        lookups.entry(key).or_default().push(e.result);
                    }
                }
            })
            .await?;
            scanned.push((table.qualified(), n));
        }
    }
    let buckets = rules.resolve_buckets(&request, &lookups);

    // Row counts of the user's buckets.
    let mut counts: BTreeMap<&str, u64> = buckets.iter().map(|b| (b.name.as_str(), 0)).collect();
    if !buckets.is_empty() {
        for table in tables_of(&rules, QueryKind::Data) {
            let Some(schema) = schemas.get(&table) else {
                continue;
            };
            let n = db::for_each_row(&tx, schema, |row| {
                for r in rules.evaluate_row(&table, row).rows {
                    if let Some(c) = counts.get_mut(r.bucket.as_str()) {
                        *c += 1;
                    }
                }
            })
            .await?;
            scanned.push((table.qualified(), n));
        }
    }

    println!(
        "user {}: {}",
        sql_literal(&request.user_id),
        plural(buckets.len(), "bucket")
    );
    let width = buckets.iter().map(|b| b.name.len()).max().unwrap_or(0);
    for b in &buckets {
        let rows = counts.get(b.name.as_str()).copied().unwrap_or(0);
        println!(
            "  {:width$}  priority {}  {}",
            b.name,
            b.priority,
            plural(usize::try_from(rows).unwrap_or(usize::MAX), "row")
        );
    }
    if !scanned.is_empty() {
        let list: Vec<String> = scanned.iter().map(|(t, n)| format!("{t} ({n})")).collect();
        println!("rows read: {}", list.join(", "));
    }

    if let Some((table, id)) = target {
        explain_row(&rules, &tx, &schemas, &request, &buckets, &table, &id).await?;
    }
    tx.commit().await.context("cannot end the transaction")?;
    Ok(true)
}

fn describe_row(row: &Row) -> String {
    row.0
        .iter()
        .map(|(k, v)| format!("{k} = {}", sql_literal(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn explain_row(
    rules: &SyncRules,
    tx: &Transaction<'_>,
    schemas: &BTreeMap<TableRef, TableSchema>,
    request: &RequestParameters,
    buckets: &[BucketDescription],
    table: &TableRef,
    id: &str,
) -> Result<()> {
    println!();
    let Some(schema) = schemas.get(table) else {
        println!(
            "row {}:{id}: no query of the rules reads table {} (or it does not exist)",
            table.qualified(),
            table.qualified()
        );
        return Ok(());
    };
    let Some(row) = db::find_row(tx, schema, id).await? else {
        bail!("table {} has no row with id {id:?}", table.qualified());
    };
    println!("row {}:{id} ({})", table.qualified(), describe_row(&row));
    let outcomes = rules.explain_row(table, &row);
    if outcomes.is_empty() {
        println!(
            "  no data query reads {}: the row is in no bucket",
            table.qualified()
        );
    }
    let mut granted = Vec::new();
    for o in &outcomes {
        let query = format!("data query {} of {}", o.query_index + 1, o.definition);
        match &o.result {
            Err(reason) => println!("  {query} does not select it: {reason}"),
            Ok((bucket, values)) => {
                if let Some(b) = buckets.iter().find(|b| &b.name == bucket) {
                    println!(
                        "  {query} puts it in {bucket}, which the user has (priority {}): GRANTED",
                        b.priority
                    );
                    granted.push(bucket.clone());
                } else {
                    let needs = rules.grant_requirements(&o.definition, values, request);
                    println!(
                        "  {query} puts it in {bucket}, but the user has no bucket {bucket}: {}",
                        needs.join("; or ")
                    );
                }
            }
        }
    }
    if granted.is_empty() {
        println!(
            "verdict: user {} does not get this row",
            sql_literal(&request.user_id)
        );
    } else {
        granted.dedup();
        println!(
            "verdict: user {} gets this row through {}",
            sql_literal(&request.user_id),
            granted.join(", ")
        );
    }
    Ok(())
}
