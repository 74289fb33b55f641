//! What a stream session needs from sync rules: the buckets a request (its token, its
//! parameters and its Sync Streams subscriptions) syncs, given the stored results of the
//! parameter lookups it asked for, and the checkpoint's `streams`.
//!
//! [`riptide_rules::SyncRules`] implements it with [`SyncRules::resolve_request`]; the
//! trait keeps sessions testable with small hand-written rules, which implement the classic
//! methods and get [`BucketRules::resolve_request`] for free (every definition a default
//! stream).

use std::collections::HashMap;

use riptide_rules::{
    BucketDescription, BucketReason, LookupResults, RequestParameters, ResolvedBucket,
    StreamRequest, StreamStatus, SubscriptionError, SyncRules,
};

/// One step of resolving a request ([`BucketRules::resolve_request`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestResolution {
    /// Storage keys of the lookups to read before resolving again; empty when complete.
    pub missing: Vec<Vec<u8>>,
    /// The buckets, with priorities and the subscriptions they serve (complete only when
    /// nothing is missing).
    pub buckets: Vec<ResolvedBucket>,
    /// The checkpoint's `streams`, with per-subscription errors.
    pub streams: Vec<StreamStatus>,
}

pub trait BucketRules: Send + Sync + 'static {
    /// Storage keys of the parameter lookups this request needs resolved.
    fn parameter_lookups(&self, request: &RequestParameters) -> Vec<Vec<u8>>;
    /// The buckets the request may sync, given the results stored under each lookup key.
    fn resolve_buckets(
        &self,
        request: &RequestParameters,
        lookup_results: &HashMap<Vec<u8>, Vec<Vec<u8>>>,
    ) -> Vec<BucketDescription>;
    /// Bucket definition names with their priorities, in file order.
    fn definitions(&self) -> Vec<(String, u8)>;

    /// Resolves a request with its stream subscriptions, given the lookups read so far
    /// (`known`): call again with the `missing` ones added until none are missing.
    ///
    /// The default treats every definition as a default stream (classic rules): with
    /// `include_defaults` all of them, and an "unknown stream" error for each explicit
    /// subscription.
    fn resolve_request(&self, request: &StreamRequest, known: &LookupResults) -> RequestResolution {
        let mut out = RequestResolution::default();
        if request.include_defaults {
            let definitions = self.definitions();
            out.streams = definitions
                .iter()
                .map(|(name, _)| StreamStatus {
                    name: name.clone(),
                    is_default: true,
                    errors: Vec::new(),
                })
                .collect();
            out.missing = self
                .parameter_lookups(&request.request)
                .into_iter()
                .filter(|k| !known.contains_key(k))
                .collect();
            if out.missing.is_empty() {
                out.buckets = self
                    .resolve_buckets(&request.request, known)
                    .into_iter()
                    .map(|b| ResolvedBucket {
                        reasons: vec![BucketReason::Default(
                            definitions
                                .iter()
                                .position(|(name, _)| *name == b.definition)
                                .unwrap_or(0),
                        )],
                        name: b.name,
                        definition: b.definition,
                        priority: b.priority,
                    })
                    .collect();
            }
        }
        for (i, sub) in request.subscriptions.iter().enumerate() {
            out.streams.push(StreamStatus {
                name: sub.stream.clone(),
                is_default: false,
                errors: vec![SubscriptionError {
                    subscription: Some(i),
                    message: format!("unknown stream `{}`", sub.stream),
                }],
            });
        }
        out
    }
}

impl BucketRules for SyncRules {
    fn parameter_lookups(&self, request: &RequestParameters) -> Vec<Vec<u8>> {
        SyncRules::parameter_lookups(self, request)
            .iter()
            .map(|l| l.key())
            .collect()
    }

    fn resolve_buckets(
        &self,
        request: &RequestParameters,
        lookup_results: &HashMap<Vec<u8>, Vec<Vec<u8>>>,
    ) -> Vec<BucketDescription> {
        SyncRules::resolve_buckets(self, request, lookup_results)
    }

    fn definitions(&self) -> Vec<(String, u8)> {
        SyncRules::definitions(self)
    }

    fn resolve_request(&self, request: &StreamRequest, known: &LookupResults) -> RequestResolution {
        let r = SyncRules::resolve_request(self, request, known);
        RequestResolution {
            missing: r.missing_lookups.iter().map(|l| l.key()).collect(),
            buckets: r.buckets,
            streams: r.streams,
        }
    }
}
