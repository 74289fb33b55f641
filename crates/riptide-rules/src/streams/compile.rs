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
use super::plan::{
    Bucket, Column, DataSource, Lookup, LookupSource, Processor, Querier, StreamSet, Value,
    function_column,
};
use super::query::{
    At, Attach, Builder, Located, OutColumn, Selected, SetId, SetInfo, SetKind, collect_deps,
    split_column,
};
use crate::SqliteValue;
use crate::ir::{BinOp, Expr, RequestValue};
use crate::sql::lower::SqlError;

/// Most buckets (variants) one stream may define (PowerSync's limit).
pub(crate) const MAX_BUCKETS_PER_STREAM: usize = 100;

/// What a term side reads: nothing, request values, or (the raw id of) one result set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dep {
    Static,
    Request,
    Set(SetId),
}

#[derive(Debug, Clone)]
struct Side {
    expr: Expr,
    dep: Dep,
}

#[derive(Debug, Clone)]
enum Term {
    Single(Side, At),
    Equals(Side, Side, At),
}

fn located(at: &At, message: impl Into<String>) -> Located {
    Located {
        origin: at.origin.clone(),
        error: SqlError::at(at.span, message),
    }
}

/// The table a result set is evaluated with: itself, or the table a `json_each` reads.
fn target(sets: &[SetInfo], s: SetId) -> SetId {
    match &sets[s].kind {
        SetKind::Function { attach, .. } => match attach.get() {
            Attach::Table(t) => t,
            _ => s,
        },
        SetKind::Table { .. } => s,
    }
}

/// The result sets an expression reads, in the order they appear (with repeats).
fn ordered_sets(e: &Expr, out: &mut Vec<SetId>) {
    if let Expr::Column(name) = e {
        if let Some((set, _)) = split_column(name) {
            out.push(set);
        }
        return;
    }
    for c in e.children() {
        ordered_sets(c, out);
    }
}

/// Whether two result sets can be read by one expression: the same set, or a `json_each` and
/// the table it reads (a constant `json_each` attaches to the first table it meets).
fn compatible(sets: &[SetInfo], a: SetId, b: SetId) -> bool {
    if a == b {
        return true;
    }
    let attaches = |f: SetId, t: SetId| match &sets[f].kind {
        SetKind::Function { attach, .. } => match attach.get() {
            Attach::Table(x) => x == t,
            Attach::Floating if sets[t].is_table() => {
                attach.set(Attach::Table(t));
                true
            }
            _ => false,
        },
        SetKind::Table { .. } => false,
    };
    if !sets[a].is_table() {
        attaches(a, b)
    } else {
        attaches(b, a)
    }
}

/// Classifies what an expression reads (as PowerSync does, pairwise in reading order),
/// attaching constant `json_each` sets to the table they are combined with.
fn dep_of(sets: &[SetInfo], e: &Expr) -> Result<Dep, &'static str> {
    let mut d = super::query::Deps::default();
    collect_deps(e, &mut d);
    if d.sets.is_empty() {
        return Ok(if d.request { Dep::Request } else { Dep::Static });
    }
    if d.request {
        return Err(
            "this expression reads both a table's rows and request values; they can only be compared with `=`",
        );
    }
    let mut order = Vec::new();
    ordered_sets(e, &mut order);
    let mut current: Option<SetId> = None;
    for s in order {
        if let Some(c) = current
            && !compatible(sets, c, s)
        {
            return Err(
                "this expression reads rows of two tables; they can only be compared with `=`",
            );
        }
        current = Some(s);
    }
    current.map(Dep::Set).ok_or("internal: no result set")
}

fn side(sets: &[SetInfo], expr: Expr, at: &At) -> Result<Side, Located> {
    let dep = dep_of(sets, &expr).map_err(|m| located(at, m))?;
    Ok(Side { expr, dep })
}

/// Classifies the base terms of one `AND` branch and merges terms that read the same thing.
fn terms(sets: &[SetInfo], branch: Vec<(Expr, At)>) -> Result<Vec<Term>, Located> {
    let mut out = Vec::new();
    for (e, at) in branch {
        if let Expr::Binary(BinOp::Eq, l, r) = &e {
            let (l, r) = (
                side(sets, (**l).clone(), &at)?,
                side(sets, (**r).clone(), &at)?,
            );
            // Both sides on one thing: a plain condition, not a parameter.
            let joint = dep_of(sets, &e).ok();
            match joint {
                Some(dep) => out.push(Term::Single(Side { expr: e, dep }, at)),
                None => out.push(Term::Equals(l, r, at)),
            }
        } else {
            let s = side(sets, e, &at)?;
            out.push(Term::Single(s, at));
        }
    }
    Ok(merge_singles(sets, out, |a, b| {
        Expr::And(Box::new(a), Box::new(b))
    }))
}

fn group_key(sets: &[SetInfo], dep: Dep) -> Option<SetId> {
    match dep {
        Dep::Static | Dep::Request => None,
        Dep::Set(s) => Some(target(sets, s)),
    }
}

/// Merges single-dependency terms by what they read (request-only terms together).
fn merge_singles(
    sets: &[SetInfo],
    terms: Vec<Term>,
    combine: impl Fn(Expr, Expr) -> Expr,
) -> Vec<Term> {
    let mut groups: Vec<(Option<SetId>, Side, At)> = Vec::new();
    let mut rest = Vec::new();
    for t in terms {
        match t {
            Term::Single(s, at) => {
                let key = group_key(sets, s.dep);
                match groups.iter_mut().find(|(k, _, _)| *k == key) {
                    Some((_, existing, _)) => {
                        existing.expr = combine(existing.expr.clone(), s.expr);
                        existing.dep = match (existing.dep, s.dep) {
                            (Dep::Static, d) | (d, Dep::Static) => d,
                            (d, _) => d,
                        };
                    }
                    None => groups.push((key, s, at)),
                }
            }
            other => rest.push(other),
        }
    }
    // Request-only terms first, then per table, like PowerSync.
    groups.sort_by_key(|(k, _, _)| k.is_some());
    rest.extend(groups.into_iter().map(|(_, s, at)| Term::Single(s, at)));
    rest
}

#[derive(Debug, Default)]
struct Resolved {
    filters: Vec<Expr>,
    /// Partition expressions with the values they take.
    keys: Vec<(Expr, Vec<Value>)>,
}

#[derive(Debug)]
enum PendingKind {
    Point(Resolved),
    Function { filters: Vec<Expr> },
}

#[derive(Debug)]
struct PendingLookup {
    set: SetId,
    kind: PendingKind,
    outputs: Vec<Expr>,
}

/// The resolution of one `AND` branch, starting from the synced table.
struct Path<'s> {
    sets: &'s [SetInfo],
    pending: Vec<Option<Term>>,
    lookups: Vec<PendingLookup>,
    lookup_of_set: HashMap<SetId, usize>,
    stack: Vec<SetId>,
}

impl<'s> Path<'s> {
    fn in_stack(&self, set: SetId) -> bool {
        let t = target(self.sets, set);
        self.stack.iter().any(|s| *s == set || *s == t)
    }

    fn resolve_set(&mut self, source: SetId) -> Result<Resolved, Located> {
        self.stack.push(source);
        let mut resolved = Resolved::default();
        for i in 0..self.pending.len() {
            let Some(term) = self.pending[i].clone() else {
                continue;
            };
            match term {
                Term::Single(side, _) => {
                    if let Dep::Set(s) = side.dep
                        && target(self.sets, s) == source
                    {
                        resolved.filters.push(side.expr);
                        self.pending[i] = None;
                    }
                }
                Term::Equals(l, r, _) => {
                    let on_source = |s: &Side| match s.dep {
                        Dep::Set(x) => x == source || target(self.sets, x) == source,
                        _ => false,
                    };
                    let (this, other) = if matches!(l.dep, Dep::Set(x) if x == source) {
                        (l, r)
                    } else if matches!(r.dep, Dep::Set(x) if x == source) {
                        (r, l)
                    } else if on_source(&l) {
                        (l, r)
                    } else if on_source(&r) {
                        (r, l)
                    } else {
                        continue;
                    };
                    if let Dep::Set(os) = other.dep
                        && self.in_stack(os)
                    {
                        // Seen again from the other side, where this one is an output.
                        continue;
                    }
                    self.pending[i] = None;
                    let value = match other.dep {
                        Dep::Set(os) => {
                            let lookup = self.resolve_expanding(os)?;
                            let output = self.add_output(lookup, other.expr);
                            Value::Lookup { lookup, output }
                        }
                        _ => Value::Request(other.expr),
                    };
                    match resolved.keys.iter_mut().find(|(k, _)| *k == this.expr) {
                        Some((_, values)) => values.push(value),
                        None => resolved.keys.push((this.expr, vec![value])),
                    }
                }
            }
        }
        self.stack.pop();
        Ok(resolved)
    }

    fn add_output(&mut self, lookup: usize, expr: Expr) -> usize {
        let outputs = &mut self.lookups[lookup].outputs;
        match outputs.iter().position(|o| *o == expr) {
            Some(i) => i,
            None => {
                outputs.push(expr);
                outputs.len() - 1
            }
        }
    }

    /// The lookup reading `set` (created on first use, after the lookups it needs).
    fn resolve_expanding(&mut self, set: SetId) -> Result<usize, Located> {
        let set = target(self.sets, set);
        if let Some(&l) = self.lookup_of_set.get(&set) {
            return Ok(l);
        }
        let resolved = self.resolve_set(set)?;
        let kind = if self.sets[set].is_table() {
            PendingKind::Point(resolved)
        } else {
            if !resolved.keys.is_empty() {
                return Err(Located {
                    origin: None,
                    error: SqlError::unlocated(
                        "a json_each over request values can't be compared with two other tables (it can't partition data); rewrite the query without `=` on it",
                    ),
                });
            }
            PendingKind::Function {
                filters: resolved.filters,
            }
        };
        self.lookups.push(PendingLookup {
            set,
            kind,
            outputs: Vec::new(),
        });
        let index = self.lookups.len() - 1;
        self.lookup_of_set.insert(set, index);
        Ok(index)
    }

    /// Tables that must merely have a matching row: `<request value> IN (SELECT …)` and
    /// conditions on joined tables no partition reached.
    fn exists_checks(&mut self) -> Result<(), Located> {
        let snapshot: Vec<Term> = self.pending.iter().flatten().cloned().collect();
        for term in snapshot {
            match term {
                Term::Equals(l, r, _) => {
                    let other = if l.dep == Dep::Request {
                        Some(r)
                    } else if r.dep == Dep::Request {
                        Some(l)
                    } else {
                        None
                    };
                    if let Some(Side {
                        dep: Dep::Set(s), ..
                    }) = other
                    {
                        self.resolve_expanding(s)?;
                    }
                }
                Term::Single(side, _) => {
                    if let Dep::Set(s) = side.dep {
                        self.resolve_expanding(s)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Rewrites the query-wide columns of an expression evaluated on `table` (and its
/// `json_each` sets, numbered in `functions`) into a processor's names.
fn localize(
    sets: &[SetInfo],
    e: &Expr,
    table: SetId,
    functions: &mut Vec<SetId>,
) -> Result<Expr, ()> {
    map_columns(e, &mut |name| {
        let (set, column) = split_column(name).ok_or(())?;
        if set == table {
            return Ok(Expr::Column(column.into()));
        }
        if target(sets, set) == table && !sets[set].is_table() {
            let k = match functions.iter().position(|f| *f == set) {
                Some(k) => k,
                None => {
                    functions.push(set);
                    functions.len() - 1
                }
            };
            return Ok(Expr::Column(function_column(k, column).into()));
        }
        Err(())
    })
}

/// A copy of `e` with every column replaced by `f(name)`.
pub(crate) fn map_columns<E>(
    e: &Expr,
    f: &mut impl FnMut(&str) -> Result<Expr, E>,
) -> Result<Expr, E> {
    let b = |x: Expr| Box::new(x);
    Ok(match e {
        Expr::Column(name) => f(name)?,
        Expr::Literal(_) | Expr::Request(_) | Expr::Bucket(_) => e.clone(),
        Expr::Not(x) => Expr::Not(b(map_columns(x, f)?)),
        Expr::Negate(x) => Expr::Negate(b(map_columns(x, f)?)),
        Expr::Binary(op, x, y) => Expr::Binary(*op, b(map_columns(x, f)?), b(map_columns(y, f)?)),
        Expr::And(x, y) => Expr::And(b(map_columns(x, f)?), b(map_columns(y, f)?)),
        Expr::Or(x, y) => Expr::Or(b(map_columns(x, f)?), b(map_columns(y, f)?)),
        Expr::IsNull(x, n) => Expr::IsNull(b(map_columns(x, f)?), *n),
        Expr::Is(x, y, n) => Expr::Is(b(map_columns(x, f)?), b(map_columns(y, f)?), *n),
        Expr::InList(x, items, n) => Expr::InList(
            b(map_columns(x, f)?),
            items
                .iter()
                .map(|i| map_columns(i, f))
                .collect::<Result<_, _>>()?,
            *n,
        ),
        Expr::InJson(x, y, n) => Expr::InJson(b(map_columns(x, f)?), b(map_columns(y, f)?), *n),
        Expr::Cast(x, t) => Expr::Cast(b(map_columns(x, f)?), *t),
        Expr::Call(func, args) => Expr::Call(
            *func,
            args.iter()
                .map(|a| map_columns(a, f))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Case {
            operand,
            whens,
            otherwise,
        } => Expr::Case {
            operand: match operand {
                Some(o) => Some(b(map_columns(o, f)?)),
                None => None,
            },
            whens: whens
                .iter()
                .map(|(w, t)| Ok((map_columns(w, f)?, map_columns(t, f)?)))
                .collect::<Result<_, _>>()?,
            otherwise: match otherwise {
                Some(o) => Some(b(map_columns(o, f)?)),
                None => None,
            },
        },
    })
}

/// `subscription.parameter('<name>')` names an expression reads.
pub(crate) fn subscription_names(e: &Expr, out: &mut BTreeSet<String>) {
    if let Expr::Binary(BinOp::LongArrowFixed | BinOp::LongArrow, json, key) = e
        && matches!(**json, Expr::Request(RequestValue::SubscriptionParameters))
        && let Expr::Literal(SqliteValue::Text(k)) = &**key
    {
        out.insert(k.clone());
    }
    for c in e.children() {
        subscription_names(c, out);
    }
}

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
        let at_of = |t: &Term| match t {
            Term::Single(_, at) | Term::Equals(_, _, at) => at.clone(),
        };
        let resolved = path.resolve_set(primary).map_err(|e| fill(e, query_at))?;
        path.exists_checks().map_err(|e| fill(e, query_at))?;
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
        let mut lookups = Vec::with_capacity(path.lookups.len());
        for pending in path.lookups {
            let lookup = match pending.kind {
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
                    let source =
                        self.lookup_source(processor, outputs, stream, &mut buckets.lookup_count);
                    Lookup::Index { source, inputs }
                }
                PendingKind::Function { filters } => {
                    let SetKind::Function { input, .. } = &sets[pending.set].kind else {
                        return Err(bad("json_each"));
                    };
                    let mut none = Vec::new();
                    let own = |e: &Expr, none: &mut Vec<SetId>| {
                        localize(sets, e, pending.set, none).map_err(|()| bad("json_each"))
                    };
                    Lookup::Function {
                        input: input.clone(),
                        filters: filters
                            .iter()
                            .map(|f| own(f, &mut none))
                            .collect::<Result<_, _>>()?,
                        outputs: pending
                            .outputs
                            .iter()
                            .map(|o| own(o, &mut none))
                            .collect::<Result<_, _>>()?,
                    }
                }
            };
            lookups.push(lookup);
        }

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
        let mut names = BTreeSet::new();
        for f in &request_filters {
            subscription_names(f, &mut names);
        }
        for l in &lookups {
            if let Lookup::Function { input, .. } = l {
                subscription_names(input, &mut names);
            }
        }
        value_names(&instantiation, &mut names);
        for l in &lookups {
            if let Lookup::Index { inputs, .. } = l {
                value_names(inputs, &mut names);
            }
        }
        buckets.queriers.push(Querier {
            request_filters,
            lookups,
            bucket,
            instantiation,
            subscription_parameters: names,
        });
        Ok(())
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

fn function_inputs(sets: &[SetInfo], functions: &[SetId], table: SetId) -> Result<Vec<Expr>, ()> {
    functions
        .iter()
        .map(|&f| match &sets[f].kind {
            SetKind::Function { input, .. } => localize(sets, input, table, &mut Vec::new()),
            SetKind::Table { .. } => Err(()),
        })
        .collect()
}

/// Partition keys in a stable order (by their text) with their values.
fn sorted_keys(
    sets: &[SetInfo],
    keys: Vec<(Expr, Vec<Value>)>,
    table: SetId,
    functions: &mut Vec<SetId>,
) -> Result<(Vec<Expr>, Vec<Value>), ()> {
    let mut local = Vec::with_capacity(keys.len());
    for (k, mut values) in keys {
        let k = localize(sets, &k, table, functions)?;
        let value = if values.len() == 1 {
            values.pop().ok_or(())?
        } else {
            Value::Intersection(values)
        };
        local.push((format!("{k:?}"), k, value));
    }
    local.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(local.into_iter().map(|(_, k, v)| (k, v)).unzip())
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
                let mut d = super::query::Deps::default();
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
