//! The `SELECT` list: output column names and their expressions.

use sqlparser::ast::{self, SelectItem, SelectItemQualifiedWildcardKind, Spanned};

use super::lower::{LowerScope, SqlError, object_name_parts};
use crate::ir::Expr;

/// One item of the select list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Projected {
    /// `*`: every column of the row, in the row's order.
    Star,
    /// `expr [AS name]`.
    Named(Box<str>, Expr),
}

/// Why `*` is refused for its options (`ILIKE`, `EXCLUDE`, `EXCEPT`, `REPLACE`, `RENAME`,
/// `AS`), in classic queries and streams alike.
pub(crate) fn wildcard_options_refused(
    options: &ast::WildcardAdditionalOptions,
) -> Option<&'static str> {
    let refused = options.opt_ilike.is_some()
        || options.opt_exclude.is_some()
        || options.opt_except.is_some()
        || options.opt_replace.is_some()
        || options.opt_rename.is_some()
        || options.opt_alias.is_some();
    refused.then_some("`*` with ILIKE/EXCLUDE/EXCEPT/REPLACE/RENAME/AS is not supported")
}

/// Lowers the select list. `*` is only accepted where `allow_star`.
pub(crate) fn lower_projection(
    items: &[SelectItem],
    scope: &LowerScope,
    allow_star: bool,
) -> Result<Vec<Projected>, SqlError> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let span = item.span();
        match item {
            SelectItem::Wildcard(options) | SelectItem::QualifiedWildcard(_, options) => {
                if let Some(why) = wildcard_options_refused(options) {
                    return Err(SqlError::at(span, why));
                }
                if let SelectItem::QualifiedWildcard(kind, _) = item {
                    let known = match kind {
                        SelectItemQualifiedWildcardKind::ObjectName(name) => {
                            match (object_name_parts(name).as_deref(), &scope.row_qualifiers) {
                                (Some([q]), Some(names)) => names.iter().any(|n| n == q),
                                _ => false,
                            }
                        }
                        SelectItemQualifiedWildcardKind::Expr(_) => false,
                    };
                    if !known {
                        return Err(SqlError::at(
                            span,
                            format!("`{item}`: not the query's table"),
                        ));
                    }
                }
                if !allow_star {
                    return Err(SqlError::at(
                        span,
                        "`*` is not allowed in parameter queries",
                    ));
                }
                if scope.row_qualifiers.is_none() {
                    return Err(SqlError::at(span, "`*` needs a FROM table"));
                }
                out.push(Projected::Star);
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                out.push(Projected::Named(
                    alias.value.as_str().into(),
                    scope.lower(expr)?,
                ));
            }
            SelectItem::UnnamedExpr(expr) => {
                let name = match expr {
                    ast::Expr::Identifier(i) => i.value.clone(),
                    ast::Expr::CompoundIdentifier(parts) => match parts.last() {
                        Some(last) => last.value.clone(),
                        None => return Err(SqlError::at(span, "empty identifier")),
                    },
                    _ => {
                        // Lower first so unsupported constructs are reported as such.
                        scope.lower(expr)?;
                        return Err(SqlError::at(
                            span,
                            "this expression needs a column name: add `AS <name>`",
                        ));
                    }
                };
                out.push(Projected::Named(name.into(), scope.lower(expr)?));
            }
            _ => return Err(SqlError::at(span, "unsupported select item")),
        }
    }
    Ok(out)
}
