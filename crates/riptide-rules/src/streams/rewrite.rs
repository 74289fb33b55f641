//! Expressions moved from a query's namespace (columns of result sets) into a processor's (its
//! row and the rows of its `json_each` calls), and what request values they read.

use std::collections::BTreeSet;

use super::plan::{Value, function_column};
use super::sets::{SetId, SetInfo, SetKind, split_column};
use super::terms::target;
use crate::SqliteValue;
use crate::ir::{BinOp, Expr, RequestValue};

/// Rewrites the query-wide columns of an expression evaluated on `table` (and its
/// `json_each` sets, numbered in `functions`) into a processor's names.
pub(super) fn localize(
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

pub(super) fn function_inputs(
    sets: &[SetInfo],
    functions: &[SetId],
    table: SetId,
) -> Result<Vec<Expr>, ()> {
    functions
        .iter()
        .map(|&f| match &sets[f].kind {
            SetKind::Function { input, .. } => localize(sets, input, table, &mut Vec::new()),
            SetKind::Table { .. } => Err(()),
        })
        .collect()
}

/// Partition keys in a stable order (by their text) with their values.
pub(super) fn sorted_keys(
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
