//! `WHERE` conditions of stream queries: boolean structure over base terms, the desugaring of
//! `IN (SELECT …)`, `IN cte`, `IN <JSON array>` and `&&` into joins, and the disjunctive normal
//! form the compiler works on (one bucket variant per `OR` branch).

use sqlparser::ast::{self, BinaryOperator, Spanned, UnaryOperator};
use sqlparser::tokenizer::Span;

use super::expr::{eq, ps_not};
use super::query::{Builder, Purpose, ident_name};
use super::sets::{At, Located, Scope, column};
use crate::ir::Expr;

/// A condition before normalisation.
#[derive(Debug, Clone)]
pub(crate) enum Cond {
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
    Base(Expr, At),
}

/// Most `AND` branches a normalised condition may have (PowerSync's limit).
pub(crate) const MAX_VARIANTS: usize = 100;

impl Builder<'_> {
    /// Lowers a condition of `WHERE` or `ON`.
    pub(crate) fn cond(&mut self, e: &ast::Expr, scope: &Scope<'_>) -> Result<Cond, Located> {
        self.nested(e, |b| b.cond_form(e, scope))
    }

    fn cond_form(&mut self, e: &ast::Expr, scope: &Scope<'_>) -> Result<Cond, Located> {
        use ast::Expr as E;
        let span = e.span();
        match e {
            E::Nested(inner) => self.cond(inner, scope),
            E::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => Ok(Cond::And(vec![
                self.cond(left, scope)?,
                self.cond(right, scope)?,
            ])),
            E::BinaryOp {
                left,
                op: BinaryOperator::Or,
                right,
            } => Ok(Cond::Or(vec![
                self.cond(left, scope)?,
                self.cond(right, scope)?,
            ])),
            E::UnaryOp {
                op: UnaryOperator::Not,
                expr,
            } => Ok(Cond::Not(Box::new(self.cond(expr, scope)?))),
            E::BinaryOp {
                left,
                op: BinaryOperator::PGOverlap,
                right,
            } => {
                let mut conds = Vec::new();
                let l = self.expand(left, scope, &mut conds)?;
                let r = self.expand(right, scope, &mut conds)?;
                conds.insert(0, Cond::Base(eq(l, r), self.at(span)));
                Ok(Cond::And(conds))
            }
            E::In {
                expr,
                target,
                negated,
                ..
            } => {
                let joined = match target {
                    ast::InTarget::Subquery(_) => true,
                    ast::InTarget::Unnest(inner) => match &**inner {
                        ast::Expr::Identifier(i) if self.ctes.map.contains_key(&ident_name(i)) => {
                            true
                        }
                        other => !*negated && !is_value_list(other),
                    },
                    _ => false,
                };
                if !joined {
                    return Ok(Cond::Base(self.value(e, scope)?, self.at(span)));
                }
                let x = self.value(expr, scope)?;
                let mut conds = Vec::new();
                let out = match target {
                    ast::InTarget::Subquery(q) => self.subquery(q, scope, &mut conds)?,
                    ast::InTarget::Unnest(inner) => self.expand(inner, scope, &mut conds)?,
                    _ => return self.err(span, "unsupported IN"),
                };
                conds.insert(0, Cond::Base(eq(x, out), self.at(span)));
                let joined = Cond::And(conds);
                Ok(if *negated {
                    Cond::Not(Box::new(joined))
                } else {
                    joined
                })
            }
            _ => Ok(Cond::Base(self.value(e, scope)?, self.at(span))),
        }
    }

    /// `(SELECT x FROM …)` as a join: its conditions go to `conds`, its column is returned.
    fn subquery(
        &mut self,
        q: &ast::Query,
        scope: &Scope<'_>,
        conds: &mut Vec<Cond>,
    ) -> Result<Expr, Located> {
        let inner = self.select(q, scope, Purpose::Subquery)?;
        let mut columns = inner.columns;
        let (Some(super::query::OutColumn::Named(_, e, _)), true) =
            (columns.pop(), columns.is_empty())
        else {
            return self.err(q.span(), "the subquery must return exactly one column");
        };
        conds.extend(inner.conds);
        Ok(e)
    }

    /// One side of `IN`/`&&` as a joined set of values: a subquery, a CTE (`x IN cte`), or a
    /// JSON array read with `json_each`.
    fn expand(
        &mut self,
        side: &ast::Expr,
        scope: &Scope<'_>,
        conds: &mut Vec<Cond>,
    ) -> Result<Expr, Located> {
        match side {
            ast::Expr::Subquery(q) => self.subquery(q, scope, conds),
            ast::Expr::Nested(inner) if matches!(**inner, ast::Expr::Subquery(_)) => {
                self.expand(inner, scope, conds)
            }
            ast::Expr::Identifier(i) => {
                if let Some(e) = self.cte_column(&ident_name(i), side.span(), conds)? {
                    return Ok(e);
                }
                self.json_each_values(side, scope)
            }
            _ => self.json_each_values(side, scope),
        }
    }

    fn json_each_values(&mut self, side: &ast::Expr, scope: &Scope<'_>) -> Result<Expr, Located> {
        let input = self.value(side, scope)?;
        let set = self.function_set(input, side.span())?;
        Ok(column(set, "value"))
    }
}

fn is_value_list(e: &ast::Expr) -> bool {
    match e {
        ast::Expr::Array(_) => true,
        ast::Expr::Function(f) => {
            matches!(f.name.0.as_slice(), [ast::ObjectNamePart::Identifier(i)] if i.value.eq_ignore_ascii_case("row"))
        }
        _ => false,
    }
}

/// A condition in disjunctive normal form: `OR` of `AND`s of base terms.
pub(crate) type Dnf = Vec<Vec<(Expr, At)>>;

/// Normalises a condition, pushing `NOT` into base terms (as PowerSync's `NOT`).
pub(crate) fn to_dnf(c: Cond, negate: bool) -> Result<Dnf, ()> {
    Ok(match (c, negate) {
        (Cond::Base(e, at), false) => vec![vec![(e, at)]],
        (Cond::Base(e, at), true) => vec![vec![(ps_not(e), at)]],
        (Cond::Not(inner), n) => to_dnf(*inner, !n)?,
        (Cond::And(items), false) | (Cond::Or(items), true) => {
            let mut acc: Dnf = vec![Vec::new()];
            for item in items {
                let d = to_dnf(item, negate)?;
                if acc.len().saturating_mul(d.len()) > MAX_VARIANTS {
                    return Err(());
                }
                let mut next = Vec::with_capacity(acc.len() * d.len());
                for a in &acc {
                    for b in &d {
                        let mut t = a.clone();
                        t.extend(b.iter().cloned());
                        next.push(t);
                    }
                }
                acc = next;
            }
            acc
        }
        (Cond::Or(items), false) | (Cond::And(items), true) => {
            let mut acc = Vec::new();
            for item in items {
                acc.extend(to_dnf(item, negate)?);
                if acc.len() > MAX_VARIANTS {
                    return Err(());
                }
            }
            acc
        }
    })
}

/// The span covering a set of terms (for errors about a whole branch).
pub(crate) fn first_span(terms: &[(Expr, At)]) -> Span {
    terms.first().map_or(Span::empty(), |(_, at)| at.span)
}
