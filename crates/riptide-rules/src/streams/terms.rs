//! The base terms of one `AND` branch: what each side reads (a result set, request values or
//! nothing, classified pairwise as PowerSync does), equalities between two sides, and terms
//! merged by what they read.

use super::sets::{At, Attach, Deps, Located, SetId, SetInfo, SetKind, collect_deps, split_column};
use crate::ir::{BinOp, Expr};
use crate::sql::lower::SqlError;

/// What a term side reads: nothing, request values, or (the raw id of) one result set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dep {
    Static,
    Request,
    Set(SetId),
}

#[derive(Debug, Clone)]
pub(super) struct Side {
    pub(super) expr: Expr,
    pub(super) dep: Dep,
}

#[derive(Debug, Clone)]
pub(super) enum Term {
    Single(Side, At),
    Equals(Side, Side, At),
}

pub(super) fn located(at: &At, message: impl Into<String>) -> Located {
    Located {
        origin: at.origin.clone(),
        error: SqlError::at(at.span, message),
    }
}

/// The table a result set is evaluated with: itself, or the table a `json_each` reads.
pub(super) fn target(sets: &[SetInfo], s: SetId) -> SetId {
    match &sets[s].kind {
        SetKind::Function { attach, .. } => match attach.get() {
            Attach::Table(t) => t,
            _ => s,
        },
        SetKind::Table { .. } => s,
    }
}

/// The result sets an expression reads, in the order they appear (with repeats).
pub(super) fn ordered_sets(e: &Expr, out: &mut Vec<SetId>) {
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
pub(super) fn compatible(sets: &[SetInfo], a: SetId, b: SetId) -> bool {
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
pub(super) fn dep_of(sets: &[SetInfo], e: &Expr) -> Result<Dep, &'static str> {
    let mut d = Deps::default();
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

pub(super) fn side(sets: &[SetInfo], expr: Expr, at: &At) -> Result<Side, Located> {
    let dep = dep_of(sets, &expr).map_err(|m| located(at, m))?;
    Ok(Side { expr, dep })
}

/// Classifies the base terms of one `AND` branch and merges terms that read the same thing.
pub(super) fn terms(sets: &[SetInfo], branch: Vec<(Expr, At)>) -> Result<Vec<Term>, Located> {
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

pub(super) fn group_key(sets: &[SetInfo], dep: Dep) -> Option<SetId> {
    match dep {
        Dep::Static | Dep::Request => None,
        Dep::Set(s) => Some(target(sets, s)),
    }
}

/// Merges single-dependency terms by what they read (request-only terms together).
pub(super) fn merge_singles(
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
