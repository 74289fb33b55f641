//! A stream's bucket set: the parameter lookups of its request (its token, its parameters and
//! its Sync Streams subscriptions) read at one checkpoint a step at a time, the buckets and the
//! checkpoint's `streams` they resolve to, and the per-connection limits on both.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use riptide_protocol::{
    ErrorSubscription, StreamDescription, StreamError, StreamingSyncRequest, SubscriptionRef,
};
use riptide_rules::{
    BucketReason, LookupResults, RequestParameters, StreamRequest, StreamStatus, Subscription,
};
use riptide_storage::{BucketStorage, StorageCheckpoint};

use super::driver::{LimitExceeded, SessionError};
use super::state::SessionBucket;
use crate::bucket_rules::{BucketRules, RequestResolution};
use crate::limits::Limits;
use crate::state::ActiveRules;

/// The buckets of a connection under one deployment of the rules.
pub(super) struct Resolved {
    pub deployment: i64,
    pub rules: Arc<dyn BucketRules>,
    pub buckets: Vec<SessionBucket>,
    pub names: HashSet<String>,
    /// Every lookup key read to resolve them: a commit changing one resolves them again.
    pub lookups: HashSet<Vec<u8>>,
}

/// Reads of the parameter lookups retried because a commit landed while they were read; after
/// that many the newest read is used (the bus event of the commit resolves the stream again).
const CONSISTENT_LOOKUP_ATTEMPTS: usize = 8;

/// What a request asks the rules for: its token and parameters, `streams.include_defaults`
/// (default true) and `streams.subscriptions`.
pub(super) fn stream_request(
    claims: &serde_json::Map<String, serde_json::Value>,
    request: &StreamingSyncRequest,
) -> StreamRequest {
    let streams = request.streams.as_ref();
    StreamRequest {
        request: RequestParameters::new(
            claims.clone(),
            request.parameters.clone().unwrap_or_default(),
        ),
        include_defaults: streams.is_none_or(|s| s.include_defaults),
        subscriptions: streams
            .map(|s| {
                s.subscriptions
                    .iter()
                    .map(|sub| Subscription {
                        stream: sub.stream.clone(),
                        parameters: sub.parameters.clone(),
                        override_priority: sub.override_priority,
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Resolves the buckets of a request at `checkpoint`: [`BucketRules::resolve_request`] until
/// no lookup is missing, each round's missing lookups read from storage, enforcing the limits.
/// `only` restricts to the listed buckets. Returns the bucket set, the checkpoint's `streams`
/// and the checkpoint they belong to.
///
/// Lookups are not versioned, so they are read between two reads of the checkpoint: a commit
/// writes its lookups and advances the checkpoint in one storage transaction, so when both
/// reads agree the lookups are exactly those of that checkpoint. Otherwise a commit landed in
/// between, and every read repeats at the newer checkpoint. Without this, a client could get
/// the bucket set of a newer commit with the data of an older checkpoint (e.g. a group's
/// buckets already revoked while its membership rows still show the membership).
pub(super) async fn resolve(
    storage: &dyn BucketStorage,
    active: &ActiveRules,
    request: &StreamRequest,
    only: Option<&[String]>,
    limits: &Limits,
    mut checkpoint: StorageCheckpoint,
) -> Result<(Resolved, Vec<StreamDescription>, StorageCheckpoint), SessionError> {
    let mut attempt = 0;
    let (resolution, known) = loop {
        attempt += 1;
        let (resolution, known) = read_lookups(storage, active, request).await?;
        if known.is_empty() || attempt >= CONSISTENT_LOOKUP_ATTEMPTS {
            break (resolution, known);
        }
        match storage.checkpoint(active.deployment).await? {
            Some(after) if after != checkpoint => checkpoint = after,
            _ => break (resolution, known),
        }
    };
    let count: usize = known.values().map(Vec::len).sum();
    if count > limits.max_parameter_query_results {
        return Err(LimitExceeded::ParameterResults {
            count,
            limit: limits.max_parameter_query_results,
        }
        .into());
    }
    let RequestResolution {
        mut buckets,
        streams,
        ..
    } = resolution;
    if let Some(only) = only {
        buckets.retain(|b| only.contains(&b.name));
    }
    if buckets.len() > limits.max_buckets_per_connection {
        return Err(LimitExceeded::Buckets {
            count: buckets.len(),
            limit: limits.max_buckets_per_connection,
        }
        .into());
    }
    let buckets: Vec<SessionBucket> = buckets
        .into_iter()
        .map(|b| SessionBucket {
            priority: b.priority.min(3),
            subscriptions: b.reasons.iter().map(subscription_ref).collect(),
            name: b.name,
        })
        .collect();
    let resolved = Resolved {
        deployment: active.deployment,
        rules: active.rules.clone(),
        names: buckets.iter().map(|b| b.name.clone()).collect(),
        buckets,
        lookups: known.into_keys().collect(),
    };
    Ok((
        resolved,
        streams.iter().map(stream_description).collect(),
        checkpoint,
    ))
}

/// Resolves the request, reading what it still misses from storage, until nothing is missing.
/// Every round reads only keys not read before, so it ends (a key may depend on an earlier
/// lookup's rows; the rules bound the lookups per subscription).
async fn read_lookups(
    storage: &dyn BucketStorage,
    active: &ActiveRules,
    request: &StreamRequest,
) -> Result<(RequestResolution, LookupResults), SessionError> {
    let mut known: LookupResults = HashMap::new();
    loop {
        let resolution = active.rules.resolve_request(request, &known);
        let missing: Vec<Vec<u8>> = resolution
            .missing
            .iter()
            .filter(|k| !known.contains_key(*k))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok((resolution, known));
        }
        let mut results = storage
            .parameter_results(active.deployment, &missing)
            .await?;
        for key in missing {
            let rows = results.remove(&key).unwrap_or_default();
            known.insert(key, rows);
        }
    }
}

/// A bucket's reason as the checkpoint names it: `{"default": i}` / `{"sub": i}`.
fn subscription_ref(reason: &BucketReason) -> SubscriptionRef {
    match *reason {
        BucketReason::Default(i) => SubscriptionRef::Default(i),
        BucketReason::Subscription(i) => SubscriptionRef::Sub(i),
    }
}

/// An entry of the checkpoint's `streams`, errors as the official service words them:
/// `{"subscription": "default" | <index>, "message": …}`.
fn stream_description(status: &StreamStatus) -> StreamDescription {
    StreamDescription {
        name: status.name.clone(),
        is_default: status.is_default,
        errors: status
            .errors
            .iter()
            .map(|e| StreamError {
                subscription: e.subscription.map_or(ErrorSubscription::Default, |i| {
                    ErrorSubscription::Sub(u32::try_from(i).unwrap_or(u32::MAX))
                }),
                message: e.message.clone(),
            })
            .collect(),
    }
}
