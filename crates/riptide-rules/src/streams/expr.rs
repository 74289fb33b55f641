//! Scalar expressions of stream queries → IR, as PowerSync's Sync Streams compiler reads them.
//!
//! Differences from classic rules: the request is read through `auth.*()`,
//! `subscription.*()` and `connection.*()`; `CASE`, `BETWEEN` and `::` casts are allowed; `NOT`
//! is two-valued (`NOT NULL` is true, as PowerSync evaluates it, so `x != 'a'` holds for a NULL
//! `x`); `IS TRUE`/`IS FALSE` compare with 1/0; `->`/`->>` take a literal key and follow
//! `fixed_json_extract`. Operators PowerSync's compiler accepts but its evaluator fails on for
//! every row (`%`, `&`, `|`, `<<`, `>>`) are refused here.

use sqlparser::ast::{
    self, BinaryOperator, CastKind, FunctionArguments, Spanned, UnaryOperator, Value,
};
use sqlparser::tokenizer::Span;

use super::query::{Builder, ident_name};
use super::sets::{Located, Scope};
use crate::SqliteValue;
use crate::cast::CastType;
use crate::functions::Function;
use crate::ir::{BinOp, Expr, RequestValue};

fn boxed(e: Expr) -> Box<Expr> {
    Box::new(e)
}

/// PowerSync's `NOT`: true unless its operand is true (`NOT NULL` is true).
pub(crate) fn ps_not(e: Expr) -> Expr {
    Expr::Not(boxed(Expr::Call(
        Function::Ifnull,
        vec![
            Expr::Not(boxed(Expr::Not(boxed(e)))),
            Expr::Literal(SqliteValue::Integer(0)),
        ],
    )))
}

/// `a = b`.
pub(crate) fn eq(a: Expr, b: Expr) -> Expr {
    Expr::Binary(BinOp::Eq, boxed(a), boxed(b))
}

/// Functions of stream queries with the argument counts PowerSync's compiler and evaluator
/// agree on.
fn stream_function(name: &str) -> Option<(Function, usize, usize)> {
    Some(match name {
        "hex" => (Function::Hex, 1, 1),
        "ifnull" => (Function::Ifnull, 2, 2),
        "iif" => (Function::Iif, 3, 3),
        "instr" => (Function::Instr, 2, 2),
        "length" => (Function::Length, 1, 1),
        "lower" => (Function::LowerUnicode, 1, 1),
        "upper" => (Function::UpperUnicode, 1, 1),
        "substring" => (Function::Substring, 2, 3),
        "typeof" => (Function::Typeof, 1, 1),
        "json_array_length" => (Function::JsonArrayLength, 1, 2),
        "json_keys" => (Function::JsonKeys, 1, 1),
        "unixepoch" => (Function::Unixepoch, 1, usize::MAX),
        "datetime" => (Function::Datetime, 1, usize::MAX),
        "base64" => (Function::Base64, 1, 1),
        "uuid_blob" => (Function::UuidBlob, 1, 1),
        "st_asgeojson" => (Function::StAsGeojson, 1, 1),
        "st_astext" => (Function::StAsText, 1, 1),
        "st_x" => (Function::StX, 1, 1),
        "st_y" => (Function::StY, 1, 1),
        _ => return None,
    })
}

fn literal(v: &Value) -> Option<SqliteValue> {
    Some(match v {
        Value::Number(n, _) => match n.parse::<i64>() {
            Ok(i) if !n.contains(['.', 'e', 'E']) => SqliteValue::Integer(i),
            _ => SqliteValue::Real(n.parse::<f64>().ok()?),
        },
        Value::SingleQuotedString(s) => SqliteValue::Text(s.clone()),
        Value::Boolean(b) => SqliteValue::Integer(i64::from(*b)),
        Value::Null => SqliteValue::Null,
        _ => return None,
    })
}

impl Builder<'_> {
    fn json_op(&self, long: bool) -> BinOp {
        match (long, self.fixed_json) {
            (false, false) => BinOp::Arrow,
            (true, false) => BinOp::LongArrow,
            (false, true) => BinOp::ArrowFixed,
            (true, true) => BinOp::LongArrowFixed,
        }
    }

    /// Lowers a scalar expression (a value, not a `WHERE` condition).
    pub(crate) fn value(&mut self, e: &ast::Expr, scope: &Scope<'_>) -> Result<Expr, Located> {
        self.nested(e, |b| b.value_form(e, scope))
    }

    fn value_form(&mut self, e: &ast::Expr, scope: &Scope<'_>) -> Result<Expr, Located> {
        use ast::Expr as E;
        let span = e.span();
        match e {
            E::Identifier(i) => self.resolve_column(None, i, scope, span),
            E::CompoundIdentifier(p) => match p.as_slice() {
                [q, c] => self.resolve_column(Some(q), c, scope, span),
                _ => self.err(span, "a column is `name` or `table.name`"),
            },
            E::Value(v) => match literal(&v.value) {
                Some(l) => Ok(Expr::Literal(l)),
                None => match &v.value {
                    Value::Placeholder(_) => self.err(
                        span,
                        "SQL parameters are not allowed: use auth.parameter(), subscription.parameter() or connection.parameter()",
                    ),
                    other => self.err(span, format!("unsupported literal `{other}`")),
                },
            },
            E::Nested(inner) => self.value(inner, scope),
            E::Function(f) => self.function(f, scope, span),
            E::BinaryOp { left, op, right } => self.binary(left, op, right, scope, span),
            E::UnaryOp { op, expr } => self.unary(op, expr, scope, span),
            E::IsNull(x) => Ok(self.is(x, SqliteValue::Null, false, scope)?),
            E::IsNotNull(x) => Ok(self.is(x, SqliteValue::Null, true, scope)?),
            E::IsTrue(x) => Ok(self.is(x, SqliteValue::Integer(1), false, scope)?),
            E::IsNotTrue(x) => Ok(self.is(x, SqliteValue::Integer(1), true, scope)?),
            E::IsFalse(x) => Ok(self.is(x, SqliteValue::Integer(0), false, scope)?),
            E::IsNotFalse(x) => Ok(self.is(x, SqliteValue::Integer(0), true, scope)?),
            E::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let x = self.value(expr, scope)?;
                let lo = self.value(low, scope)?;
                let hi = self.value(high, scope)?;
                let between = Expr::And(
                    boxed(Expr::Binary(BinOp::GtEq, boxed(x.clone()), boxed(lo))),
                    boxed(Expr::Binary(BinOp::LtEq, boxed(x), boxed(hi))),
                );
                Ok(if *negated { ps_not(between) } else { between })
            }
            E::Case {
                operand,
                conditions,
                else_result,
                ..
            } => self.case(operand.as_deref(), conditions, else_result.as_deref(), scope),
            E::Cast {
                kind,
                expr,
                data_type,
                format,
            } => self.cast(kind, expr, data_type, format.is_some(), scope, span),
            E::In {
                expr,
                target,
                negated,
                ..
            } => self.in_values(expr, target, *negated, scope, span),
            E::Like { .. } | E::ILike { .. } | E::SimilarTo { .. } | E::RLike { .. } => {
                self.err(span, "LIKE expressions are not supported (nor in PowerSync)")
            }
            E::Substring {
                expr,
                substring_from,
                substring_for,
                special: true,
                shorthand: false,
            } => {
                let mut args = vec![self.value(expr, scope)?];
                for a in [substring_from, substring_for].into_iter().flatten() {
                    args.push(self.value(a, scope)?);
                }
                if args.len() < 2 {
                    return self.err(span, "substring needs a start");
                }
                Ok(Expr::Call(Function::Substring, args))
            }
            E::Substring {
                shorthand: true, ..
            } => self.err(span, "unknown function `substr` (use substring)"),
            E::Substring { .. } => self.err(
                span,
                "`SUBSTRING(x FROM … FOR …)` is not supported: write substring(x, start, length)",
            ),
            E::IsDistinctFrom(..) | E::IsNotDistinctFrom(..) => {
                self.err(span, "IS [NOT] DISTINCT FROM is not supported")
            }
            E::Subquery(_) | E::Exists { .. } => self.err(
                span,
                "subqueries are only supported as `x IN (SELECT …)` in WHERE conditions",
            ),
            E::Wildcard(_) | E::QualifiedWildcard(..) => {
                self.err(span, "`*` is not supported here")
            }
            _ => self.err(span, format!("the expression `{e}` is not supported")),
        }
    }

    fn unary(
        &mut self,
        op: &UnaryOperator,
        expr: &ast::Expr,
        scope: &Scope<'_>,
        span: Span,
    ) -> Result<Expr, Located> {
        match op {
            UnaryOperator::Not => Ok(ps_not(self.value(expr, scope)?)),
            UnaryOperator::Plus => self.value(expr, scope),
            UnaryOperator::Minus => match expr {
                ast::Expr::Value(v) => match literal(&v.value) {
                    Some(SqliteValue::Integer(i)) => Ok(Expr::Literal(SqliteValue::Integer(-i))),
                    Some(SqliteValue::Real(r)) => Ok(Expr::Literal(SqliteValue::Real(-r))),
                    _ => self.err(span, "unary minus is only supported on numbers"),
                },
                _ => self.err(
                    span,
                    "unary minus is not supported (PowerSync refuses it): write `0 - x`",
                ),
            },
            other => self.err(span, format!("operator `{other}` is not supported")),
        }
    }

    fn case(
        &mut self,
        operand: Option<&ast::Expr>,
        conditions: &[ast::CaseWhen],
        else_result: Option<&ast::Expr>,
        scope: &Scope<'_>,
    ) -> Result<Expr, Located> {
        let operand = match operand {
            Some(o) => Some(boxed(self.value(o, scope)?)),
            None => None,
        };
        let mut whens = Vec::with_capacity(conditions.len());
        for c in conditions {
            whens.push((
                self.value(&c.condition, scope)?,
                self.value(&c.result, scope)?,
            ));
        }
        let otherwise = match else_result {
            Some(e) => Some(boxed(self.value(e, scope)?)),
            None => None,
        };
        Ok(Expr::Case {
            operand,
            whens,
            otherwise,
        })
    }

    fn cast(
        &mut self,
        kind: &CastKind,
        expr: &ast::Expr,
        data_type: &ast::DataType,
        with_format: bool,
        scope: &Scope<'_>,
        span: Span,
    ) -> Result<Expr, Located> {
        if !matches!(kind, CastKind::Cast | CastKind::DoubleColon) || with_format {
            return self.err(span, "this form of CAST is not supported");
        }
        let ty = match data_type.to_string().to_ascii_lowercase().as_str() {
            "text" => CastType::Text,
            "integer" => CastType::Integer,
            "real" => CastType::Real,
            "numeric" => CastType::Numeric,
            "blob" => CastType::Blob,
            _ => {
                return self.err(
                    span,
                    format!(
                        "invalid SQLite cast to `{data_type}` (use text, integer, real, numeric or blob)"
                    ),
                );
            }
        };
        Ok(Expr::Cast(boxed(self.value(expr, scope)?), ty))
    }

    /// `x [NOT] IN ARRAY[…]`/`ROW(…)`, and `x NOT IN <JSON array>` (the other forms of `IN`
    /// are joins, handled as conditions).
    fn in_values(
        &mut self,
        expr: &ast::Expr,
        target: &ast::InTarget,
        negated: bool,
        scope: &Scope<'_>,
        span: Span,
    ) -> Result<Expr, Located> {
        let x = self.value(expr, scope)?;
        let items: Vec<&ast::Expr> = match target {
            ast::InTarget::List(_) => {
                return self.err(
                    span,
                    "`x IN (a, b)` is not supported (nor in PowerSync): write `x IN ARRAY[a, b]`",
                );
            }
            ast::InTarget::Unnest(inner) => match &**inner {
                ast::Expr::Array(a) => a.elem.iter().collect(),
                ast::Expr::Function(f) if is_row(f) => match &f.args {
                    FunctionArguments::List(l) => crate::sql::lower::args_of(&l.args, span)
                        .map_err(|error| Located {
                            origin: self.origin.clone(),
                            error,
                        })?,
                    _ => return self.err(span, "unsupported ROW(…)"),
                },
                other if negated => {
                    let array = self.value(other, scope)?;
                    return Ok(ps_not(Expr::InJson(boxed(x), boxed(array), false)));
                }
                _ => {
                    return self.err(
                        span,
                        "`x IN <array>` is only supported as a WHERE condition",
                    );
                }
            },
            _ => {
                return self.err(
                    span,
                    "`IN (SELECT …)` is only supported as a WHERE condition",
                );
            }
        };
        let items = items
            .into_iter()
            .map(|i| self.value(i, scope))
            .collect::<Result<Vec<_>, _>>()?;
        let list = Expr::InList(boxed(x), items, false);
        Ok(if negated { ps_not(list) } else { list })
    }

    fn is(
        &mut self,
        x: &ast::Expr,
        value: SqliteValue,
        negated: bool,
        scope: &Scope<'_>,
    ) -> Result<Expr, Located> {
        let is = Expr::Is(
            boxed(self.value(x, scope)?),
            boxed(Expr::Literal(value)),
            false,
        );
        Ok(if negated { ps_not(is) } else { is })
    }

    fn binary(
        &mut self,
        left: &ast::Expr,
        op: &BinaryOperator,
        right: &ast::Expr,
        scope: &Scope<'_>,
        span: Span,
    ) -> Result<Expr, Located> {
        if matches!(op, BinaryOperator::Arrow | BinaryOperator::LongArrow) {
            let key = match right {
                ast::Expr::Value(v) => match literal(&v.value) {
                    Some(k @ (SqliteValue::Text(_) | SqliteValue::Integer(_))) => k,
                    _ => return self.err(right.span(), "`->`/`->>` need a string or integer key"),
                },
                _ => return self.err(right.span(), "`->`/`->>` need a string or integer key"),
            };
            let json = self.value(left, scope)?;
            let op = self.json_op(matches!(op, BinaryOperator::LongArrow));
            return Ok(Expr::Binary(op, boxed(json), boxed(Expr::Literal(key))));
        }
        let (l, r) = (self.value(left, scope)?, self.value(right, scope)?);
        let bin = |op| Ok(Expr::Binary(op, boxed(l.clone()), boxed(r.clone())));
        match op {
            BinaryOperator::And => Ok(Expr::And(boxed(l), boxed(r))),
            BinaryOperator::Or => Ok(Expr::Or(boxed(l), boxed(r))),
            BinaryOperator::Eq => bin(BinOp::Eq),
            BinaryOperator::NotEq => Ok(ps_not(eq(l, r))),
            BinaryOperator::Lt => bin(BinOp::Lt),
            BinaryOperator::LtEq => bin(BinOp::LtEq),
            BinaryOperator::Gt => bin(BinOp::Gt),
            BinaryOperator::GtEq => bin(BinOp::GtEq),
            BinaryOperator::Plus => bin(BinOp::Add),
            BinaryOperator::Minus => bin(BinOp::Sub),
            BinaryOperator::Multiply => bin(BinOp::Mul),
            BinaryOperator::Divide => bin(BinOp::Div),
            BinaryOperator::StringConcat => bin(BinOp::Concat),
            BinaryOperator::Modulo
            | BinaryOperator::BitwiseAnd
            | BinaryOperator::BitwiseOr
            | BinaryOperator::PGBitwiseShiftLeft
            | BinaryOperator::PGBitwiseShiftRight => self.err(
                span,
                format!(
                    "operator `{op}` is not supported: PowerSync's compiler accepts it but its evaluator fails on every row"
                ),
            ),
            BinaryOperator::PGOverlap => self.err(
                span,
                "`&&` is only supported as a WHERE condition",
            ),
            BinaryOperator::Is | BinaryOperator::IsNot => self.err(
                span,
                "`a IS b` is not supported: use IS NULL, IS TRUE or IS FALSE",
            ),
            other => self.err(span, format!("operator `{other}` is not supported")),
        }
    }

    fn function(
        &mut self,
        f: &ast::Function,
        scope: &Scope<'_>,
        span: Span,
    ) -> Result<Expr, Located> {
        let parts: Vec<&ast::Ident> = f
            .name
            .0
            .iter()
            .filter_map(|p| match p {
                ast::ObjectNamePart::Identifier(i) => Some(i),
                ast::ObjectNamePart::Function(_) => None,
            })
            .collect();
        let args = crate::sql::lower::plain_args(f, span).map_err(|error| Located {
            origin: self.origin.clone(),
            error,
        })?;
        match parts.as_slice() {
            [ns, name] => {
                self.request_function(&ident_name(ns), &ident_name(name), &args, scope, span)
            }
            [name] => {
                let name = ident_name(name);
                if matches!(name.as_str(), "random" | "randomblob") {
                    return self.err(
                        span,
                        "forbidden call: sync definitions must be deterministic",
                    );
                }
                if name == "json_extract" {
                    return self.json_extract(&args, scope, span);
                }
                let Some((function, min, max)) = stream_function(&name) else {
                    return self.err(span, format!("unknown function `{name}`"));
                };
                if args.len() < min || args.len() > max {
                    return self.err(
                        span,
                        format!(
                            "wrong number of arguments for `{name}` ({} given)",
                            args.len()
                        ),
                    );
                }
                let args = args
                    .into_iter()
                    .map(|a| self.value(a, scope))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(match (function, args.as_slice()) {
                    // With a path, PowerSync extracts first (under its path rules).
                    (Function::JsonArrayLength, [json, path]) => Expr::Call(
                        Function::JsonArrayLength,
                        vec![Expr::Binary(
                            self.json_op(false),
                            boxed(json.clone()),
                            boxed(path.clone()),
                        )],
                    ),
                    _ => Expr::Call(function, args),
                })
            }
            _ => self.err(span, "unsupported function name"),
        }
    }

    fn json_extract(
        &mut self,
        args: &[&ast::Expr],
        scope: &Scope<'_>,
        span: Span,
    ) -> Result<Expr, Located> {
        let [json, path] = args else {
            return self.err(
                span,
                "json_extract takes a value and one path here (PowerSync ignores further paths)",
            );
        };
        match path {
            ast::Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(p) if p.starts_with('$') => {
                    let json = self.value(json, scope)?;
                    Ok(Expr::Binary(
                        self.json_op(true),
                        boxed(json),
                        boxed(Expr::Literal(SqliteValue::Text(p.clone()))),
                    ))
                }
                _ => self.err(path.span(), "json_extract needs a path starting with `$`"),
            },
            _ => self.err(
                path.span(),
                "json_extract needs a literal path starting with `$`",
            ),
        }
    }

    fn request_function(
        &mut self,
        ns: &str,
        name: &str,
        args: &[&ast::Expr],
        scope: &Scope<'_>,
        span: Span,
    ) -> Result<Expr, Located> {
        let all = match ns {
            "auth" => RequestValue::Jwt,
            "subscription" => RequestValue::SubscriptionParameters,
            "connection" => RequestValue::Parameters,
            _ => {
                return self.err(
                    span,
                    format!(
                        "unknown function `{ns}.{name}` (request values are auth.*, subscription.* and connection.*)"
                    ),
                );
            }
        };
        match name {
            "parameters" if args.is_empty() => Ok(Expr::Request(all)),
            "parameter" => {
                let [key] = args else {
                    return self.err(span, format!("`{ns}.parameter()` takes exactly one argument"));
                };
                if ns == "subscription"
                    && let ast::Expr::Value(v) = key
                    && let Value::SingleQuotedString(k) = &v.value
                {
                    self.subscription_parameters.insert(k.clone());
                }
                let key = self.value(key, scope)?;
                Ok(Expr::Binary(
                    self.json_op(true),
                    boxed(Expr::Request(all)),
                    boxed(key),
                ))
            }
            "user_id" if ns == "auth" && args.is_empty() => Ok(Expr::Binary(
                self.json_op(true),
                boxed(Expr::Request(RequestValue::Jwt)),
                boxed(Expr::Literal(SqliteValue::Text("$.sub".into()))),
            )),
            "user_id" if ns == "auth" => self.err(span, "`auth.user_id()` takes no arguments"),
            "user_id" => self.err(span, "`user_id()` is only available as auth.user_id()"),
            "parameters" => self.err(span, format!("`{ns}.parameters()` takes no arguments")),
            _ => self.err(
                span,
                format!("unknown request function `{ns}.{name}()` (use parameter, parameters or auth.user_id)"),
            ),
        }
    }
}

fn is_row(f: &ast::Function) -> bool {
    matches!(f.name.0.as_slice(), [ast::ObjectNamePart::Identifier(i)] if i.value.eq_ignore_ascii_case("row"))
}
