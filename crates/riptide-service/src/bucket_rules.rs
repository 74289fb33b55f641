//! What a stream session needs from sync rules: the parameter lookups of a request, the buckets
//! a request may sync given the lookups' stored results, and the bucket definitions.
//!
//! [`riptide_rules::SyncRules`] implements it; the trait keeps sessions testable with small
//! hand-written rules.

use std::collections::HashMap;

use riptide_rules::{BucketDescription, RequestParameters, SyncRules};

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
}
