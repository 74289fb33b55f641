//! What a sync request gets: the buckets of its default streams and of each of its stream
//! subscriptions, with priorities and the subscriptions each bucket serves, and the
//! `streams` list of the checkpoint line with per-subscription errors.
//!
//! Resolution reads parameter lookups a step at a time (a lookup's key may come from an
//! earlier lookup's rows): [`SyncRules::resolve_request`] returns the lookups it still needs
//! in [`Resolution::missing_lookups`]; the caller reads them (at one checkpoint), adds them to
//! the known results and calls again, until nothing is missing:
//!
//! ```ignore
//! let mut known = LookupResults::new();
//! let resolution = loop {
//!     let r = rules.resolve_request(&request, &known);
//!     if r.missing_lookups.is_empty() { break r; }
//!     for l in &r.missing_lookups { known.insert(l.key(), storage_read(l.key())); }
//! };
//! ```
//!
//! A problem with one subscription (an unknown stream, a missing parameter, a value that
//! cannot be evaluated, a limit) is reported for it and gives it no buckets; the others are
//! unaffected. Classic `bucket_definitions` behave as streams subscribed by default.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};

use super::plan::Stream;
use super::resolve::{LookupResults, Outcome, resolve};
use crate::bucket_name::bucket_name;
use crate::{ParameterLookup, RequestParameters, SyncRules};

/// One entry of the request's `streams.subscriptions`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Subscription {
    pub stream: String,
    /// The subscription's parameters (`subscription.parameter()`); `None` reads as `{}`.
    pub parameters: Option<Map<String, Value>>,
    /// A priority (0..=3) replacing the stream's for this subscription's buckets.
    pub override_priority: Option<u8>,
}

/// What one connection asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRequest {
    /// Token claims and connection parameters.
    pub request: RequestParameters,
    /// `streams.include_defaults`: whether default streams (`auto_subscribe: true`, and
    /// every classic bucket definition) are synced.
    pub include_defaults: bool,
    pub subscriptions: Vec<Subscription>,
}

/// Limits per subscription; going over one is an error for that subscription only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    pub max_buckets_per_subscription: usize,
    pub max_lookups_per_subscription: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_buckets_per_subscription: 1000,
            max_lookups_per_subscription: 1000,
        }
    }
}

/// Why a bucket is synced: its stream's default subscription (index into
/// [`Resolution::streams`]) or an explicit subscription (index into the request's
/// subscriptions). The checkpoint's `{"default": i}` / `{"sub": i}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BucketReason {
    Default(usize),
    Subscription(usize),
}

/// A bucket the request syncs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedBucket {
    pub name: String,
    /// The stream (or classic bucket definition) it belongs to.
    pub definition: String,
    /// The highest (lowest number) priority of the subscriptions it serves.
    pub priority: u8,
    pub reasons: Vec<BucketReason>,
}

/// A problem with one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionError {
    /// `None`: the default subscription; `Some(i)`: the request's subscription `i`.
    pub subscription: Option<usize>,
    pub message: String,
}

/// An entry of the checkpoint's `streams`: a stream the connection is subscribed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStatus {
    pub name: String,
    pub is_default: bool,
    pub errors: Vec<SubscriptionError>,
}

/// The outcome of [`SyncRules::resolve_request`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resolution {
    /// Lookups to read before resolving again; empty when the resolution is complete.
    pub missing_lookups: Vec<ParameterLookup>,
    /// Buckets sorted by name (complete only when nothing is missing).
    pub buckets: Vec<ResolvedBucket>,
    /// The checkpoint's `streams`, in file order (classic definitions, then streams, then
    /// unknown streams a subscription named).
    pub streams: Vec<StreamStatus>,
    /// Position of each bucket in `buckets` while resolving.
    bucket_index: HashMap<String, usize>,
}

/// Where one subscription's buckets come from.
enum Source<'r> {
    Classic(usize),
    Stream(&'r Stream),
}

impl SyncRules {
    /// Resolves a request with default limits; see the module documentation.
    pub fn resolve_request(&self, request: &StreamRequest, known: &LookupResults) -> Resolution {
        self.resolve_request_with(request, known, RequestLimits::default())
    }

    /// Resolves a request: buckets, reasons, the checkpoint's `streams`, and the lookups still
    /// to read.
    pub fn resolve_request_with(
        &self,
        request: &StreamRequest,
        known: &LookupResults,
        limits: RequestLimits,
    ) -> Resolution {
        let mut out = Resolution::default();
        let mut sources: Vec<(String, bool, Source<'_>)> = Vec::new();
        for (i, def) in self.definitions.iter().enumerate() {
            sources.push((def.name.clone(), true, Source::Classic(i)));
        }
        for s in &self.streams.streams {
            sources.push((s.name.clone(), s.auto_subscribe, Source::Stream(s)));
        }
        let named: BTreeSet<&str> = request
            .subscriptions
            .iter()
            .map(|s| s.stream.as_str())
            .collect();
        let mut classic_wanted = Vec::new();
        for (name, is_default, source) in &sources {
            let default = *is_default && request.include_defaults;
            if !default && !named.contains(name.as_str()) {
                continue;
            }
            let index = out.streams.len();
            out.streams.push(StreamStatus {
                name: name.clone(),
                is_default: *is_default,
                errors: Vec::new(),
            });
            match source {
                Source::Classic(d) => classic_wanted.push((*d, index)),
                Source::Stream(stream) => {
                    if default {
                        self.subscribe(stream, None, index, request, known, limits, &mut out);
                    }
                    for (i, sub) in request.subscriptions.iter().enumerate() {
                        if sub.stream == *name {
                            self.subscribe(
                                stream,
                                Some((i, sub)),
                                index,
                                request,
                                known,
                                limits,
                                &mut out,
                            );
                        }
                    }
                }
            }
        }
        for (i, sub) in request.subscriptions.iter().enumerate() {
            if !sources.iter().any(|(n, _, _)| *n == sub.stream) {
                let error = SubscriptionError {
                    subscription: Some(i),
                    message: format!("unknown stream `{}`", sub.stream),
                };
                match out.streams.iter_mut().find(|s| s.name == sub.stream) {
                    Some(s) => s.errors.push(error),
                    None => out.streams.push(StreamStatus {
                        name: sub.stream.clone(),
                        is_default: false,
                        errors: vec![error],
                    }),
                }
            }
        }
        if !classic_wanted.is_empty() {
            self.classic(&classic_wanted, request, known, &mut out);
        }
        out.buckets.sort_by(|a, b| a.name.cmp(&b.name));
        out.bucket_index.clear();
        out
    }

    /// Classic definitions, resolved together (they share the request's lookups).
    fn classic(
        &self,
        wanted: &[(usize, usize)],
        request: &StreamRequest,
        known: &LookupResults,
        out: &mut Resolution,
    ) {
        let lookups = self.parameter_lookups(&request.request);
        let mut complete = true;
        for l in lookups {
            if !known.contains_key(&l.key()) {
                complete = false;
                out.missing_lookups.push(l);
            }
        }
        if !complete {
            return;
        }
        for b in self.resolve_buckets(&request.request, known) {
            let Some(&(_, index)) = wanted
                .iter()
                .find(|(d, _)| self.definitions[*d].name == b.definition)
            else {
                continue;
            };
            add_bucket(
                out,
                b.name,
                b.definition,
                b.priority,
                BucketReason::Default(index),
            );
        }
    }

    /// One subscription (or the default one) of a stream.
    #[allow(clippy::too_many_arguments)]
    fn subscribe(
        &self,
        stream: &Stream,
        explicit: Option<(usize, &Subscription)>,
        index: usize,
        request: &StreamRequest,
        known: &LookupResults,
        limits: RequestLimits,
        out: &mut Resolution,
    ) {
        let subscription = explicit.map(|(i, _)| i);
        let error = |out: &mut Resolution, message: String| {
            out.streams[index].errors.push(SubscriptionError {
                subscription,
                message,
            });
        };
        let (parameters, reason, mut priority) = match explicit {
            Some((i, sub)) => (
                Some(sub.parameters.clone().unwrap_or_default()),
                BucketReason::Subscription(i),
                sub.override_priority.unwrap_or(stream.priority),
            ),
            None => (None, BucketReason::Default(index), stream.priority),
        };
        if priority > 3 {
            error(out, format!("invalid priority {priority} (0 to 3)"));
            priority = stream.priority;
        }
        if let Some(params) = &parameters
            && !stream.queriers.is_empty()
        {
            let lacking: Vec<Vec<&String>> = stream
                .queriers
                .iter()
                .map(|q| {
                    q.subscription_parameters
                        .iter()
                        .filter(|n| !params.contains_key(n.as_str()))
                        .collect()
                })
                .collect();
            if lacking.iter().all(|m| !m.is_empty()) {
                let names: Vec<String> = lacking[0].iter().map(|n| format!("`{n}`")).collect();
                error(
                    out,
                    format!("missing subscription parameter {}", names.join(", ")),
                );
            }
        }
        let request_parameters = request.request.with_subscription(parameters);
        let mut buckets = Vec::new();
        let mut missing = Vec::new();
        for q in &stream.queriers {
            match resolve(
                &self.streams,
                q,
                &request_parameters,
                known,
                limits.max_lookups_per_subscription,
            ) {
                Ok(Outcome::Needs(keys)) => missing.extend(keys),
                Ok(Outcome::Buckets(sets)) => {
                    let family = &self.streams.buckets[q.bucket].name;
                    for values in sets {
                        let mut name = bucket_name(family, &values);
                        name.insert_str(0, &self.bucket_prefix);
                        if !buckets.contains(&name) {
                            buckets.push(name);
                        }
                    }
                }
                Err(e) => error(out, e.to_string()),
            }
        }
        if !missing.is_empty() {
            for m in missing {
                if !out.missing_lookups.contains(&m) {
                    out.missing_lookups.push(m);
                }
            }
            return;
        }
        if buckets.len() > limits.max_buckets_per_subscription {
            error(
                out,
                format!(
                    "too many buckets ({}, at most {})",
                    buckets.len(),
                    limits.max_buckets_per_subscription
                ),
            );
            return;
        }
        for name in buckets {
            add_bucket(out, name, stream.name.clone(), priority, reason);
        }
    }
}

fn add_bucket(
    out: &mut Resolution,
    name: String,
    definition: String,
    priority: u8,
    reason: BucketReason,
) {
    match out
        .bucket_index
        .get(&name)
        .and_then(|&i| out.buckets.get_mut(i))
    {
        Some(b) => {
            b.priority = b.priority.min(priority);
            if !b.reasons.contains(&reason) {
                b.reasons.push(reason);
            }
        }
        None => {
            out.bucket_index.insert(name.clone(), out.buckets.len());
            out.buckets.push(ResolvedBucket {
                name,
                definition,
                priority,
                reasons: vec![reason],
            });
        }
    }
}
