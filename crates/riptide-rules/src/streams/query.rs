//! One stream query lowered into its result sets (`FROM` tables, `json_each` calls, inlined
//! subqueries and CTEs), its output columns and its conditions.
//!
//! Every expression is our IR ([`Expr`]); a column is `Expr::Column("<set>\u{1f}<name>")`, naming
//! the result set it reads, so the compiler can tell which rows a condition needs. A subquery in
//! `FROM`, a CTE or an `IN (SELECT …)` adds its result sets and conditions to the query (an inner
//! join), and its result columns are inlined where they are used.
//!
//! Names follow Postgres: unquoted identifiers are folded to lower case, table names may be
//! qualified with a schema (`public` otherwise), and an unqualified column needs exactly one
//! result set in scope.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::rc::Rc;

use sqlparser::ast::{
    self, GroupByExpr, Ident, JoinConstraint, JoinOperator, SetExpr, Spanned, TableFactor,
};
use sqlparser::tokenizer::Span;

use super::cond::Cond;
use super::sets::{
    At, Attach, Cte, Ctes, Entry, Located, Origin, Scope, SetId, SetInfo, SetKind, column,
};
use crate::TablePattern;
use crate::ir::Expr;
use crate::sql::lower::SqlError;
use crate::sql::select::{parse_query, table_modifiers_refused};

/// One output column of a stream query.
#[derive(Debug, Clone)]
pub(crate) enum OutColumn {
    /// `*` or `t.*` of a table.
    Star(SetId),
    Named(String, Expr, At),
}

/// A lowered `SELECT`.
pub(crate) struct Selected {
    /// Conditions that must all hold (`WHERE`, `JOIN … ON`, inlined subqueries).
    pub conds: Vec<Cond>,
    pub columns: Vec<OutColumn>,
}

/// What a `SELECT` is lowered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// The stream's query: `*` allowed, output names matter.
    Stream,
    /// A subquery or CTE: named columns only.
    Subquery,
}

/// Lowers the queries of one stream; result sets accumulate across nested subqueries.
pub(crate) struct Builder<'c> {
    pub sets: Vec<SetInfo>,
    pub ctes: &'c Ctes,
    /// `->`/`->>` under `fixed_json_extract`.
    pub fixed_json: bool,
    /// The text being lowered (a CTE's while it is inlined).
    pub origin: Origin,
    pub warnings: Vec<Located>,
    /// Names used in `subscription.parameter('<name>')`.
    pub subscription_parameters: BTreeSet<String>,
    /// Every column of a result set read, where (for `riptide rules check`).
    pub column_uses: Vec<(SetId, String, At)>,
    /// Open [`Builder::value`] and [`Builder::cond`] calls (both recurse once per level of
    /// an expression; bounded by [`crate::sql::lower::MAX_EXPR_DEPTH`]).
    pub depth: usize,
}

/// An identifier's name: folded to lower case unless quoted.
pub(crate) fn ident_name(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

pub(super) fn parts(name: &ast::ObjectName) -> Option<Vec<&Ident>> {
    name.0
        .iter()
        .map(|p| match p {
            ast::ObjectNamePart::Identifier(i) => Some(i),
            ast::ObjectNamePart::Function(_) => None,
        })
        .collect()
}

impl<'c> Builder<'c> {
    pub(crate) fn new(ctes: &'c Ctes, fixed_json: bool) -> Self {
        Builder {
            sets: Vec::new(),
            ctes,
            fixed_json,
            origin: None,
            warnings: Vec::new(),
            subscription_parameters: BTreeSet::new(),
            column_uses: Vec::new(),
            depth: 0,
        }
    }

    /// Runs `lower` one nesting level deeper, or refuses an expression nested too deeply.
    pub(crate) fn nested<T>(
        &mut self,
        e: &ast::Expr,
        lower: impl FnOnce(&mut Self) -> Result<T, Located>,
    ) -> Result<T, Located> {
        use crate::sql::lower::MAX_EXPR_DEPTH;
        if self.depth >= MAX_EXPR_DEPTH {
            return self.err(
                e.span(),
                format!("expression nested more than {MAX_EXPR_DEPTH} levels deep"),
            );
        }
        self.depth += 1;
        let result = lower(self);
        self.depth -= 1;
        result
    }

    pub(crate) fn at(&self, span: Span) -> At {
        At {
            origin: self.origin.clone(),
            span,
        }
    }

    pub(crate) fn err<T>(&self, span: Span, message: impl Into<String>) -> Result<T, Located> {
        Err(Located {
            origin: self.origin.clone(),
            error: SqlError::at(span, message),
        })
    }

    pub(crate) fn warn(&mut self, span: Span, message: impl Into<String>) {
        self.warnings.push(Located {
            origin: self.origin.clone(),
            error: SqlError::at(span, message),
        });
    }

    fn add_set(&mut self, kind: SetKind, description: String) -> SetId {
        self.sets.push(SetInfo { kind, description });
        self.sets.len() - 1
    }

    /// Parses query text and lowers it.
    pub(crate) fn parse_and_select(
        &mut self,
        sql: &str,
        purpose: Purpose,
    ) -> Result<Selected, Located> {
        let parsed = parse_query(sql).map_err(|error| Located {
            origin: self.origin.clone(),
            error,
        })?;
        let root = Scope::root();
        self.select(&parsed.statement, &root, purpose)
    }

    /// Lowers a `SELECT` whose names resolve in `parent` after its own.
    pub(crate) fn select(
        &mut self,
        q: &ast::Query,
        parent: &Scope<'_>,
        purpose: Purpose,
    ) -> Result<Selected, Located> {
        let span = q.span();
        if q.with.is_some() {
            return self.err(
                span,
                "WITH is not supported inside a query: define common table expressions in the stream's `with` block",
            );
        }
        if let Some(o) = &q.order_by {
            return self.err(o.span(), "ORDER BY is not supported");
        }
        if let Some(l) = &q.limit_clause {
            return self.err(l.span(), "LIMIT is not supported");
        }
        if q.fetch.is_some()
            || !q.locks.is_empty()
            || q.for_clause.is_some()
            || q.settings.is_some()
            || q.format_clause.is_some()
            || !q.pipe_operators.is_empty()
        {
            return self.err(span, "unsupported query clause");
        }
        let select = match &*q.body {
            SetExpr::Select(s) => s,
            SetExpr::Query(inner) => return self.select(inner, parent, purpose),
            _ => {
                return self.err(
                    span,
                    "expected a plain SELECT statement (no UNION or VALUES)",
                );
            }
        };
        let select_span = select.select_token.0.span;
        match &select.group_by {
            GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty() => {}
            GroupByExpr::Expressions(e, _) => {
                return self.err(
                    e.first().map_or(select_span, Spanned::span),
                    "GROUP BY is not supported",
                );
            }
            GroupByExpr::All(_) => return self.err(select_span, "GROUP BY is not supported"),
        }
        if let Some(h) = &select.having {
            return self.err(h.span(), "HAVING is not supported");
        }
        if select.top.is_some()
            || select.into.is_some()
            || !select.lateral_views.is_empty()
            || select.prewhere.is_some()
            || !select.cluster_by.is_empty()
            || !select.distribute_by.is_empty()
            || !select.sort_by.is_empty()
            || !select.named_window.is_empty()
            || select.qualify.is_some()
            || !select.connect_by.is_empty()
            || select.exclude.is_some()
        {
            return self.err(select_span, "unsupported SELECT clause");
        }
        if let Some(ast::Distinct::On(_)) = &select.distinct {
            return self.err(select_span, "DISTINCT ON is not supported");
        }
        if select.from.is_empty() {
            return self.err(select_span, "a stream query needs FROM");
        }
        let mut scope = Scope::child(parent);
        let mut conds = Vec::new();
        for twj in &select.from {
            self.add_from_item(&twj.relation, &mut scope, &mut conds)?;
            for join in &twj.joins {
                let constraint = match &join.join_operator {
                    JoinOperator::Join(c) | JoinOperator::Inner(c) => c,
                    _ => {
                        return self.err(
                            join.relation.span(),
                            "only inner joins (JOIN, INNER JOIN, or a comma) are supported",
                        );
                    }
                };
                self.add_from_item(&join.relation, &mut scope, &mut conds)?;
                match constraint {
                    JoinConstraint::On(on) => conds.push(self.cond(on, &scope)?),
                    JoinConstraint::None => {}
                    JoinConstraint::Using(_) | JoinConstraint::UsingAlias(..) => {
                        return self.err(
                            join.relation.span(),
                            "JOIN … USING is not supported: write the condition with ON",
                        );
                    }
                    JoinConstraint::Natural => {
                        return self.err(join.relation.span(), "NATURAL JOIN is not supported");
                    }
                }
            }
        }
        if let Some(w) = &select.selection {
            conds.push(self.cond(w, &scope)?);
        }
        let columns = self.columns(&select.projection, &scope, purpose)?;
        Ok(Selected { conds, columns })
    }

    fn register(
        &mut self,
        scope: &mut Scope<'_>,
        name: String,
        entry: Entry,
        span: Span,
    ) -> Result<(), Located> {
        if scope.entries.iter().any(|(n, _)| *n == name) {
            return self.err(
                span,
                format!("a table named `{name}` is already in this FROM clause"),
            );
        }
        scope.entries.push((name, entry));
        Ok(())
    }

    fn alias(
        &self,
        alias: &Option<ast::TableAlias>,
        span: Span,
    ) -> Result<Option<String>, Located> {
        match alias {
            None => Ok(None),
            Some(a) if a.columns.is_empty() => Ok(Some(ident_name(&a.name))),
            Some(_) => self.err(span, "column aliases are only supported on subqueries"),
        }
    }

    fn add_from_item(
        &mut self,
        relation: &TableFactor,
        scope: &mut Scope<'_>,
        conds: &mut Vec<Cond>,
    ) -> Result<(), Located> {
        let span = relation.span();
        match relation {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                if let Some(why) = table_modifiers_refused(relation) {
                    return self.err(span, why);
                }
                let Some(parts) = parts(name) else {
                    return self.err(span, "unsupported table name");
                };
                let alias = self.alias(alias, span)?;
                if let Some(args) = args {
                    return self.table_function(&parts, &args.args, alias, span, scope);
                }
                match parts.as_slice() {
                    [table] => {
                        let table_name = ident_name(table);
                        if let Some(cte) = self.ctes.map.get(&table_name).cloned() {
                            cte.used.set(true);
                            let columns = self.inline_cte(&table_name, &cte, conds)?;
                            let name = alias.unwrap_or(table_name);
                            return self.register(
                                scope,
                                name,
                                Entry::Subquery(Rc::new(columns)),
                                span,
                            );
                        }
                        if self.ctes.invalid.contains(&table_name) {
                            return self.err(
                                span,
                                format!("common table expression `{table_name}` has errors"),
                            );
                        }
                        self.table(TablePattern::new("public", table_name), alias, span, scope)
                    }
                    [schema, table] => self.table(
                        TablePattern::new(ident_name(schema), ident_name(table)),
                        alias,
                        span,
                        scope,
                    ),
                    _ => self.err(span, "table names have at most a schema and a name"),
                }
            }
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
                sample,
            } => {
                if *lateral || sample.is_some() {
                    return self.err(span, "LATERAL and TABLESAMPLE are not supported");
                }
                let Some(alias) = alias else {
                    return self.err(
                        span,
                        "a subquery in FROM needs an alias (`(SELECT …) AS name`)",
                    );
                };
                // Outer names are not visible in a FROM subquery.
                let root = Scope::root();
                let inner = self.select(subquery, &root, Purpose::Subquery)?;
                let mut columns = named_columns(inner.columns);
                if !alias.columns.is_empty() {
                    if alias.columns.len() != columns.len() {
                        return self.err(
                            span,
                            format!(
                                "the alias names {} columns, the subquery returns {}",
                                alias.columns.len(),
                                columns.len()
                            ),
                        );
                    }
                    for (c, a) in columns.iter_mut().zip(&alias.columns) {
                        c.0 = ident_name(&a.name);
                    }
                }
                conds.extend(inner.conds);
                self.register(
                    scope,
                    ident_name(&alias.name),
                    Entry::Subquery(Rc::new(columns)),
                    span,
                )
            }
            TableFactor::NestedJoin { .. } => {
                self.err(span, "parenthesized joins are not supported")
            }
            _ => self.err(span, "unsupported FROM clause"),
        }
    }

    fn table(
        &mut self,
        pattern: TablePattern,
        alias: Option<String>,
        span: Span,
        scope: &mut Scope<'_>,
    ) -> Result<(), Located> {
        let description = pattern.pattern.clone();
        let name = alias.clone().unwrap_or_else(|| pattern.pattern.clone());
        let id = self.add_set(
            SetKind::Table {
                output_name: name.clone(),
                aliased: alias.is_some(),
                pattern,
            },
            description,
        );
        self.register(scope, name, Entry::Set(id), span)
    }

    fn table_function(
        &mut self,
        name: &[&Ident],
        args: &[ast::FunctionArg],
        alias: Option<String>,
        span: Span,
        scope: &mut Scope<'_>,
    ) -> Result<(), Located> {
        let is_json_each = matches!(name, [f] if f.value.eq_ignore_ascii_case("json_each"));
        if !is_json_each {
            return self.err(span, "the only table-valued function is json_each");
        }
        let exprs = crate::sql::lower::args_of(args, span).map_err(|error| Located {
            origin: self.origin.clone(),
            error,
        })?;
        let [argument] = exprs.as_slice() else {
            return self.err(span, "json_each takes exactly one argument");
        };
        let input = self.value(argument, scope)?;
        let set = self.function_set(input, argument.span())?;
        let name = alias.unwrap_or_else(|| "json_each".to_owned());
        self.register(scope, name, Entry::Set(set), span)
    }

    /// A `json_each(input)` result set, attached to what its input reads.
    pub(crate) fn function_set(&mut self, input: Expr, span: Span) -> Result<SetId, Located> {
        let deps = self.deps(&input);
        let attach = match (deps.sets.as_slice(), deps.request) {
            ([], false) => Attach::Floating,
            ([], true) => Attach::Request,
            ([s], false) if self.sets[*s].is_table() => Attach::Table(*s),
            ([_], false) => {
                return self.err(
                    span,
                    "json_each can only read a table's row or request values",
                );
            }
            _ => {
                return self.err(
                    span,
                    "json_each's input must read one table's row or request values, not both",
                );
            }
        };
        Ok(self.add_set(
            SetKind::Function {
                input,
                attach: Cell::new(attach),
            },
            "json_each".into(),
        ))
    }

    /// Inlines a CTE: fresh result sets for this use, its conditions added to `conds`.
    fn inline_cte(
        &mut self,
        name: &str,
        cte: &Cte,
        conds: &mut Vec<Cond>,
    ) -> Result<Vec<(String, Expr)>, Located> {
        let outer = self.origin.replace(name.into());
        let root = Scope::root();
        let inner = self.select(&cte.query, &root, Purpose::Subquery);
        self.origin = outer;
        let inner = inner?;
        conds.extend(inner.conds);
        Ok(named_columns(inner.columns))
    }

    /// `x IN cte`: the CTE's only column, if `name` is a CTE.
    pub(crate) fn cte_column(
        &mut self,
        name: &str,
        span: Span,
        conds: &mut Vec<Cond>,
    ) -> Result<Option<Expr>, Located> {
        let Some(cte) = self.ctes.map.get(name).cloned() else {
            return Ok(None);
        };
        cte.used.set(true);
        if cte.columns.len() != 1 {
            return self.err(
                span,
                format!("`IN {name}` needs a common table expression with exactly one column"),
            );
        }
        let mut columns = self.inline_cte(name, &cte, conds)?;
        Ok(columns.pop().map(|(_, e)| e))
    }

    /// Resolves `name` (or the only result set in scope when `None`) to a column expression.
    pub(crate) fn resolve_column(
        &mut self,
        qualifier: Option<&Ident>,
        name: &Ident,
        scope: &Scope<'_>,
        span: Span,
    ) -> Result<Expr, Located> {
        let column_name = ident_name(name);
        let entry = match qualifier {
            None => match scope.default_entry() {
                Ok(Some(e)) => e,
                Ok(None) => {
                    return self.err(
                        span,
                        format!("column `{column_name}` cannot be used here: no table is in scope"),
                    );
                }
                Err(()) => {
                    return self.err(
                        span,
                        format!(
                            "column `{column_name}` needs a table name: several tables are in scope"
                        ),
                    );
                }
            },
            Some(q) => {
                let q = ident_name(q);
                match scope.find(&q) {
                    Some(e) => e,
                    None => {
                        return self.err(
                            span,
                            format!("table `{q}` is not in this query's FROM clause"),
                        );
                    }
                }
            }
        };
        match entry {
            Entry::Set(s) => {
                let s = *s;
                self.column_uses
                    .push((s, column_name.clone(), self.at(name.span)));
                Ok(column(s, &column_name))
            }
            Entry::Subquery(columns) => match columns.iter().find(|(n, _)| *n == column_name) {
                Some((_, e)) => Ok(e.clone()),
                None => self.err(span, format!("the subquery has no column `{column_name}`")),
            },
        }
    }
}

fn named_columns(columns: Vec<OutColumn>) -> Vec<(String, Expr)> {
    columns
        .into_iter()
        .filter_map(|c| match c {
            OutColumn::Named(n, e, _) => Some((n, e)),
            OutColumn::Star(_) => None,
        })
        .collect()
}
