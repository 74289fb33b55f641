//! What sync streams read: bucket checksums at a checkpoint, bucket data pages, parameter
//! lookups, and current rows. Every read is one prepared statement for any number of keys.

use std::collections::{BTreeMap, HashMap};

use deadpool_postgres::Pool;
use riptide_protocol::{Checksum, OpId, OpType, OplogEntry};

use futures::TryStreamExt;

use super::checksum_from_db;
use crate::keys;
use crate::{BucketChunk, BucketState, DeploymentId, PageLimit, Result, StorageError, op_bytes};

/// Buckets of deployment `id` whose last op id is over `after` (their stored forms: a name
/// over [`keys::MAX_STORED_KEY`] bytes comes back as its digest form).
pub(super) async fn changed_buckets_since(
    pool: &Pool,
    id: DeploymentId,
    after: OpId,
) -> Result<Vec<String>> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT bucket FROM riptide.bucket_state WHERE deployment_id = $1 AND last_op_id > $2",
        )
        .await?;
    let rows = client.query(&stmt, &[&id, &after.0]).await?;
    rows.iter()
        .map(|r| r.try_get::<_, String>(0).map_err(StorageError::from))
        .collect()
}

/// Stored forms of `full` keys, and the way back (see `keys.rs`).
pub(super) struct Stored<'a, T: ?Sized + ToOwned> {
    pub(super) forms: Vec<std::borrow::Cow<'a, T>>,
    back: HashMap<<T as ToOwned>::Owned, &'a T>,
}

impl<'a, T> Stored<'a, T>
where
    T: ?Sized + ToOwned,
    T::Owned: std::hash::Hash + Eq,
{
    pub(super) fn new(
        full: impl IntoIterator<Item = &'a T>,
        form: fn(&T) -> std::borrow::Cow<'_, T>,
    ) -> Self {
        let mut forms = Vec::new();
        let mut back = HashMap::new();
        for key in full {
            let stored = form(key);
            back.insert(stored.clone().into_owned(), key);
            forms.push(stored);
        }
        Stored { forms, back }
    }

    /// The full key a stored form stands for (the stored form itself if unknown).
    pub(super) fn full(&self, stored: T::Owned) -> T::Owned {
        match self.back.get::<T::Owned>(&stored) {
            Some(full) => (*full).to_owned(),
            None => stored,
        }
    }
}

pub(super) async fn current_rows(
    pool: &Pool,
    id: DeploymentId,
    source_table: &str,
    keys: &[Vec<u8>],
) -> Result<HashMap<Vec<u8>, Vec<u8>>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let stored = Stored::new(keys.iter().map(Vec::as_slice), keys::row_key);
    let forms: Vec<&[u8]> = stored.forms.iter().map(|k| k.as_ref()).collect();
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT source_key, data FROM riptide.current_data \
             WHERE deployment_id = $1 AND source_table = $2 AND source_key = ANY($3)",
        )
        .await?;
    let rows = client.query(&stmt, &[&id, &source_table, &forms]).await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        out.insert(stored.full(row.try_get(0)?), row.try_get(1)?);
    }
    Ok(out)
}

pub(super) async fn parameter_results(
    pool: &Pool,
    id: DeploymentId,
    lookups: &[Vec<u8>],
) -> Result<HashMap<Vec<u8>, Vec<Vec<u8>>>> {
    let mut out: HashMap<Vec<u8>, Vec<Vec<u8>>> =
        lookups.iter().map(|l| (l.clone(), Vec::new())).collect();
    if lookups.is_empty() {
        return Ok(out);
    }
    let stored = Stored::new(lookups.iter().map(Vec::as_slice), keys::row_key);
    let forms: Vec<&[u8]> = stored.forms.iter().map(|k| k.as_ref()).collect();
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT lookup, result FROM riptide.parameter_lookups \
             WHERE deployment_id = $1 AND lookup = ANY($2) \
             ORDER BY lookup, source_table, source_key",
        )
        .await?;
    for row in client.query(&stmt, &[&id, &forms]).await? {
        let lookup = stored.full(row.try_get(0)?);
        out.entry(lookup).or_default().push(row.try_get(1)?);
    }
    Ok(out)
}

/// Running totals from `bucket_state`, minus the ops newer than `checkpoint` for the buckets
/// whose last op is newer (the lateral subquery is gated on that, so it costs nothing for the
/// others).
pub(super) async fn bucket_states(
    pool: &Pool,
    id: DeploymentId,
    checkpoint: OpId,
    buckets: &[String],
) -> Result<HashMap<String, BucketState>> {
    if buckets.is_empty() {
        return Ok(HashMap::new());
    }
    let stored = Stored::new(buckets.iter().map(String::as_str), keys::bucket);
    let forms: Vec<&str> = stored.forms.iter().map(|b| b.as_ref()).collect();
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT s.bucket, s.checksum, s.op_count, n.checksum, n.op_count \
             FROM riptide.bucket_state s \
             CROSS JOIN LATERAL ( \
                 SELECT (COALESCE(sum(d.checksum), 0) % 4294967296)::int8 AS checksum, \
                        count(*) AS op_count \
                 FROM riptide.bucket_data d \
                 WHERE s.last_op_id > $3 AND d.deployment_id = s.deployment_id \
                   AND d.bucket = s.bucket AND d.op_id > $3 \
             ) n \
             WHERE s.deployment_id = $1 AND s.bucket = ANY($2)",
        )
        .await?;
    let rows = client.query(&stmt, &[&id, &forms, &checkpoint.0]).await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let bucket = stored.full(row.try_get(0)?);
        let total = checksum_from_db(row.try_get(1)?)?;
        let total_count: i64 = row.try_get(2)?;
        let newer = checksum_from_db(row.try_get(3)?)?;
        let newer_count: i64 = row.try_get(4)?;
        let count = total_count - newer_count;
        if count < 0 {
            return Err(StorageError::Corrupt(format!(
                "bucket state of {bucket} counts fewer ops than its op log"
            )));
        }
        if count > 0 {
            out.insert(
                bucket,
                BucketState {
                    checksum: Checksum(total.0 - newer.0),
                    count,
                },
            );
        }
    }
    Ok(out)
}

pub(super) fn op_type(s: &str) -> Result<OpType> {
    Ok(match s {
        "PUT" => OpType::Put,
        "REMOVE" => OpType::Remove,
        "MOVE" => OpType::Move,
        "CLEAR" => OpType::Clear,
        other => return Err(StorageError::Corrupt(format!("unknown op type {other:?}"))),
    })
}

pub(crate) fn op_type_str(op: OpType) -> &'static str {
    match op {
        OpType::Put => "PUT",
        OpType::Remove => "REMOVE",
        OpType::Move => "MOVE",
        OpType::Clear => "CLEAR",
    }
}

/// One query for all buckets: the requested (bucket, after) pairs, sorted by bucket name
/// here, are unnested with their position and joined laterally to at most `limit + 1` ops each;
/// the outer `LIMIT limit + 1` tells whether the last bucket has more. Rows are read as they
/// stream in and the page ends at its byte budget, so a page of large rows never holds more
/// than the budget plus one row.
pub(super) async fn bucket_data(
    pool: &Pool,
    id: DeploymentId,
    checkpoint: OpId,
    buckets: &[(String, OpId)],
    limit: PageLimit,
) -> Result<Vec<BucketChunk>> {
    if limit.ops == 0 || buckets.is_empty() {
        return Ok(Vec::new());
    }
    // Sorted by name, first `after` wins for a bucket named twice (as MemoryStorage does).
    let mut wanted: BTreeMap<&str, i64> = BTreeMap::new();
    for (b, after) in buckets {
        wanted.entry(b.as_str()).or_insert(after.0);
    }
    let stored = Stored::new(wanted.keys().copied(), keys::bucket);
    let names: Vec<&str> = stored.forms.iter().map(|b| b.as_ref()).collect();
    let afters: Vec<i64> = wanted.values().copied().collect();
    let fetch = i64::try_from(limit.ops)
        .unwrap_or(i64::MAX - 1)
        .saturating_add(1);

    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT b.name, d.op_id, d.op, d.object_type, d.object_id, d.subkey, d.checksum, d.data \
             FROM unnest($2::text[], $3::int8[]) WITH ORDINALITY AS b(name, after, ord) \
             CROSS JOIN LATERAL ( \
                 SELECT op_id, op, object_type, object_id, subkey, checksum, data \
                 FROM riptide.bucket_data \
                 WHERE deployment_id = $1 AND bucket = b.name \
                   AND op_id > b.after AND op_id <= $4 \
                 ORDER BY op_id \
                 LIMIT $5 \
             ) d \
             ORDER BY b.ord, d.op_id \
             LIMIT $5",
        )
        .await?;
    let params: [&(dyn postgres_types::ToSql + Sync); 5] =
        [&id, &names, &afters, &checkpoint.0, &fetch];
    let rows = client.query_raw(&stmt, params).await?;
    futures::pin_mut!(rows);
    let mut out: Vec<BucketChunk> = Vec::new();
    let mut taken = 0usize;
    let mut bytes = 0usize;
    // The row after the page, if any: the last bucket has more only if it is the same bucket.
    let mut next_bucket: Option<String> = None;
    while let Some(row) = rows.try_next().await? {
        let bucket = stored.full(row.try_get(0)?);
        if taken >= limit.ops || bytes >= limit.bytes {
            next_bucket = Some(bucket);
            break;
        }
        let op: String = row.try_get(2)?;
        let entry = OplogEntry {
            op_id: OpId(row.try_get(1)?),
            op: op_type(&op)?,
            object_type: row.try_get(3)?,
            object_id: row.try_get(4)?,
            subkey: row.try_get(5)?,
            checksum: checksum_from_db(row.try_get(6)?)?,
            data: row.try_get(7)?,
        };
        taken += 1;
        bytes = bytes.saturating_add(op_bytes(&entry));
        match out.last_mut() {
            Some(chunk) if chunk.bucket == bucket => chunk.ops.push(entry),
            _ => out.push(BucketChunk {
                bucket,
                ops: vec![entry],
                has_more: false,
            }),
        }
    }
    if let (Some(next), Some(last)) = (next_bucket, out.last_mut()) {
        last.has_more = next == last.bucket;
    }
    Ok(out)
}
