//! From a lowered stream query to data sources, lookup sources and queriers.
//!
//! The `WHERE` clause is normalised into `OR` branches of `AND`ed terms; each branch becomes a
//! querier. Starting from the synced table, a term reading only that table filters its rows; a
//! term `<its expression> = <other side>` partitions its rows (a bucket parameter) by a value the
//! other side gives: a request expression, or an output of a lookup on the other side's table,
//! found the same way from that table (its own filters, and its key from further terms). Terms
//! left comparing request values with a joined table make that table an existence check; terms
//! on request values only filter requests. What no table or request can take is refused.
//!
//! Branches (and queries of one stream) whose requests resolve the same way share a bucket.

use std::collections::{BTreeSet, HashMap};

use super::cond::{Cond, MAX_VARIANTS, first_span, to_dnf};
use super::path::{Path, PendingKind};
use super::plan::{
    Bucket, Column, DataSource, Lookup, LookupSource, Processor, Querier, StreamSet, Value,
};
use super::query::{Builder, OutColumn, Selected};
use super::rewrite::{function_inputs, localize, sorted_keys, subscription_names};
use super::sets::{At, Deps, Located, SetId, SetInfo, SetKind, collect_deps};
use super::terms::{Dep, Term, located, merge_singles, terms};
use crate::ir::Expr;

/// Most buckets (variants) one stream may define (PowerSync's limit).
pub(crate) const MAX_BUCKETS_PER_STREAM: usize = 100;

/// Accumulates compiled streams into one [`StreamSet`], sharing identical sources.
#[derive(Debug, Default)]
pub(crate) struct Compiler {
    pub set: StreamSet,
    data_index: HashMap<String, usize>,
    lookup_index: HashMap<String, usize>,
}

/// One stream's buckets while its queries are compiled.
#[derive(Debug, Default)]
pub(crate) struct StreamBuckets {
    /// Per bucket: its resolution key and its data sources.
    buckets: Vec<(String, Vec<usize>)>,
    pub queriers: Vec<Querier>,
    lookup_count: usize,
}

impl Compiler {
    fn data_source(&mut self, source: DataSource) -> usize {
        let key = format!("{source:?}");
        if let Some(&i) = self.data_index.get(&key) {
            return i;
        }
        self.set.data_sources.push(source);
        let i = self.set.data_sources.len() - 1;
        self.data_index.insert(key, i);
        i
    }

    fn lookup_source(
        &mut self,
        processor: Processor,
        outputs: Vec<Expr>,
        stream: &str,
        counter: &mut usize,
    ) -> usize {
        let key = format!("{:?}", (&processor, &outputs));
        if let Some(&i) = self.lookup_index.get(&key) {
            return i;
        }
        self.set.lookup_sources.push(LookupSource {
            processor,
            outputs,
            stream: stream.to_owned(),
            index: *counter,
        });
        *counter += 1;
        let i = self.set.lookup_sources.len() - 1;
        self.lookup_index.insert(key, i);
        i
    }

    /// Compiles one lowered stream query into `buckets`.
    pub(crate) fn query(
        &mut self,
        stream: &str,
        builder: &Builder<'_>,
        selected: Selected,
        query_at: &At,
        buckets: &mut StreamBuckets,
    ) -> Result<SetId, Located> {
        let sets = &builder.sets;
        let (primary, columns) = outputs(sets, selected.columns, query_at)?;
        let branches = to_dnf(Cond::And(selected.conds), false).map_err(|()| {
            located(
                query_at,
                format!(
                    "the WHERE clause has too many OR branches once normalised (at most {MAX_VARIANTS}): move inner ORs into separate queries"
                ),
            )
        })?;
        let mut classified = Vec::with_capacity(branches.len());
        for branch in branches {
            let span = first_span(&branch);
            classified.push((terms(sets, branch)?, span));
        }
        // Branches that are one condition on the same table merge with OR.
        let mut multi = Vec::new();
        let mut single = Vec::new();
        for (t, _) in classified {
            match <[Term; 1]>::try_from(t) {
                Ok([one @ Term::Single(..)]) => single.push(one),
                Ok([one]) => multi.push(vec![one]),
                Err(t) => multi.push(t),
            }
        }
        let merged = merge_singles(sets, single, |a, b| Expr::Or(Box::new(a), Box::new(b)));
        multi.extend(merged.into_iter().map(|t| vec![t]));
        if multi.is_empty() {
            multi.push(Vec::new());
        }
        for branch in multi {
            self.branch(stream, sets, primary, &columns, branch, buckets, query_at)?;
        }
        Ok(primary)
    }

    #[allow(clippy::too_many_arguments)]
    fn branch(
        &mut self,
        stream: &str,
        sets: &[SetInfo],
        primary: SetId,
        columns: &[Column],
        branch: Vec<Term>,
        buckets: &mut StreamBuckets,
        query_at: &At,
    ) -> Result<(), Located> {
        let mut path = Path {
            sets,
            pending: branch.into_iter().map(Some).collect(),
            lookups: Vec::new(),
            lookup_of_set: HashMap::new(),
            stack: Vec::new(),
        };
        let resolved = path.resolve_set(primary).map_err(|e| fill(e, query_at))?;
        path.exists_checks().map_err(|e| fill(e, query_at))?;
        let request_filters = request_filters(&path)?;
        let bad = |what: &str| located(query_at, format!("internal: {what} reads another table"));

        // The synced table.
        let mut functions = Vec::new();
        let (partitions, instantiation) = sorted_keys(sets, resolved.keys, primary, &mut functions)
            .map_err(|()| bad("a partition"))?;
        let filters = resolved
            .filters
            .iter()
            .map(|f| localize(sets, f, primary, &mut functions))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|()| bad("a filter"))?;
        let SetKind::Table {
            pattern,
            output_name,
            aliased,
        } = &sets[primary].kind
        else {
            return Err(bad("the synced table"));
        };
        let primary_inputs =
            function_inputs(sets, &functions, primary).map_err(|()| bad("json_each"))?;
        let source = DataSource {
            processor: Processor {
                table: pattern.clone(),
                functions: primary_inputs,
                filters,
                partitions,
            },
            columns: columns.to_vec(),
            output_table: (*aliased || !pattern.is_wildcard()).then(|| output_name.clone()),
        };
        let source = self.data_source(source);

        // Lookups, in dependency order.
        let lookups = path
            .lookups
            .into_iter()
            .map(|pending| self.lookup(stream, sets, pending, &mut buckets.lookup_count, query_at))
            .collect::<Result<Vec<_>, _>>()?;

        let mut filter_keys: Vec<String> =
            request_filters.iter().map(|f| format!("{f:?}")).collect();
        filter_keys.sort();
        let key = format!("{filter_keys:?}|{lookups:?}|{instantiation:?}");
        let bucket = match buckets.buckets.iter().position(|(k, _)| *k == key) {
            Some(b) => {
                if !buckets.buckets[b].1.contains(&source) {
                    buckets.buckets[b].1.push(source);
                }
                return Ok(());
            }
            None => {
                buckets.buckets.push((key, vec![source]));
                buckets.buckets.len() - 1
            }
        };
        let names = subscription_parameter_names(&request_filters, &lookups, &instantiation);
        buckets.queriers.push(Querier {
            request_filters,
            lookups,
            bucket,
            instantiation,
            subscription_parameters: names,
        });
        Ok(())
    }

    /// A querier lookup from a resolved pending one (its source shared when identical).
    fn lookup(
        &mut self,
        stream: &str,
        sets: &[SetInfo],
        pending: super::path::PendingLookup,
        counter: &mut usize,
        query_at: &At,
    ) -> Result<Lookup, Located> {
        let bad = |what: &str| located(query_at, format!("internal: {what} reads another table"));
        Ok(match pending.kind {
            PendingKind::Point(resolved) => {
                let mut functions = Vec::new();
                let (partitions, inputs) =
                    sorted_keys(sets, resolved.keys, pending.set, &mut functions)
                        .map_err(|()| bad("a lookup key"))?;
                let filters = resolved
                    .filters
                    .iter()
                    .map(|f| localize(sets, f, pending.set, &mut functions))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|()| bad("a lookup filter"))?;
                let outputs = pending
                    .outputs
                    .iter()
                    .map(|o| localize(sets, o, pending.set, &mut functions))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|()| bad("a lookup output"))?;
                let SetKind::Table { pattern, .. } = &sets[pending.set].kind else {
                    return Err(bad("a lookup"));
                };
                let processor = Processor {
                    table: pattern.clone(),
                    functions: function_inputs(sets, &functions, pending.set)
                        .map_err(|()| bad("json_each"))?,
                    filters,
                    partitions,
                };
                let source = self.lookup_source(processor, outputs, stream, counter);
                Lookup::Index { source, inputs }
            }
            PendingKind::Function { filters } => {
                let SetKind::Function { input, .. } = &sets[pending.set].kind else {
                    return Err(bad("json_each"));
                };
                let mut none = Vec::new();
                let mut own = |e: &Expr| {
                    localize(sets, e, pending.set, &mut none).map_err(|()| bad("json_each"))
                };
                Lookup::Function {
                    input: input.clone(),
                    filters: filters.iter().map(&mut own).collect::<Result<_, _>>()?,
                    outputs: pending.outputs.iter().map(own).collect::<Result<_, _>>()?,
                }
            }
        })
    }

    /// Adds a stream's buckets to the set, named `<stream>|<n>`; returns its queriers with
    /// their bucket indexes in the set.
    pub(crate) fn finish_stream(&mut self, stream: &str, buckets: StreamBuckets) -> Vec<Querier> {
        let first = self.set.buckets.len();
        for (n, (_, sources)) in buckets.buckets.into_iter().enumerate() {
            self.set.buckets.push(Bucket {
                name: format!("{stream}|{n}"),
                sources,
            });
        }
        buckets
            .queriers
            .into_iter()
            .map(|mut q| {
                q.bucket += first;
                q
            })
            .collect()
    }
}

impl StreamBuckets {
    pub(crate) fn len(&self) -> usize {
        self.buckets.len()
    }
}

/// The conditions left once the path is resolved: each must depend on the request alone (it
/// filters which requests get the bucket); anything else cannot be expressed as a bucket.
fn request_filters(path: &Path<'_>) -> Result<Vec<Expr>, Located> {
    let at_of = |t: &Term| match t {
        Term::Single(_, at) | Term::Equals(_, _, at) => at.clone(),
    };
    let mut request_filters = Vec::new();
    for term in path.pending.iter().flatten() {
        match term {
            Term::Single(side, _) if matches!(side.dep, Dep::Static | Dep::Request) => {
                request_filters.push(side.expr.clone());
            }
            Term::Single(..) => {
                return Err(located(
                    &at_of(term),
                    "this condition is unrelated to the request or the table being synced",
                ));
            }
            Term::Equals(..) => {
                return Err(located(
                    &at_of(term),
                    "this condition does not connect the synced table to the request (through `=` with request values or other joined tables)",
                ));
            }
        }
    }
    Ok(request_filters)
}

/// Every `subscription.parameter(…)` name a querier reads, in its filters, lookups and bucket
/// parameters.
fn subscription_parameter_names(
    request_filters: &[Expr],
    lookups: &[Lookup],
    instantiation: &[Value],
) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for f in request_filters {
        subscription_names(f, &mut names);
    }
    for l in lookups {
        if let Lookup::Function { input, .. } = l {
            subscription_names(input, &mut names);
        }
    }
    value_names(instantiation, &mut names);
    for l in lookups {
        if let Lookup::Index { inputs, .. } = l {
            value_names(inputs, &mut names);
        }
    }
    names
}

fn value_names(values: &[Value], out: &mut BTreeSet<String>) {
    for v in values {
        match v {
            Value::Request(e) => subscription_names(e, out),
            Value::Intersection(inner) => value_names(inner, out),
            Value::Lookup { .. } => {}
        }
    }
}

/// Errors raised deep in the resolution carry no position: give them the query's.
fn fill(mut e: Located, query_at: &At) -> Located {
    if e.error.position.is_none() {
        e.origin = query_at.origin.clone();
        e.error.position = crate::sql::lower::position(query_at.span);
    }
    e
}

/// The synced table and the output columns, checked.
fn outputs(
    sets: &[SetInfo],
    columns: Vec<OutColumn>,
    query_at: &At,
) -> Result<(SetId, Vec<Column>), Located> {
    let mut primary: Option<SetId> = None;
    let mut claim = |set: SetId, at: &At| -> Result<(), Located> {
        if !sets[set].is_table() {
            return Err(located(
                at,
                "a stream can only sync rows of a table, not of json_each",
            ));
        }
        match primary {
            None => {
                primary = Some(set);
                Ok(())
            }
            Some(p) if p == set => Ok(()),
            Some(p) => Err(located(
                at,
                format!(
                    "a stream query syncs rows of one table, and this one already selects from `{}`",
                    sets[p].description
                ),
            )),
        }
    };
    let mut named = Vec::new();
    let mut has_id = false;
    for c in &columns {
        match c {
            OutColumn::Star(s) => {
                claim(*s, query_at)?;
                has_id = true;
            }
            OutColumn::Named(name, e, at) => {
                let mut d = Deps::default();
                collect_deps(e, &mut d);
                if d.request {
                    return Err(located(
                        at,
                        "this syncs a request value: only values of the source database can be synced",
                    ));
                }
                for s in &d.sets {
                    claim(*s, at)?;
                }
                has_id |= name == "id";
                named.push(name);
            }
        }
    }
    let Some(primary) = primary else {
        return Err(located(
            query_at,
            "a stream query must select columns of a table",
        ));
    };
    if !has_id {
        return Err(located(
            query_at,
            "a stream query must output an `id` column (select `id`, `*`, or `<expr> AS id`); PowerSync would sync every row under the same empty id",
        ));
    }
    let mut out = Vec::with_capacity(columns.len());
    for c in columns {
        out.push(match c {
            OutColumn::Star(_) => Column::Star,
            OutColumn::Named(name, e, at) => Column::Named(
                name,
                localize(sets, &e, primary, &mut Vec::new())
                    .map_err(|()| located(&at, "a column can only read the synced table"))?,
            ),
        });
    }
    Ok((primary, out))
}
