//! A stream's bucket set: the parameter lookups of its request read at one checkpoint, the
//! buckets they resolve to, and the per-connection limits on both.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use riptide_rules::RequestParameters;
use riptide_storage::{BucketStorage, StorageCheckpoint};

use super::driver::{LimitExceeded, SessionError};
use super::state::SessionBucket;
use crate::limits::Limits;
use crate::state::ActiveRules;

/// The buckets of a connection under one deployment of the rules.
pub(super) struct Resolved {
    pub deployment: i64,
    pub rules: Arc<dyn crate::bucket_rules::BucketRules>,
    pub buckets: Vec<SessionBucket>,
    pub names: HashSet<String>,
    pub lookups: HashSet<Vec<u8>>,
}

/// Reads of the parameter lookups retried because a commit landed while they were read; after
/// that many the newest read is used (the bus event of the commit resolves the stream again).
const CONSISTENT_LOOKUP_ATTEMPTS: usize = 8;

/// Resolves the buckets of a request at `checkpoint`: `parameter_lookups` →
/// `parameter_results` → `resolve_buckets`, enforcing the limits. `only` restricts to the
/// listed buckets.
///
/// Lookups are not versioned, so they are read between two reads of the checkpoint: a commit
/// writes its lookups and advances the checkpoint in one storage transaction, so when both
/// reads agree the lookups are exactly those of that checkpoint. Otherwise a commit landed in
/// between, and the read repeats at the newer checkpoint. Returns the checkpoint the bucket
/// set belongs to (without this, a client could get the bucket set of a newer commit with the
/// data of an older checkpoint, e.g. a group's buckets already revoked while its membership
/// rows still show the membership).
pub(super) async fn resolve(
    storage: &dyn BucketStorage,
    active: &ActiveRules,
    params: &RequestParameters,
    only: Option<&[String]>,
    limits: &Limits,
    mut checkpoint: StorageCheckpoint,
) -> Result<(Resolved, Vec<(String, u8)>, StorageCheckpoint), SessionError> {
    let lookups = active.rules.parameter_lookups(params);
    let mut results = HashMap::new();
    if !lookups.is_empty() {
        for _ in 0..CONSISTENT_LOOKUP_ATTEMPTS {
            results = storage
                .parameter_results(active.deployment, &lookups)
                .await?;
            match storage.checkpoint(active.deployment).await? {
                Some(after) if after != checkpoint => checkpoint = after,
                _ => break,
            }
        }
    }
    let count: usize = results.values().map(Vec::len).sum();
    if count > limits.max_parameter_query_results {
        return Err(LimitExceeded::ParameterResults {
            count,
            limit: limits.max_parameter_query_results,
        }
        .into());
    }
    let mut descriptions = active.rules.resolve_buckets(params, &results);
    if let Some(only) = only {
        descriptions.retain(|b| only.contains(&b.name));
    }
    if descriptions.len() > limits.max_buckets_per_connection {
        return Err(LimitExceeded::Buckets {
            count: descriptions.len(),
            limit: limits.max_buckets_per_connection,
        }
        .into());
    }
    let definitions = active.rules.definitions();
    let index: HashMap<&str, usize> = definitions
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (name.as_str(), i))
        .collect();
    let buckets: Vec<SessionBucket> = descriptions
        .into_iter()
        .map(|b| SessionBucket {
            definition: index.get(b.definition.as_str()).copied().unwrap_or(0),
            priority: b.priority.min(3),
            name: b.name,
        })
        .collect();
    let resolved = Resolved {
        deployment: active.deployment,
        rules: active.rules.clone(),
        names: buckets.iter().map(|b| b.name.clone()).collect(),
        buckets,
        lookups: lookups.into_iter().collect(),
    };
    Ok((resolved, definitions, checkpoint))
}
