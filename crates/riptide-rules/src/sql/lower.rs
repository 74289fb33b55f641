//! sqlparser expressions → IR, rejecting everything outside the supported subset with the
//! position of the offending construct (line/column inside the query string).

use std::cell::{Cell, RefCell};

use sqlparser::ast::{
    self, BinaryOperator, CastKind, FunctionArg, FunctionArgExpr, FunctionArguments, InTarget,
    ObjectName, ObjectNamePart, Spanned, UnaryOperator, Value,
};
use sqlparser::tokenizer::Span;

use crate::SqliteValue;
use crate::cast::CastType;
use crate::functions::Function;
use crate::ir::{BinOp, Expr, RequestValue};

/// A problem in one SQL query, at a 1-based line/column of the query string when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SqlError {
    pub message: String,
    pub position: Option<(usize, usize)>,
}

/// The 1-based (line, column) where a span starts, if known.
pub(crate) fn position(span: Span) -> Option<(usize, usize)> {
    (span.start.line > 0).then(|| (span.start.line as usize, span.start.column.max(1) as usize))
}

/// Row columns a query reads: name and position in the query string.
pub(crate) type ColumnUses = Vec<(Box<str>, Option<(usize, usize)>)>;

impl LowerScope {
    /// The row columns lowered through this scope so far, located.
    pub(crate) fn take_columns(&self) -> ColumnUses {
        std::mem::take(&mut *self.columns.borrow_mut())
            .into_iter()
            .map(|(name, span)| (name, position(span)))
            .collect()
    }
}

impl SqlError {
    pub(crate) fn at(span: Span, message: impl Into<String>) -> SqlError {
        SqlError {
            message: message.into(),
            position: position(span),
        }
    }

    pub(crate) fn unlocated(message: impl Into<String>) -> SqlError {
        SqlError {
            message: message.into(),
            position: None,
        }
    }
}

/// What an expression may refer to where it appears.
#[derive(Debug, Clone, Default)]
pub(crate) struct LowerScope {
    /// Names the row's table can be qualified with (table name and alias); `None` when no
    /// row is in scope.
    pub row_qualifiers: Option<Vec<String>>,
    /// `request.*()`, `token_parameters.*`, `user_parameters.*`.
    pub request: bool,
    /// `bucket.*`.
    pub bucket: bool,
    /// Every row column lowered through this scope, with the span of its name (for
    /// [`crate::SyncRules::referenced_columns`]).
    pub columns: RefCell<Vec<(Box<str>, Span)>>,
    /// How many [`LowerScope::lower`] calls are open: lowering recurses once per level of
    /// the expression, and sqlparser builds chains such as `1+1+…+1` left-deep without
    /// counting them against its own recursion limit.
    pub depth: Cell<usize>,
}

/// Deepest expression nesting the rules accept (each operand of a chain of binary operators
/// counts one level). A few hundred levels overflowed a 2 MiB thread stack (fuzzing found it).
pub(crate) const MAX_EXPR_DEPTH: usize = 128;

/// The plain name of an identifier chain (`a.b.c` → `["a","b","c"]`).
pub(crate) fn object_name_parts(name: &ObjectName) -> Option<Vec<String>> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(i.value.clone()),
            ObjectNamePart::Function(_) => None,
        })
        .collect()
}

fn literal(v: &Value, span: Span) -> Result<SqliteValue, SqlError> {
    Ok(match v {
        Value::Number(n, _) => match n.parse::<i64>() {
            Ok(i) => SqliteValue::Integer(i),
            Err(_) => match n.parse::<f64>() {
                Ok(f) => SqliteValue::Real(f),
                Err(_) => return Err(SqlError::at(span, format!("invalid number `{n}`"))),
            },
        },
        Value::SingleQuotedString(s) => SqliteValue::Text(s.clone()),
        Value::Boolean(b) => SqliteValue::Integer(i64::from(*b)),
        Value::Null => SqliteValue::Null,
        other => return Err(SqlError::at(span, format!("unsupported literal `{other}`"))),
    })
}

fn cast_type(dt: &ast::DataType, span: Span) -> Result<CastType, SqlError> {
    let text = dt.to_string().to_ascii_lowercase();
    let base = text.split(['(', ' ']).next().unwrap_or_default();
    Ok(match base {
        "text" => CastType::Text,
        "integer" | "int" => CastType::Integer,
        "real" => CastType::Real,
        "numeric" => CastType::Numeric,
        "blob" => CastType::Blob,
        _ => {
            return Err(SqlError::at(
                span,
                format!("unsupported CAST type `{dt}` (use text, integer, real, numeric or blob)"),
            ));
        }
    })
}

fn binary_op(op: &BinaryOperator) -> Option<BinOp> {
    Some(match op {
        BinaryOperator::Eq => BinOp::Eq,
        BinaryOperator::NotEq => BinOp::NotEq,
        BinaryOperator::Lt => BinOp::Lt,
        BinaryOperator::LtEq => BinOp::LtEq,
        BinaryOperator::Gt => BinOp::Gt,
        BinaryOperator::GtEq => BinOp::GtEq,
        BinaryOperator::Plus => BinOp::Add,
        BinaryOperator::Minus => BinOp::Sub,
        BinaryOperator::Multiply => BinOp::Mul,
        BinaryOperator::Divide => BinOp::Div,
        BinaryOperator::Modulo => BinOp::Mod,
        BinaryOperator::StringConcat => BinOp::Concat,
        BinaryOperator::Arrow => BinOp::Arrow,
        BinaryOperator::LongArrow => BinOp::LongArrow,
        _ => return None,
    })
}

fn boxed(e: Expr) -> Box<Expr> {
    Box::new(e)
}

/// The expression arguments of a plain function call (no DISTINCT, ORDER BY, FILTER, OVER…).
pub(crate) fn plain_args(f: &ast::Function, span: Span) -> Result<Vec<&ast::Expr>, SqlError> {
    if f.filter.is_some() || f.over.is_some() || !f.within_group.is_empty() {
        return Err(SqlError::at(
            span,
            "window and aggregate clauses are not supported",
        ));
    }
    if !matches!(f.parameters, FunctionArguments::None) {
        return Err(SqlError::at(span, "unsupported function call syntax"));
    }
    match &f.args {
        FunctionArguments::None => Ok(vec![]),
        FunctionArguments::Subquery(_) => Err(SqlError::at(span, "subqueries are not supported")),
        FunctionArguments::List(list) => {
            if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
                return Err(SqlError::at(span, "unsupported function call syntax"));
            }
            args_of(&list.args, span)
        }
    }
}

pub(crate) fn args_of(args: &[FunctionArg], span: Span) -> Result<Vec<&ast::Expr>, SqlError> {
    args.iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            _ => Err(SqlError::at(
                span,
                "only plain function arguments are supported",
            )),
        })
        .collect()
}

impl LowerScope {
    fn request_allowed(&self, span: Span) -> Result<(), SqlError> {
        if self.request {
            Ok(())
        } else {
            Err(SqlError::at(span, "request values are not allowed here"))
        }
    }

    fn column(&self, name: &str, span: Span) -> Result<Expr, SqlError> {
        if self.row_qualifiers.is_some() {
            self.columns.borrow_mut().push((name.into(), span));
            Ok(Expr::Column(name.into()))
        } else {
            Err(SqlError::at(
                span,
                format!("column `{name}` cannot be used here: this query reads no table"),
            ))
        }
    }

    fn compound(&self, parts: &[ast::Ident], span: Span) -> Result<Expr, SqlError> {
        let [qualifier, name] = parts else {
            return Err(SqlError::at(span, "unsupported multi-part identifier"));
        };
        let q = qualifier.value.as_str();
        let key: Box<str> = name.value.as_str().into();
        if q.eq_ignore_ascii_case("bucket") && qualifier.quote_style.is_none() {
            return if self.bucket {
                Ok(Expr::Bucket(key))
            } else {
                Err(SqlError::at(
                    span,
                    "bucket parameters can only be used in data queries",
                ))
            };
        }
        if q.eq_ignore_ascii_case("token_parameters") && qualifier.quote_style.is_none() {
            self.request_allowed(span)?;
            return Ok(Expr::Request(RequestValue::TokenParameter(key)));
        }
        if q.eq_ignore_ascii_case("user_parameters") && qualifier.quote_style.is_none() {
            self.request_allowed(span)?;
            return Ok(Expr::Request(RequestValue::UserParameter(key)));
        }
        match &self.row_qualifiers {
            Some(names) if names.iter().any(|n| n == q) => {
                self.columns.borrow_mut().push((key.clone(), name.span));
                Ok(Expr::Column(key))
            }
            _ => Err(SqlError::at(span, format!("unknown table `{q}`"))),
        }
    }

    fn function(&self, f: &ast::Function, span: Span) -> Result<Expr, SqlError> {
        let Some(name) = object_name_parts(&f.name) else {
            return Err(SqlError::at(span, "unsupported function name"));
        };
        match name.as_slice() {
            [ns, func] if ns.eq_ignore_ascii_case("request") => {
                self.request_allowed(span)?;
                let v = match func.to_ascii_lowercase().as_str() {
                    "user_id" => RequestValue::UserId,
                    "jwt" => RequestValue::Jwt,
                    "parameters" => RequestValue::Parameters,
                    _ => {
                        return Err(SqlError::at(
                            span,
                            format!(
                                "unknown request function `request.{func}()` (use user_id, jwt or parameters)"
                            ),
                        ));
                    }
                };
                if !plain_args(f, span)?.is_empty() {
                    return Err(SqlError::at(
                        span,
                        format!("`request.{func}()` takes no arguments"),
                    ));
                }
                Ok(Expr::Request(v))
            }
            [func] => {
                let Some(function) = Function::from_name(func) else {
                    return Err(SqlError::at(
                        span,
                        format!("unknown or unsupported function `{func}`"),
                    ));
                };
                let args = plain_args(f, span)?;
                if !function.arity().contains(&args.len()) {
                    return Err(SqlError::at(
                        span,
                        format!(
                            "wrong number of arguments for `{func}` ({} given)",
                            args.len()
                        ),
                    ));
                }
                let args = args
                    .into_iter()
                    .map(|a| self.lower(a))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Expr::Call(function, args))
            }
            _ => Err(SqlError::at(
                span,
                format!("unknown or unsupported function `{}`", name.join(".")),
            )),
        }
    }

    /// Lowers one expression: one arm per form of SQL expression; the larger forms have
    /// their own methods below. Nesting deeper than [`MAX_EXPR_DEPTH`] is an error.
    pub(crate) fn lower(&self, e: &ast::Expr) -> Result<Expr, SqlError> {
        let depth = self.depth.get();
        if depth >= MAX_EXPR_DEPTH {
            return Err(SqlError::at(
                e.span(),
                format!("expression nested more than {MAX_EXPR_DEPTH} levels deep"),
            ));
        }
        self.depth.set(depth + 1);
        let lowered = self.lower_form(e);
        self.depth.set(depth);
        lowered
    }

    /// [`LowerScope::lower`] within the depth limit.
    fn lower_form(&self, e: &ast::Expr) -> Result<Expr, SqlError> {
        use ast::Expr as E;
        let span = e.span();
        match e {
            E::Identifier(ident) => self.column(&ident.value, span),
            E::CompoundIdentifier(parts) => self.compound(parts, span),
            E::Value(v) => Ok(Expr::Literal(literal(&v.value, span)?)),
            E::Nested(inner) => self.lower(inner),
            E::Function(f) => self.function(f, span),
            E::BinaryOp { left, op, right } => self.binary(left, op, right, span),
            E::UnaryOp { op, expr } => self.unary(op, expr, span),
            E::IsNull(inner) => Ok(Expr::IsNull(boxed(self.lower(inner)?), false)),
            E::IsNotNull(inner) => Ok(Expr::IsNull(boxed(self.lower(inner)?), true)),
            E::IsTrue(inner) | E::IsNotFalse(inner) | E::IsFalse(inner) | E::IsNotTrue(inner) => {
                self.truth_test(e, inner)
            }
            E::IsDistinctFrom(a, b) => {
                Ok(Expr::Is(boxed(self.lower(a)?), boxed(self.lower(b)?), true))
            }
            E::IsNotDistinctFrom(a, b) => Ok(Expr::Is(
                boxed(self.lower(a)?),
                boxed(self.lower(b)?),
                false,
            )),
            E::In {
                expr,
                target,
                negated,
                ..
            } => self.in_target(expr, target, *negated, span),
            E::Cast {
                kind,
                expr,
                data_type,
                format,
            } => {
                if !matches!(kind, CastKind::Cast) || format.is_some() {
                    return unsupported(span, "this form of CAST");
                }
                Ok(Expr::Cast(
                    boxed(self.lower(expr)?),
                    cast_type(data_type, span)?,
                ))
            }
            E::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![self.lower(expr)?];
                match substring_from {
                    Some(from) => args.push(self.lower(from)?),
                    None => args.push(Expr::Literal(SqliteValue::Integer(1))),
                }
                if let Some(len) = substring_for {
                    args.push(self.lower(len)?);
                }
                Ok(Expr::Call(Function::Substring, args))
            }
            E::Case { .. } => unsupported(span, "CASE"),
            E::Like { .. } | E::ILike { .. } | E::SimilarTo { .. } | E::RLike { .. } => {
                unsupported(span, "LIKE")
            }
            E::Between { .. } => unsupported(span, "BETWEEN"),
            E::Subquery(_) | E::Exists { .. } => unsupported(span, "a subquery"),
            E::Wildcard(_) | E::QualifiedWildcard(..) => unsupported(span, "`*` here"),
            _ => unsupported(span, &format!("the expression `{e}`")),
        }
    }

    /// `left <op> right`.
    fn binary(
        &self,
        left: &ast::Expr,
        op: &BinaryOperator,
        right: &ast::Expr,
        span: Span,
    ) -> Result<Expr, SqlError> {
        let (l, r) = (self.lower(left)?, self.lower(right)?);
        match op {
            BinaryOperator::And => Ok(Expr::And(boxed(l), boxed(r))),
            BinaryOperator::Or => Ok(Expr::Or(boxed(l), boxed(r))),
            // SQLite: `IS` is `=` where NULLs compare equal (never NULL).
            BinaryOperator::Is => Ok(Expr::Is(boxed(l), boxed(r), false)),
            BinaryOperator::IsNot => Ok(Expr::Is(boxed(l), boxed(r), true)),
            other => match binary_op(other) {
                Some(op) => Ok(Expr::Binary(op, boxed(l), boxed(r))),
                None => unsupported(span, &format!("operator `{other}`")),
            },
        }
    }

    /// `<op> expr`; a minus on a numeric literal folds into the literal.
    fn unary(&self, op: &UnaryOperator, expr: &ast::Expr, span: Span) -> Result<Expr, SqlError> {
        let inner = self.lower(expr)?;
        match op {
            UnaryOperator::Not => Ok(Expr::Not(boxed(inner))),
            UnaryOperator::Minus => Ok(match inner {
                Expr::Literal(SqliteValue::Integer(i)) if i != i64::MIN => {
                    Expr::Literal(SqliteValue::Integer(-i))
                }
                Expr::Literal(SqliteValue::Real(f)) => Expr::Literal(SqliteValue::Real(-f)),
                other => Expr::Negate(boxed(other)),
            }),
            UnaryOperator::Plus => Ok(inner),
            other => unsupported(span, &format!("operator `{other}`")),
        }
    }

    /// `inner IS [NOT] TRUE|FALSE` (`e`): never NULL.
    fn truth_test(&self, e: &ast::Expr, inner: &ast::Expr) -> Result<Expr, SqlError> {
        use ast::Expr as E;
        let x = self.lower(inner)?;
        let truth = match e {
            E::IsTrue(_) | E::IsNotTrue(_) => Expr::Not(boxed(Expr::Not(boxed(x)))),
            _ => Expr::Not(boxed(x)),
        };
        let is = Expr::Call(
            Function::Ifnull,
            vec![truth, Expr::Literal(SqliteValue::Integer(0))],
        );
        Ok(match e {
            E::IsTrue(_) | E::IsFalse(_) => is,
            _ => Expr::Not(boxed(is)),
        })
    }

    /// `expr [NOT] IN <target>`: a list, or a JSON array (a column named like a table, or
    /// any expression; see `dialect.rs`).
    fn in_target(
        &self,
        expr: &ast::Expr,
        target: &InTarget,
        negated: bool,
        span: Span,
    ) -> Result<Expr, SqlError> {
        let x = self.lower(expr)?;
        match target {
            InTarget::List(list) => {
                let items = list
                    .iter()
                    .map(|i| self.lower(i))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Expr::InList(boxed(x), items, negated))
            }
            InTarget::Table { name, args: None } => {
                let parts: Vec<ast::Ident> = name
                    .0
                    .iter()
                    .filter_map(|p| match p {
                        ObjectNamePart::Identifier(i) => Some(i.clone()),
                        ObjectNamePart::Function(_) => None,
                    })
                    .collect();
                let array = match parts.as_slice() {
                    [single] => self.column(&single.value, span)?,
                    _ => self.compound(&parts, span)?,
                };
                Ok(Expr::InJson(boxed(x), boxed(array), negated))
            }
            // `x IN <expression>` (see `dialect.rs`): a JSON array.
            InTarget::Unnest(array) => {
                Ok(Expr::InJson(boxed(x), boxed(self.lower(array)?), negated))
            }
            InTarget::Subquery(_) => unsupported(span, "a subquery"),
            _ => unsupported(span, "this form of IN"),
        }
    }
}

fn unsupported<T>(span: Span, what: &str) -> Result<T, SqlError> {
    Err(SqlError::at(span, format!("{what} is not supported")))
}

/// Splits a condition into its top-level `AND` terms.
pub(crate) fn conjuncts(e: &ast::Expr) -> Vec<&ast::Expr> {
    match e {
        ast::Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut v = conjuncts(left);
            v.extend(conjuncts(right));
            v
        }
        ast::Expr::Nested(inner)
            if matches!(
                **inner,
                ast::Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(inner)
        }
        other => vec![other],
    }
}

/// Combines conditions with `AND`.
pub(crate) fn and_all(exprs: Vec<Expr>) -> Option<Expr> {
    exprs
        .into_iter()
        .reduce(|a, b| Expr::And(boxed(a), boxed(b)))
}
