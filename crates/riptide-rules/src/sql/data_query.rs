//! Data queries: `SELECT … FROM table WHERE col = bucket.p [AND …]`, lowered and evaluated
//! on source rows.

use std::borrow::Cow;

use sqlparser::ast::{self, BinaryOperator, Spanned};

use super::lower::{ColumnUses, LowerScope, SqlError, and_all, conjuncts, position};
use super::projection::{Projected, lower_projection};
use super::select::{FromClause, parse_query};
use crate::bucket_name::{bucket_name, normalize_parameter, push_json, push_json_string};
use crate::cast::to_text;
use crate::eval::Scope;
use crate::ir::{BinOp, Expr};
use crate::{EvaluatedRow, EvaluationError, Row, SqliteValue, TableRef};

/// A lowered data query.
#[derive(Debug, Clone)]
pub(crate) struct DataQuery {
    pub table: TableRef,
    pub output_table: String,
    columns: Vec<Projected>,
    /// The output `id`: the last column named `id`, or the row's `id` under `*`.
    id: Expr,
    /// Row side of each bucket parameter, in the definition's parameter order.
    bucket_values: Vec<BucketValue>,
    /// Further `expr = bucket.p` (or `bucket.p IN expr`) terms for a parameter already bound.
    bucket_checks: Vec<(usize, BucketValue)>,
    filter: Option<Expr>,
    /// The source columns the query reads, located in the query string.
    pub column_refs: ColumnUses,
}

/// See [`DataQuery::parts`].
pub(crate) struct DataQueryParts<'q> {
    pub columns: &'q [Projected],
    pub bucket_values: Vec<(&'q Expr, bool)>,
    pub bucket_checks: Vec<(usize, &'q Expr, bool)>,
    pub filter: Option<&'q Expr>,
}

/// Why a data query does not put a row in a bucket.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Miss {
    /// The WHERE clause (apart from the bucket parameters) is not true for the row.
    Filter,
    /// The bucket parameter (index) is NULL or not a usable parameter value.
    Parameter(usize),
    /// A second `… = bucket.<p>` term disagrees with the first (parameter index).
    Check(usize),
}

/// The row side of one bucket parameter.
#[derive(Debug, Clone)]
struct BucketValue {
    expr: Expr,
    /// `bucket.p IN <row JSON array>`: each element of the array is a value of `p` (the row
    /// goes into one bucket per element); otherwise `<row expr> = bucket.p`.
    each: bool,
}

impl BucketValue {
    /// The usable parameter values this gives the row (deduplicated, in order).
    fn values(&self, scope: &Scope<'_>) -> Vec<SqliteValue> {
        let value = self.expr.eval(scope);
        if !self.each {
            return normalize_parameter(&value).into_iter().collect();
        }
        let mut out: Vec<SqliteValue> = Vec::new();
        for element in crate::json_path::array_elements(&value).unwrap_or_default() {
            if let Some(v) = normalize_parameter(&element)
                && !out.contains(&v)
            {
                out.push(v);
            }
        }
        out
    }
}

fn bucket_side(e: &Expr) -> Option<&str> {
    match e {
        Expr::Bucket(name) => Some(name),
        _ => None,
    }
}

/// The table (and alias) of a data query's `FROM`.
fn source_table(from: Option<FromClause<'_>>) -> Result<(TableRef, Option<String>), SqlError> {
    match from {
        Some(FromClause::Table { table, alias, .. }) => Ok((table, alias)),
        Some(FromClause::JsonEach { argument, .. }) => Err(SqlError::at(
            argument.span(),
            "json_each is only supported in parameter queries",
        )),
        None => Err(SqlError::unlocated("a data query needs `FROM <table>`")),
    }
}

/// The output `id` (the last column named `id`, or the row's `id` under `*`), and the span of
/// the `*` that supplies it, if one does.
fn output_id(
    columns: &[Projected],
    projection: &[ast::SelectItem],
) -> Result<(Expr, Option<sqlparser::tokenizer::Span>), SqlError> {
    let id = columns
        .iter()
        .rev()
        .find_map(|c| match c {
            Projected::Named(name, e) if &**name == "id" => Some(e.clone()),
            _ => None,
        })
        .or_else(|| {
            columns
                .iter()
                .any(|c| matches!(c, Projected::Star))
                .then(|| Expr::Column("id".into()))
        });
    let mut star_id = None;
    if !columns
        .iter()
        .any(|c| matches!(c, Projected::Named(name, _) if &**name == "id"))
    {
        star_id = projection
            .iter()
            .find(|p| {
                matches!(
                    p,
                    ast::SelectItem::Wildcard(_) | ast::SelectItem::QualifiedWildcard(..)
                )
            })
            .map(Spanned::span);
    }
    let Some(id) = id else {
        return Err(SqlError::at(
            projection
                .first()
                .map_or(sqlparser::tokenizer::Span::empty(), Spanned::span),
            "a data query must output an `id` column (select `id`, `*`, or `<expr> AS id`)",
        ));
    };
    Ok((id, star_id))
}

/// A data query's WHERE clause, lowered: the terms with bucket parameters bind each parameter
/// to a row expression (the first term of each) or check it (further terms); the rest filter.
struct Conditions {
    bucket_values: Vec<BucketValue>,
    bucket_checks: Vec<(usize, BucketValue)>,
    filters: Vec<Expr>,
}

impl Conditions {
    fn lower(
        scope: &LowerScope,
        selection: Option<&ast::Expr>,
        bucket_parameters: &[String],
    ) -> Result<Conditions, SqlError> {
        let mut bound: Vec<Option<BucketValue>> = vec![None; bucket_parameters.len()];
        let mut bucket_checks = Vec::new();
        let mut filters = Vec::new();
        for term in selection.map(conjuncts).unwrap_or_default() {
            let lowered = scope.lower(term)?;
            if !lowered.deps().bucket {
                filters.push(lowered);
                continue;
            }
            let (index, row_side) = bucket_term(&lowered, term, bucket_parameters)?;
            match &bound[index] {
                None => bound[index] = Some(row_side),
                Some(_) => bucket_checks.push((index, row_side)),
            }
        }
        let mut bucket_values = Vec::with_capacity(bound.len());
        for (name, b) in bucket_parameters.iter().zip(bound) {
            match b {
                Some(e) => bucket_values.push(e),
                None => {
                    let at = selection.map_or(sqlparser::tokenizer::Span::empty(), Spanned::span);
                    return Err(SqlError::at(
                        at,
                        format!(
                            "bucket parameter `{name}` is not used: add `<column> = bucket.{name}` to the WHERE clause"
                        ),
                    ));
                }
            }
        }
        Ok(Conditions {
            bucket_values,
            bucket_checks,
            filters,
        })
    }
}

/// A WHERE term with a bucket parameter (`lowered`, from `term`): the index of the parameter
/// and its row side.
fn bucket_term(
    lowered: &Expr,
    term: &ast::Expr,
    bucket_parameters: &[String],
) -> Result<(usize, BucketValue), SqlError> {
    let equality = match (lowered, term) {
        (
            Expr::Binary(BinOp::Eq, a, b),
            ast::Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            },
        ) => match (bucket_side(a), bucket_side(b)) {
            (Some(name), None) if !b.deps().bucket => Some((name, b, left.span(), false)),
            (None, Some(name)) if !a.deps().bucket => Some((name, a, right.span(), false)),
            _ => None,
        },
        // `bucket.p IN <row JSON array>`: one bucket per element.
        (Expr::InJson(a, b, false), ast::Expr::In { expr, .. }) => match bucket_side(a) {
            Some(name) if !b.deps().bucket => Some((name, b, expr.span(), true)),
            _ => None,
        },
        _ => None,
    };
    let Some((name, row_side, bucket_span, each)) = equality else {
        return Err(SqlError::at(
            term.span(),
            "bucket parameters can only be used as `<row expression> = bucket.<name>` or `bucket.<name> IN <row JSON array>`, joined with AND",
        ));
    };
    let row_side = BucketValue {
        expr: (**row_side).clone(),
        each,
    };
    let Some(index) = bucket_parameters.iter().position(|p| p == name) else {
        let known = if bucket_parameters.is_empty() {
            "this definition has no parameters".to_string()
        } else {
            format!("known: {}", bucket_parameters.join(", "))
        };
        return Err(SqlError::at(
            bucket_span,
            format!("`bucket.{name}` is not a parameter of this bucket ({known})"),
        ));
    };
    Ok((index, row_side))
}

impl DataQuery {
    /// Parses and lowers a data query of a definition with the given bucket parameters.
    pub(crate) fn parse(sql: &str, bucket_parameters: &[String]) -> Result<DataQuery, SqlError> {
        let parsed = parse_query(sql)?;
        let parts = parsed.parts()?;
        // 1. The source table.
        let (table, alias) = source_table(parts.from)?;
        let mut qualifiers = vec![table.name.clone()];
        qualifiers.extend(alias.clone());
        let row_scope = LowerScope {
            row_qualifiers: Some(qualifiers),
            request: false,
            bucket: false,
            columns: Default::default(),
            depth: Default::default(),
        };
        // 2. The output columns and the output id.
        let columns = lower_projection(parts.projection, &row_scope, true)?;
        let (id, star_id) = output_id(&columns, parts.projection)?;
        // 3. The WHERE clause: the row side of each bucket parameter, and the filters.
        let where_scope = LowerScope {
            bucket: true,
            ..row_scope
        };
        let conditions = Conditions::lower(&where_scope, parts.selection, bucket_parameters)?;
        let mut column_refs = where_scope.take_columns();
        if let Some(span) = star_id {
            // `*` supplies the output id: the table needs an `id` column.
            column_refs.push(("id".into(), position(span)));
        }
        Ok(DataQuery {
            column_refs,
            output_table: alias.unwrap_or_else(|| table.name.clone()),
            table,
            columns,
            id,
            bucket_values: conditions.bucket_values,
            bucket_checks: conditions.bucket_checks,
            filter: and_all(conditions.filters),
        })
    }

    /// The query's parts for tools (`riptide rules migrate`): output columns, the row side of
    /// each bucket parameter (`true`: `bucket.p IN <row array>`), further checks on bound
    /// parameters, and the row filter.
    pub(crate) fn parts(&self) -> DataQueryParts<'_> {
        DataQueryParts {
            columns: &self.columns,
            bucket_values: self
                .bucket_values
                .iter()
                .map(|b| (&b.expr, b.each))
                .collect(),
            bucket_checks: self
                .bucket_checks
                .iter()
                .map(|(i, b)| (*i, &b.expr, b.each))
                .collect(),
            filter: self.filter.as_ref(),
        }
    }

    /// Every expression of the query, to rewrite (e.g. for `fixed_json_extract`).
    pub(crate) fn exprs_mut(&mut self) -> Vec<&mut Expr> {
        let mut out: Vec<&mut Expr> = Vec::new();
        for c in &mut self.columns {
            if let Projected::Named(_, e) = c {
                out.push(e);
            }
        }
        out.push(&mut self.id);
        out.extend(self.bucket_values.iter_mut().map(|b| &mut b.expr));
        out.extend(self.bucket_checks.iter_mut().map(|(_, b)| &mut b.expr));
        out.extend(self.filter.as_mut());
        out
    }

    /// Whether the select list names `column` (not through `*`).
    pub(crate) fn outputs_column(&self, column: &str) -> bool {
        self.columns
            .iter()
            .any(|c| matches!(c, Projected::Named(name, _) if &**name == column))
    }

    /// Evaluates the query on a row, appending the bucket row it produces (if any).
    pub(crate) fn evaluate(
        &self,
        definition: &str,
        row: &Row,
        rows: &mut Vec<EvaluatedRow>,
        errors: &mut Vec<EvaluationError>,
    ) {
        let scope = Scope {
            row: Some(row),
            request: None,
        };
        let Ok(sets) = self.bucket_parameters(&scope) else {
            return;
        };
        let id = match &*self.id.eval(&scope) {
            SqliteValue::Null => None,
            SqliteValue::Blob(_) => None,
            other => to_text(other).map(Cow::into_owned),
        };
        let Some(id) = id else {
            errors.push(EvaluationError {
                message: format!(
                    "row of {} has no usable id (NULL, missing or binary) for bucket definition {definition}",
                    self.table.qualified()
                ),
            });
            return;
        };
        let data = self.output_json(&scope, row);
        for values in sets {
            rows.push(EvaluatedRow {
                bucket: bucket_name(definition, &values),
                table: self.output_table.clone(),
                id: id.clone(),
                data: data.clone(),
            });
        }
    }

    /// The bucket parameter values the query gives a row (one set per bucket: several when a
    /// parameter is bound by `bucket.p IN <row JSON array>`), or why it puts the row in no
    /// bucket.
    pub(crate) fn bucket_parameters(
        &self,
        scope: &Scope<'_>,
    ) -> Result<Vec<Vec<SqliteValue>>, Miss> {
        if let Some(filter) = &self.filter
            && !filter.passes(scope)
        {
            return Err(Miss::Filter);
        }
        let mut sets: Vec<Vec<SqliteValue>> = vec![Vec::with_capacity(self.bucket_values.len())];
        for (index, bv) in self.bucket_values.iter().enumerate() {
            let values = bv.values(scope);
            if values.is_empty() {
                return Err(Miss::Parameter(index));
            }
            sets = if let [single] = values.as_slice() {
                for set in &mut sets {
                    set.push(single.clone());
                }
                sets
            } else {
                sets.iter()
                    .flat_map(|set| {
                        values.iter().map(move |v| {
                            let mut set = set.clone();
                            set.push(v.clone());
                            set
                        })
                    })
                    .collect()
            };
        }
        for (index, bv) in &self.bucket_checks {
            let allowed = bv.values(scope);
            sets.retain(|set| set.get(*index).is_some_and(|v| allowed.contains(v)));
            if sets.is_empty() {
                return Err(Miss::Check(*index));
            }
        }
        Ok(sets)
    }

    fn output_json(&self, scope: &Scope<'_>, row: &Row) -> String {
        let mut fields: Vec<(&str, Cow<'_, SqliteValue>)> = Vec::with_capacity(row.0.len());
        for c in &self.columns {
            match c {
                Projected::Star if fields.is_empty() => {
                    // Row column names are unique: no need to look for earlier ones.
                    fields.extend(row.0.iter().map(|(k, v)| (k.as_str(), Cow::Borrowed(v))));
                }
                Projected::Star => {
                    for (k, v) in &row.0 {
                        set_field(&mut fields, k, Cow::Borrowed(v));
                    }
                }
                Projected::Named(name, e) => set_field(&mut fields, name, e.eval(scope)),
            }
        }
        let mut out = String::with_capacity(64 + fields.len() * 16);
        out.push('{');
        let mut first = true;
        for (k, v) in fields {
            if matches!(*v, SqliteValue::Blob(_)) {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            push_json_string(&mut out, k);
            out.push(':');
            push_json(&mut out, &v);
        }
        out.push('}');
        out
    }
}

fn set_field<'a>(
    fields: &mut Vec<(&'a str, Cow<'a, SqliteValue>)>,
    name: &'a str,
    value: Cow<'a, SqliteValue>,
) {
    match fields.iter_mut().find(|(k, _)| *k == name) {
        Some(slot) => slot.1 = value,
        None => fields.push((name, value)),
    }
}
