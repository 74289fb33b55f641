//! The select list of a stream query or subquery: `*`, `t.*`, expressions and their names.

use std::collections::BTreeSet;

use sqlparser::ast::{self, SelectItem, Spanned};

use super::query::{Builder, OutColumn, Purpose, ident_name, parts};
use super::sets::{Entry, Located, Scope};
use crate::sql::lower::SqlError;
use crate::sql::projection::wildcard_options_refused;

impl Builder<'_> {
    pub(super) fn columns(
        &mut self,
        items: &[SelectItem],
        scope: &Scope<'_>,
        purpose: Purpose,
    ) -> Result<Vec<OutColumn>, Located> {
        let mut out = Vec::new();
        for item in items {
            let span = item.span();
            match item {
                SelectItem::Wildcard(options) | SelectItem::QualifiedWildcard(_, options) => {
                    if let Some(why) = wildcard_options_refused(options) {
                        return self.err(span, why);
                    }
                    if purpose == Purpose::Subquery {
                        return self.err(
                            span,
                            "`*` is not allowed in subqueries or common table expressions",
                        );
                    }
                    let entry = match item {
                        SelectItem::QualifiedWildcard(
                            ast::SelectItemQualifiedWildcardKind::ObjectName(name),
                            _,
                        ) => match parts(name).as_deref() {
                            Some([q]) => match scope.find(&ident_name(q)) {
                                Some(e) => e.clone(),
                                None => {
                                    return self.err(
                                        span,
                                        format!(
                                            "table `{}` is not in this query's FROM clause",
                                            ident_name(q)
                                        ),
                                    );
                                }
                            },
                            _ => return self.err(span, "unsupported `*` column"),
                        },
                        SelectItem::QualifiedWildcard(..) => {
                            return self.err(span, "unsupported `*` column");
                        }
                        _ => match scope.default_entry() {
                            Ok(Some(e)) => e.clone(),
                            _ => {
                                return self.err(
                                    span,
                                    "`*` needs a table name (`t.*`): several tables are in scope",
                                );
                            }
                        },
                    };
                    match entry {
                        Entry::Set(s) => {
                            // `*` supplies the id: the table needs an `id` column.
                            self.column_uses.push((s, "id".into(), self.at(span)));
                            out.push(OutColumn::Star(s));
                        }
                        Entry::Subquery(columns) => {
                            for (name, e) in columns.iter() {
                                out.push(OutColumn::Named(name.clone(), e.clone(), self.at(span)));
                            }
                        }
                    }
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    let e = self.value(expr, scope)?;
                    out.push(OutColumn::Named(ident_name(alias), e, self.at(span)));
                }
                SelectItem::UnnamedExpr(expr) => {
                    let name = match expr {
                        ast::Expr::Identifier(i) => ident_name(i),
                        ast::Expr::CompoundIdentifier(p) => match p.last() {
                            Some(last) => ident_name(last),
                            None => return self.err(span, "empty identifier"),
                        },
                        _ => {
                            self.warn(
                                span,
                                "the name of this column is unspecified: add `AS <name>`",
                            );
                            expr.to_string()
                        }
                    };
                    let e = self.value(expr, scope)?;
                    out.push(OutColumn::Named(name, e, self.at(span)));
                }
                _ => return self.err(span, "unsupported select item"),
            }
        }
        if purpose == Purpose::Subquery {
            let mut seen = BTreeSet::new();
            for c in &out {
                if let OutColumn::Named(name, _, at) = c
                    && !seen.insert(name.clone())
                {
                    return Err(Located {
                        origin: at.origin.clone(),
                        error: SqlError::at(
                            at.span,
                            format!("there is a column named `{name}` already"),
                        ),
                    });
                }
            }
        }
        Ok(out)
    }
}
