//! Sync Streams (`streams:`): PowerSync's current sync config, compiled as its edition-3
//! compiler does, into sources replication evaluates and queriers requests resolve.
//!
//! A stream is one or more queries (`query`/`queries`) over the source tables, with common
//! table expressions (`with`, per stream or global), `auto_subscribe`, `priority` and
//! `accept_potentially_dangerous_queries`. A query selects rows of one table; its `WHERE`
//! relates them to the request through `auth.*()` (token claims), `subscription.*()` (one
//! subscription's parameters, untrusted) and `connection.*()` (connection parameters,
//! untrusted), directly or through subqueries, joins, CTEs and `json_each`.
//!
//! Layout:
//! - `source`: the YAML (`streams`, `with`) and PowerSync's edition rules;
//! - `query`, `expr`, `cond`: SQL → result sets, IR expressions and conditions;
//! - `compile`, `plan`: conditions → data sources, lookup sources and queriers;
//! - `evaluate`: rows → bucket rows and lookup entries (replication);
//! - `resolve`, `request`: a request → buckets, reasons and per-subscription errors.

pub(crate) mod compile;
pub(crate) mod cond;
pub(crate) mod evaluate;
pub(crate) mod expr;
pub(crate) mod introspect;
pub(crate) mod path;
pub(crate) mod plan;
pub(crate) mod query;
pub(crate) mod request;
pub(crate) mod resolve;
pub(crate) mod rewrite;
pub(crate) mod select_list;
pub(crate) mod sets;
pub(crate) mod source;
pub(crate) mod terms;
#[cfg(test)]
mod tests;

use std::rc::Rc;

use compile::{Compiler, MAX_BUCKETS_PER_STREAM, StreamBuckets};
use plan::{Lookup, Querier, Stream, StreamSet, Value};
use query::{Builder, Purpose};
use sets::{At, Cte, Ctes, Located};
use source::CteSource;

use crate::RulesError;
use crate::compat::CompatibilityOption;
use crate::ir::{Expr, RequestValue};
use crate::sql::select::parse_query;
use crate::yaml::{Locator, QuerySource, RulesSource};

fn locate(
    loc: &Locator<'_>,
    query: &QuerySource,
    ctes: &[&[CteSource]],
    e: &Located,
    stream: Option<&str>,
) -> RulesError {
    let source = match &e.origin {
        None => query,
        Some(name) => ctes
            .iter()
            .flat_map(|c| c.iter())
            .find(|c| c.name == **name)
            .map_or(query, |c| &c.query),
    };
    let (line, column) = loc.in_scalar(&source.path, &source.sql, e.error.position);
    let context = match (stream, &e.origin) {
        (Some(s), None) => format!(" (stream `{s}`)"),
        (Some(s), Some(cte)) => format!(" (common table expression `{cte}`, used by stream `{s}`)"),
        (None, Some(cte)) => format!(" (common table expression `{cte}`)"),
        (None, None) => String::new(),
    };
    RulesError {
        message: format!("{}{context}", e.error.message),
        line,
        column,
    }
}

/// Validates CTEs into `into`, reporting errors at their queries.
fn read_ctes(
    loc: &Locator<'_>,
    sources: &[CteSource],
    fixed_json: bool,
    into: &mut Ctes,
    errors: &mut Vec<RulesError>,
    warnings: &mut Vec<RulesError>,
) {
    for cte in sources {
        let empty = Ctes::default();
        let mut b = Builder::new(&empty, fixed_json);
        let checked = b
            .parse_and_select(&cte.query.sql, Purpose::Subquery)
            .and_then(|selected| {
                parse_query(&cte.query.sql)
                    .map(|p| (selected, p.statement))
                    .map_err(|error| Located {
                        origin: None,
                        error,
                    })
            });
        for w in &b.warnings {
            warnings.push(locate(loc, &cte.query, &[], w, None));
        }
        match checked {
            Ok((selected, query)) => {
                let columns = selected
                    .columns
                    .iter()
                    .filter_map(|c| match c {
                        query::OutColumn::Named(n, _, _) => Some(n.clone()),
                        query::OutColumn::Star(_) => None,
                    })
                    .collect();
                into.invalid.remove(&cte.name);
                into.map.insert(
                    cte.name.to_lowercase(),
                    Rc::new(Cte {
                        query,
                        columns,
                        used: Default::default(),
                    }),
                );
            }
            Err(e) => {
                into.map.remove(&cte.name.to_lowercase());
                into.invalid.insert(cte.name.to_lowercase());
                let mut error = locate(loc, &cte.query, &[], &e, None);
                error.message = format!(
                    "{} (common table expression `{}`)",
                    e.error.message, cte.name
                );
                errors.push(error);
            }
        }
    }
}

fn unused(loc: &Locator<'_>, sources: &[CteSource], ctes: &Ctes, warnings: &mut Vec<RulesError>) {
    for c in sources {
        if ctes
            .map
            .get(&c.name.to_lowercase())
            .is_some_and(|cte| !cte.used.get())
        {
            warnings.push(loc.error(
                &c.key_path,
                true,
                format!("common table expression `{}` is not used", c.name),
            ));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    Neutral,
    Authenticated,
    Untrusted,
}

fn merge(items: impl IntoIterator<Item = Trust>) -> Trust {
    let mut out = Trust::Neutral;
    for t in items {
        match t {
            Trust::Authenticated => return Trust::Authenticated,
            Trust::Untrusted => out = Trust::Untrusted,
            Trust::Neutral => {}
        }
    }
    out
}

fn expr_trust(e: &Expr) -> Trust {
    fn walk(e: &Expr, auth: &mut bool, untrusted: &mut bool) {
        match e {
            Expr::Request(RequestValue::Jwt) => *auth = true,
            Expr::Request(_) => *untrusted = true,
            _ => {
                for c in e.children() {
                    walk(c, auth, untrusted);
                }
            }
        }
    }
    let (mut auth, mut untrusted) = (false, false);
    walk(e, &mut auth, &mut untrusted);
    if auth {
        Trust::Authenticated
    } else if untrusted {
        Trust::Untrusted
    } else {
        Trust::Neutral
    }
}

fn value_trust(v: &Value, q: &Querier) -> Trust {
    match v {
        Value::Request(e) => expr_trust(e),
        Value::Intersection(inner) => merge(inner.iter().map(|v| value_trust(v, q))),
        Value::Lookup { lookup, .. } => match q.lookups.get(*lookup) {
            Some(Lookup::Index { inputs, .. }) => merge(inputs.iter().map(|v| value_trust(v, q))),
            Some(Lookup::Function { input, .. }) => expr_trust(input),
            None => Trust::Neutral,
        },
    }
}

/// Whether the querier's buckets are chosen only by values the client controls.
fn untrusted(q: &Querier) -> bool {
    let mut t = merge(q.instantiation.iter().map(|v| value_trust(v, q)));
    if t == Trust::Neutral {
        t = merge(q.request_filters.iter().map(expr_trust));
    }
    t == Trust::Untrusted
}

/// What a compiled query reads, located.
fn query_tables(
    b: &Builder<'_>,
    primary: sets::SetId,
    q: &QuerySource,
    ctes: &[&[CteSource]],
) -> plan::QueryTables {
    let pattern = |s: sets::SetId| match &b.sets[s].kind {
        sets::SetKind::Table { pattern, .. } => Some(pattern.clone()),
        sets::SetKind::Function { .. } => None,
    };
    let mut joined = Vec::new();
    for s in 0..b.sets.len() {
        if s != primary
            && let Some(p) = pattern(s)
            && !joined.contains(&p)
        {
            joined.push(p);
        }
    }
    let columns = b
        .column_uses
        .iter()
        .filter_map(|(s, name, at)| {
            let source = match &at.origin {
                None => q.clone(),
                Some(cte) => ctes
                    .iter()
                    .flat_map(|c| c.iter())
                    .find(|c| c.name == **cte)
                    .map_or_else(|| q.clone(), |c| c.query.clone()),
            };
            Some((
                pattern(*s)?,
                name.clone(),
                source,
                crate::sql::lower::position(at.span),
            ))
        })
        .collect();
    plan::QueryTables {
        synced: pattern(primary).unwrap_or_else(|| crate::TablePattern::new("public", "")),
        joined,
        columns,
    }
}

/// Compiles every stream of the file, reporting problems located in it.
pub(crate) fn compile(
    source: &RulesSource,
    loc: &Locator<'_>,
    errors: &mut Vec<RulesError>,
    warnings: &mut Vec<RulesError>,
) -> StreamSet {
    if source.streams.is_empty() {
        return StreamSet::default();
    }
    let fixed_json = source
        .compatibility
        .is_enabled(CompatibilityOption::FixedJsonExtract);
    let mut global = Ctes::default();
    read_ctes(loc, &source.ctes, fixed_json, &mut global, errors, warnings);
    let mut compiler = Compiler::default();
    let mut local_ctes: Vec<(&[CteSource], Ctes)> = Vec::new();
    for s in &source.streams {
        let mut ctes = Ctes {
            map: global.map.clone(),
            invalid: global.invalid.clone(),
        };
        read_ctes(loc, &s.ctes, fixed_json, &mut ctes, errors, warnings);
        let sources: [&[CteSource]; 2] = [&s.ctes, &source.ctes];
        let mut buckets = StreamBuckets::default();
        let mut tables = Vec::new();
        let mut failed = false;
        for q in &s.queries {
            let mut b = Builder::new(&ctes, fixed_json);
            let at = At {
                origin: None,
                span: sqlparser::tokenizer::Span::empty(),
            };
            let result = b
                .parse_and_select(&q.sql, Purpose::Stream)
                .and_then(|selected| compiler.query(&s.name, &b, selected, &at, &mut buckets));
            if let Ok(primary) = &result {
                tables.push(query_tables(&b, *primary, q, &sources));
            }
            for w in &b.warnings {
                warnings.push(locate(loc, q, &sources, w, Some(&s.name)));
            }
            if let Err(e) = result {
                failed = true;
                errors.push(locate(loc, q, &sources, &e, Some(&s.name)));
            }
        }
        if buckets.len() > MAX_BUCKETS_PER_STREAM {
            errors.push(loc.error(
                &s.key_path,
                true,
                format!(
                    "stream `{}` defines too many buckets ({}, at most {MAX_BUCKETS_PER_STREAM}): split its queries into several streams or move inner ORs into separate queries",
                    s.name,
                    buckets.len()
                ),
            ));
            failed = true;
        }
        let queriers = if failed {
            Vec::new()
        } else {
            compiler.finish_stream(&s.name, buckets)
        };
        if !s.accept_dangerous && queriers.iter().any(untrusted) {
            warnings.push(loc.error(
                &s.key_path,
                true,
                format!(
                    "stream `{}`: clients can send any value for its unauthenticated parameters (subscription.* or connection.*), so they are unsuitable for authorization; constrain it with an auth.* value, or set `accept_potentially_dangerous_queries: true`",
                    s.name
                ),
            ));
        }
        compiler.set.streams.push(Stream {
            name: s.name.clone(),
            auto_subscribe: s.auto_subscribe,
            priority: s.priority,
            queriers,
            queries: s.queries.clone(),
            tables,
        });
        local_ctes.push((&s.ctes, ctes));
    }
    unused(loc, &source.ctes, &global, warnings);
    for (sources, ctes) in &local_ctes {
        unused(loc, sources, ctes, warnings);
    }
    let mut set = compiler.set;
    set.build_index();
    set
}
