//! Parameter queries: static (`SELECT request.user_id() AS user_id`), `json_each(…)` over a
//! request value, and table-based (`SELECT list_id FROM list_members WHERE user_id =
//! request.user_id()`), which replication indexes as parameter lookups.

use sqlparser::ast::{self, BinaryOperator, Spanned};
use sqlparser::tokenizer::Span;

use super::lower::{ColumnUses, LowerScope, SqlError, and_all, conjuncts};
use super::projection::{Projected, lower_projection};
use super::select::{FromClause, parse_query};
use crate::TableRef;
use crate::ir::{BinOp, Expr};

/// One `row expression = request expression` term of a table-based query (or
/// `row expression IN <request JSON array>` when `in_array`, or
/// `request expression IN <row JSON array>` when `row_array`: the row is indexed under each
/// element of its array).
#[derive(Debug, Clone)]
pub(crate) struct Lookup {
    pub row: Expr,
    pub request: Expr,
    pub in_array: bool,
    pub row_array: bool,
    /// The SQL text of the row and request sides, for explanations.
    pub row_sql: String,
    pub request_sql: String,
}

#[derive(Debug, Clone)]
pub(crate) enum ParameterSource {
    /// No FROM: one result row from request values.
    Static { filter: Option<Expr> },
    /// `FROM json_each(<request expr>)`: one result row per array element (column `value`).
    JsonEach { array: Expr, filter: Option<Expr> },
    /// `FROM table`: rows indexed during replication, found through lookups.
    Table {
        table: TableRef,
        lookups: Vec<Lookup>,
        row_filter: Option<Expr>,
        request_filter: Option<Expr>,
        /// The SQL text of the row-only conditions, for explanations.
        row_filter_sql: Vec<String>,
    },
}

/// A lowered parameter query.
#[derive(Debug, Clone)]
pub(crate) struct ParameterQuery {
    pub source: ParameterSource,
    /// Output columns (the bucket parameters), reordered to the definition's order once all
    /// parameter queries of a definition are known.
    pub columns: Vec<(Box<str>, Expr)>,
    /// Where the select list starts, for errors about its columns.
    pub projection_span: Span,
    /// Whether bucket parameter values come from client-controlled request values.
    pub uses_untrusted_values: bool,
    /// The source columns a table-based query reads, located in the query string.
    pub column_refs: ColumnUses,
    /// The SQL text of each output column's expression, by column name.
    pub column_sql: Vec<(Box<str>, String)>,
}

fn column_sql(items: &[ast::SelectItem]) -> Vec<(Box<str>, String)> {
    items
        .iter()
        .filter_map(|item| match item {
            ast::SelectItem::ExprWithAlias { expr, alias } => {
                Some((alias.value.as_str().into(), expr.to_string()))
            }
            ast::SelectItem::UnnamedExpr(expr) => {
                let name = match expr {
                    ast::Expr::Identifier(i) => i.value.clone(),
                    ast::Expr::CompoundIdentifier(parts) => parts.last()?.value.clone(),
                    _ => return None,
                };
                Some((name.into(), expr.to_string()))
            }
            _ => None,
        })
        .collect()
}

fn named_columns(projected: Vec<Projected>) -> Vec<(Box<str>, Expr)> {
    projected
        .into_iter()
        .filter_map(|p| match p {
            Projected::Named(n, e) => Some((n, e)),
            Projected::Star => None,
        })
        .collect()
}

impl ParameterQuery {
    pub(crate) fn parse(sql: &str) -> Result<ParameterQuery, SqlError> {
        let parsed = parse_query(sql)?;
        let parts = parsed.parts()?;
        let projection_span = parts
            .projection
            .first()
            .map_or(Span::empty(), Spanned::span);
        if parts.projection.is_empty() {
            return Err(SqlError::unlocated(
                "a parameter query must select at least one column",
            ));
        }
        let query = match parts.from {
            None => {
                let scope = LowerScope {
                    row_qualifiers: None,
                    request: true,
                    bucket: false,
                    columns: Default::default(),
                    depth: Default::default(),
                };
                let columns = named_columns(lower_projection(parts.projection, &scope, false)?);
                let filter = parts.selection.map(|s| scope.lower(s)).transpose()?;
                ParameterQuery {
                    source: ParameterSource::Static { filter },
                    columns,
                    projection_span,
                    uses_untrusted_values: false,
                    column_refs: Vec::new(),
                    column_sql: Vec::new(),
                }
            }
            Some(FromClause::JsonEach { argument, alias }) => {
                let request_scope = LowerScope {
                    row_qualifiers: None,
                    request: true,
                    bucket: false,
                    columns: Default::default(),
                    depth: Default::default(),
                };
                let array = request_scope.lower(argument)?;
                let mut qualifiers = vec!["json_each".to_string()];
                qualifiers.extend(alias);
                let scope = LowerScope {
                    row_qualifiers: Some(qualifiers),
                    request: true,
                    bucket: false,
                    columns: Default::default(),
                    depth: Default::default(),
                };
                let columns = named_columns(lower_projection(parts.projection, &scope, false)?);
                let filter = parts.selection.map(|s| scope.lower(s)).transpose()?;
                let untrusted = array.deps().untrusted;
                ParameterQuery {
                    source: ParameterSource::JsonEach { array, filter },
                    columns,
                    projection_span,
                    uses_untrusted_values: untrusted,
                    column_refs: Vec::new(),
                    column_sql: Vec::new(),
                }
            }
            Some(FromClause::Table { table, alias, .. }) => {
                let mut qualifiers = vec![table.name.clone()];
                qualifiers.extend(alias);
                let row_scope = LowerScope {
                    row_qualifiers: Some(qualifiers),
                    request: false,
                    bucket: false,
                    columns: Default::default(),
                    depth: Default::default(),
                };
                let columns = named_columns(lower_projection(parts.projection, &row_scope, false)?);
                let where_scope = LowerScope {
                    request: true,
                    ..row_scope
                };
                let mut lookups = Vec::new();
                let mut row_filters = Vec::new();
                let mut row_filter_sql = Vec::new();
                let mut request_filters = Vec::new();
                if let Some(selection) = parts.selection {
                    for term in conjuncts(selection) {
                        let lowered = where_scope.lower(term)?;
                        let deps = lowered.deps();
                        if !deps.request {
                            row_filters.push(lowered);
                            row_filter_sql.push(term.to_string());
                            continue;
                        }
                        if !deps.row {
                            request_filters.push(lowered);
                            continue;
                        }
                        lookups.push(lookup_term(lowered, term)?);
                    }
                }
                let untrusted = lookups.iter().any(|l| l.request.deps().untrusted);
                ParameterQuery {
                    source: ParameterSource::Table {
                        table,
                        lookups,
                        row_filter: and_all(row_filters),
                        request_filter: and_all(request_filters),
                        row_filter_sql,
                    },
                    columns,
                    projection_span,
                    uses_untrusted_values: untrusted,
                    column_refs: where_scope.take_columns(),
                    column_sql: column_sql(parts.projection),
                }
            }
        };
        let untrusted_columns = query.columns.iter().any(|(_, e)| e.deps().untrusted);
        Ok(ParameterQuery {
            uses_untrusted_values: query.uses_untrusted_values || untrusted_columns,
            ..query
        })
    }

    /// Every expression of the query, to rewrite (e.g. for `fixed_json_extract`).
    pub(crate) fn exprs_mut(&mut self) -> Vec<&mut Expr> {
        let mut out: Vec<&mut Expr> = self.columns.iter_mut().map(|(_, e)| e).collect();
        match &mut self.source {
            ParameterSource::Static { filter } => out.extend(filter.as_mut()),
            ParameterSource::JsonEach { array, filter } => {
                out.push(array);
                out.extend(filter.as_mut());
            }
            ParameterSource::Table {
                lookups,
                row_filter,
                request_filter,
                ..
            } => {
                for l in lookups {
                    out.push(&mut l.row);
                    out.push(&mut l.request);
                }
                out.extend(row_filter.as_mut());
                out.extend(request_filter.as_mut());
            }
        }
        out
    }

    /// Output column names in their current order.
    pub(crate) fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|(n, _)| n.to_string()).collect()
    }

    /// Reorders the output columns to `order` (same set of names, checked by the caller).
    pub(crate) fn reorder(&mut self, order: &[String]) {
        let mut columns = std::mem::take(&mut self.columns);
        let mut sorted = Vec::with_capacity(columns.len());
        for name in order {
            if let Some(i) = columns.iter().position(|(n, _)| &**n == name.as_str()) {
                sorted.push(columns.swap_remove(i));
            }
        }
        self.columns = sorted;
    }

    /// The table a table-based query reads.
    pub(crate) fn table(&self) -> Option<&TableRef> {
        match &self.source {
            ParameterSource::Table { table, .. } => Some(table),
            _ => None,
        }
    }
}

fn lookup_term(lowered: Expr, term: &ast::Expr) -> Result<Lookup, SqlError> {
    let mixed = || {
        SqlError::at(
            term.span(),
            "a condition using both row and request values must be `<row expression> = <request value>`, `<row expression> IN <request JSON array>` or `<request value> IN <row JSON array>`",
        )
    };
    let is_eq = matches!(
        term,
        ast::Expr::BinaryOp {
            op: BinaryOperator::Eq,
            ..
        }
    );
    let (left_sql, right_sql) = match term {
        ast::Expr::BinaryOp { left, right, .. } => (left.to_string(), right.to_string()),
        ast::Expr::In { expr, target, .. } => (expr.to_string(), target.to_string()),
        other => (other.to_string(), String::new()),
    };
    match lowered {
        Expr::Binary(BinOp::Eq, a, b) if is_eq => {
            let (da, db) = (a.deps(), b.deps());
            if !da.request && !db.row {
                Ok(Lookup {
                    row: *a,
                    request: *b,
                    in_array: false,
                    row_array: false,
                    row_sql: left_sql,
                    request_sql: right_sql,
                })
            } else if !db.request && !da.row {
                Ok(Lookup {
                    row: *b,
                    request: *a,
                    in_array: false,
                    row_array: false,
                    row_sql: right_sql,
                    request_sql: left_sql,
                })
            } else {
                Err(mixed())
            }
        }
        Expr::InJson(x, array, false) if !x.deps().request && !array.deps().row => Ok(Lookup {
            row: *x,
            request: *array,
            in_array: true,
            row_array: false,
            row_sql: left_sql,
            request_sql: right_sql,
        }),
        Expr::InJson(x, array, false) if !x.deps().row && !array.deps().request => Ok(Lookup {
            row: *array,
            request: *x,
            in_array: false,
            row_array: true,
            row_sql: right_sql,
            request_sql: left_sql,
        }),
        _ => Err(mixed()),
    }
}
