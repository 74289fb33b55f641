//! Parsing one query string and checking it is a single plain `SELECT … [FROM one table]
//! [WHERE …]`: the shape both data and parameter queries share.

use sqlparser::ast::{self, GroupByExpr, SelectItem, SetExpr, Spanned, Statement, TableFactor};
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Span, Token, Tokenizer};

use super::dialect::RulesDialect;
use super::lower::{SqlError, args_of, object_name_parts};
use crate::TableRef;

/// The `FROM` of a query.
pub(crate) enum FromClause<'q> {
    /// `FROM [schema.]table [AS alias]`.
    Table {
        table: TableRef,
        alias: Option<String>,
    },
    /// `FROM json_each(<expr>) [AS alias]`.
    JsonEach {
        argument: &'q ast::Expr,
        alias: Option<String>,
    },
}

/// A parsed query.
pub(crate) struct ParsedSelect {
    pub statement: Box<ast::Query>,
}

/// The parts of a plain `SELECT` the lowering uses.
pub(crate) struct SelectParts<'q> {
    pub projection: &'q [SelectItem],
    pub from: Option<FromClause<'q>>,
    pub selection: Option<&'q ast::Expr>,
}

/// Reads `Line: L, Column: C` from a sqlparser error message.
fn parser_error_position(message: &str) -> Option<(usize, usize)> {
    let idx = message.rfind(" at Line: ")?;
    let rest = &message[idx + " at Line: ".len()..];
    let (line, col) = rest.split_once(", Column: ")?;
    let col: String = col.chars().take_while(char::is_ascii_digit).collect();
    Some((line.trim().parse().ok()?, col.parse().ok()?))
}

/// Most tokens (whitespace and comments aside) one query may have. sqlparser builds a chain
/// such as `1+1+…+1` as a left-deep tree without counting it against its recursion limit, and
/// every walk of that tree (its own `span()`, our lowering, dropping it) recurses once per level:
/// a 16 KiB query overflowed a 2 MiB thread stack (fuzzing found it). Bounding the tokens bounds
/// the depth before anything is parsed; [`super::lower::MAX_EXPR_DEPTH`] bounds the lowering.
pub(crate) const MAX_QUERY_TOKENS: usize = 4096;

/// Parses the query text (one statement, a query).
pub(crate) fn parse_query(sql: &str) -> Result<ParsedSelect, SqlError> {
    let dialect = RulesDialect::default();
    // A text that does not tokenize is reported by the parser below.
    if let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() {
        let count = tokens
            .iter()
            .filter(|t| !matches!(t, Token::Whitespace(_)))
            .count();
        if count > MAX_QUERY_TOKENS {
            return Err(SqlError::unlocated(format!(
                "query has {count} tokens, more than the {MAX_QUERY_TOKENS} allowed"
            )));
        }
    }
    let statements = Parser::parse_sql(&dialect, sql).map_err(|e| {
        let message = match &e {
            ParserError::TokenizerError(m) | ParserError::ParserError(m) => m.clone(),
            ParserError::RecursionLimitExceeded => "query is nested too deeply".to_string(),
        };
        let position = parser_error_position(&message);
        let message = match message.rfind(" at Line: ") {
            Some(i) => message[..i].to_string(),
            None => message,
        };
        SqlError {
            message: format!("SQL syntax error: {message}"),
            position,
        }
    })?;
    let mut iter = statements.into_iter();
    let (Some(statement), None) = (iter.next(), iter.next()) else {
        return Err(SqlError::unlocated("expected exactly one SELECT statement"));
    };
    match statement {
        Statement::Query(q) => Ok(ParsedSelect { statement: q }),
        other => Err(SqlError::at(
            other.span(),
            "only SELECT queries are allowed",
        )),
    }
}

fn alias_name(alias: &Option<ast::TableAlias>, span: Span) -> Result<Option<String>, SqlError> {
    match alias {
        None => Ok(None),
        Some(a) if a.columns.is_empty() => Ok(Some(a.name.value.clone())),
        Some(_) => Err(SqlError::at(
            span,
            "column aliases on a table are not supported",
        )),
    }
}

impl ParsedSelect {
    /// Checks the query is a plain single-table `SELECT` and returns its parts.
    pub(crate) fn parts(&self) -> Result<SelectParts<'_>, SqlError> {
        let q = &*self.statement;
        let span = q.span();
        if q.with.is_some() {
            return Err(SqlError::at(span, "WITH is not supported"));
        }
        if let Some(order_by) = &q.order_by {
            return Err(SqlError::at(order_by.span(), "ORDER BY is not supported"));
        }
        if let Some(limit) = &q.limit_clause {
            return Err(SqlError::at(limit.span(), "LIMIT/OFFSET is not supported"));
        }
        if q.fetch.is_some() || !q.locks.is_empty() || q.for_clause.is_some() {
            return Err(SqlError::at(span, "unsupported query clause"));
        }
        if q.settings.is_some() || q.format_clause.is_some() || !q.pipe_operators.is_empty() {
            return Err(SqlError::at(span, "unsupported query clause"));
        }
        let select = match &*q.body {
            SetExpr::Select(s) => s,
            SetExpr::SetOperation { .. } => {
                return Err(SqlError::at(
                    span,
                    "UNION/INTERSECT/EXCEPT are not supported",
                ));
            }
            _ => return Err(SqlError::at(span, "only a plain SELECT is supported")),
        };
        let select_span = select.select_token.0.span;
        if let Some(d) = &select.distinct {
            let _ = d;
            return Err(SqlError::at(select_span, "DISTINCT is not supported"));
        }
        match &select.group_by {
            GroupByExpr::Expressions(exprs, modifiers)
                if exprs.is_empty() && modifiers.is_empty() => {}
            _ => {
                let at = match &select.group_by {
                    GroupByExpr::Expressions(e, _) => e.first().map_or(select_span, Spanned::span),
                    GroupByExpr::All(_) => select_span,
                };
                return Err(SqlError::at(at, "GROUP BY is not supported"));
            }
        }
        if let Some(h) = &select.having {
            return Err(SqlError::at(h.span(), "HAVING is not supported"));
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
            return Err(SqlError::at(select_span, "unsupported SELECT clause"));
        }
        let from = match select.from.as_slice() {
            [] => None,
            [twj] => {
                if let Some(join) = twj.joins.first() {
                    return Err(SqlError::at(
                        join.relation.span(),
                        "JOINs are not supported",
                    ));
                }
                Some(from_clause(&twj.relation)?)
            }
            [_, second, ..] => {
                return Err(SqlError::at(
                    second.relation.span(),
                    "only one table per query is supported (no joins)",
                ));
            }
        };
        Ok(SelectParts {
            projection: &select.projection,
            from,
            selection: select.selection.as_ref(),
        })
    }
}

/// Why a table in FROM is refused for what surrounds its name (hints, versions, partitions,
/// samples, `WITH ORDINALITY`), in classic queries and streams alike.
pub(crate) fn table_modifiers_refused(relation: &TableFactor) -> Option<&'static str> {
    let TableFactor::Table {
        with_hints,
        version,
        with_ordinality,
        partitions,
        json_path,
        sample,
        index_directives,
        ..
    } = relation
    else {
        return None;
    };
    let refused = !with_hints.is_empty()
        || version.is_some()
        || *with_ordinality
        || !partitions.is_empty()
        || json_path.is_some()
        || sample.is_some()
        || !index_directives.is_empty();
    refused.then_some(
        "table hints, versions, partitions, samples and WITH ORDINALITY are not supported",
    )
}

fn from_clause(relation: &TableFactor) -> Result<FromClause<'_>, SqlError> {
    let span = relation.span();
    match relation {
        TableFactor::Table {
            name, alias, args, ..
        } => {
            if let Some(why) = table_modifiers_refused(relation) {
                return Err(SqlError::at(span, why));
            }
            let Some(parts) = object_name_parts(name) else {
                return Err(SqlError::at(span, "unsupported table name"));
            };
            let alias = alias_name(alias, span)?;
            if let Some(args) = args {
                let is_json_each =
                    matches!(parts.as_slice(), [f] if f.eq_ignore_ascii_case("json_each"));
                if !is_json_each {
                    return Err(SqlError::at(
                        span,
                        format!("unsupported table-valued function `{}`", parts.join(".")),
                    ));
                }
                let exprs = args_of(&args.args, span)?;
                let [argument] = exprs.as_slice() else {
                    return Err(SqlError::at(span, "json_each takes exactly one argument"));
                };
                return Ok(FromClause::JsonEach { argument, alias });
            }
            let table = match parts.as_slice() {
                [table] => TableRef::new("public", table.clone()),
                [schema, table] => TableRef::new(schema.clone(), table.clone()),
                _ => {
                    return Err(SqlError::at(
                        span,
                        "table names have at most a schema and a name",
                    ));
                }
            };
            Ok(FromClause::Table { table, alias })
        }
        TableFactor::Derived { .. } => Err(SqlError::at(span, "subqueries are not supported")),
        _ => Err(SqlError::at(span, "unsupported FROM clause")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_error_positions_are_read() {
        assert_eq!(
            parser_error_position("Expected: an expression, found: & at Line: 2, Column: 28"),
            Some((2, 28))
        );
        assert_eq!(parser_error_position("no position"), None);
    }
}
