//! Evaluation of the IR against a row and/or a request, with SQLite semantics: NULL
//! propagation, three-valued logic, affinity in comparisons, integer arithmetic with overflow
//! to real, integer division.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

use crate::cast::{bool_value, cast, to_numeric, truthy};
use crate::compare::compare;
use crate::functions::concat;
use crate::ir::{BinOp, Expr, RequestValue};
use crate::json_path::{self, json_to_sqlite};
use crate::{RequestParameters, Row, SqliteValue};

/// What an expression can read.
#[derive(Clone, Copy, Default)]
pub(crate) struct Scope<'a> {
    pub row: Option<&'a Row>,
    pub request: Option<&'a RequestParameters>,
}

const NULL: SqliteValue = SqliteValue::Null;

fn json_map_value(m: &serde_json::Map<String, Value>, key: &str) -> SqliteValue {
    m.get(key).map_or(SqliteValue::Null, json_to_sqlite)
}

fn request_value(r: &RequestParameters, v: &RequestValue) -> SqliteValue {
    match v {
        RequestValue::UserId => r.user_id.clone(),
        RequestValue::Jwt => SqliteValue::Text(Value::Object(r.jwt.clone()).to_string()),
        RequestValue::Parameters => {
            SqliteValue::Text(Value::Object(r.user_parameters.clone()).to_string())
        }
        RequestValue::TokenParameter(k) if &**k == "user_id" => r.user_id.clone(),
        RequestValue::TokenParameter(k) => json_map_value(&r.token_parameters, k),
        RequestValue::UserParameter(k) => json_map_value(&r.user_parameters, k),
    }
}

fn arithmetic(op: BinOp, a: &SqliteValue, b: &SqliteValue) -> SqliteValue {
    let (a, b) = (to_numeric(a), to_numeric(b));
    match (a, b) {
        (SqliteValue::Null, _) | (_, SqliteValue::Null) => SqliteValue::Null,
        (SqliteValue::Integer(x), SqliteValue::Integer(y)) => {
            let r = match op {
                BinOp::Add => x.checked_add(y),
                BinOp::Sub => x.checked_sub(y),
                BinOp::Mul => x.checked_mul(y),
                BinOp::Div => {
                    if y == 0 {
                        return SqliteValue::Null;
                    }
                    // i64::MIN / -1 overflows: SQLite gives a real then.
                    x.checked_div(y)
                }
                BinOp::Mod => {
                    if y == 0 {
                        return SqliteValue::Null;
                    }
                    return SqliteValue::Integer(x.checked_rem(y).unwrap_or(0));
                }
                _ => return SqliteValue::Null,
            };
            match r {
                Some(v) => SqliteValue::Integer(v),
                None => real_arithmetic(op, x as f64, y as f64),
            }
        }
        (x, y) => {
            let f = |v: SqliteValue| match v {
                SqliteValue::Integer(i) => i as f64,
                SqliteValue::Real(f) => f,
                _ => 0.0,
            };
            real_arithmetic(op, f(x), f(y))
        }
    }
}

fn real_arithmetic(op: BinOp, x: f64, y: f64) -> SqliteValue {
    let r = match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Div => {
            if y == 0.0 {
                return SqliteValue::Null;
            }
            x / y
        }
        BinOp::Mod => {
            let (xi, yi) = (x as i64, y as i64);
            if yi == 0 {
                return SqliteValue::Null;
            }
            return SqliteValue::Real(xi.checked_rem(yi).unwrap_or(0) as f64);
        }
        _ => return SqliteValue::Null,
    };
    if r.is_nan() {
        SqliteValue::Null
    } else {
        SqliteValue::Real(r)
    }
}

fn equal(a: &SqliteValue, b: &SqliteValue) -> bool {
    compare(
        a,
        crate::compare::Affinity::None,
        b,
        crate::compare::Affinity::None,
    ) == Some(Ordering::Equal)
}

impl Expr {
    /// Evaluates the expression. Columns missing from the row read as NULL.
    pub(crate) fn eval<'a>(&'a self, scope: &Scope<'a>) -> Cow<'a, SqliteValue> {
        match self {
            Expr::Literal(v) => Cow::Borrowed(v),
            Expr::Column(name) => match scope.row.and_then(|r| r.get(name)) {
                Some(v) => Cow::Borrowed(v),
                None => Cow::Borrowed(&NULL),
            },
            Expr::Request(r) => match scope.request {
                Some(req) => Cow::Owned(request_value(req, r)),
                None => Cow::Borrowed(&NULL),
            },
            Expr::Bucket(_) => Cow::Borrowed(&NULL),
            Expr::Not(e) => Cow::Owned(bool_value(truthy(&e.eval(scope)).map(|b| !b))),
            Expr::Negate(e) => Cow::Owned(match to_numeric(&e.eval(scope)) {
                SqliteValue::Integer(i) => match i.checked_neg() {
                    Some(n) => SqliteValue::Integer(n),
                    None => SqliteValue::Real(-(i as f64)),
                },
                SqliteValue::Real(f) => SqliteValue::Real(-f),
                _ => SqliteValue::Null,
            }),
            Expr::And(a, b) => {
                let x = truthy(&a.eval(scope));
                if x == Some(false) {
                    return Cow::Owned(bool_value(Some(false)));
                }
                let y = truthy(&b.eval(scope));
                Cow::Owned(bool_value(match (x, y) {
                    (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                }))
            }
            Expr::Or(a, b) => {
                let x = truthy(&a.eval(scope));
                if x == Some(true) {
                    return Cow::Owned(bool_value(Some(true)));
                }
                let y = truthy(&b.eval(scope));
                Cow::Owned(bool_value(match (x, y) {
                    (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                }))
            }
            Expr::IsNull(e, negated) => {
                Cow::Owned(bool_value(Some(e.eval(scope).is_null() != *negated)))
            }
            Expr::Is(a, b, negated) => {
                let (x, y) = (a.eval(scope), b.eval(scope));
                let same = match (x.is_null(), y.is_null()) {
                    (true, true) => true,
                    (false, false) => {
                        compare(&x, a.affinity(), &y, b.affinity()) == Some(Ordering::Equal)
                    }
                    _ => false,
                };
                Cow::Owned(bool_value(Some(same != *negated)))
            }
            Expr::InList(e, list, negated) => {
                let x = e.eval(scope);
                if x.is_null() {
                    return Cow::Borrowed(&NULL);
                }
                let mut saw_null = false;
                for item in list {
                    let y = item.eval(scope);
                    match compare(&x, e.affinity(), &y, item.affinity()) {
                        Some(Ordering::Equal) => return Cow::Owned(bool_value(Some(!*negated))),
                        None => saw_null = true,
                        _ => {}
                    }
                }
                Cow::Owned(if saw_null {
                    NULL
                } else {
                    bool_value(Some(*negated))
                })
            }
            Expr::InJson(e, array, negated) => {
                let x = e.eval(scope);
                let arr = array.eval(scope);
                if x.is_null() || arr.is_null() {
                    return Cow::Borrowed(&NULL);
                }
                let elements = json_path::array_elements(&arr).unwrap_or_default();
                let found = elements.iter().any(|y| equal(&x, y));
                Cow::Owned(bool_value(Some(found != *negated)))
            }
            Expr::Cast(e, ty) => Cow::Owned(cast(&e.eval(scope), *ty)),
            Expr::Binary(op, a, b) => {
                let (x, y) = (a.eval(scope), b.eval(scope));
                Cow::Owned(match op {
                    BinOp::Eq
                    | BinOp::NotEq
                    | BinOp::Lt
                    | BinOp::LtEq
                    | BinOp::Gt
                    | BinOp::GtEq => {
                        let ord = compare(&x, a.affinity(), &y, b.affinity());
                        bool_value(ord.map(|o| match op {
                            BinOp::Eq => o == Ordering::Equal,
                            BinOp::NotEq => o != Ordering::Equal,
                            BinOp::Lt => o == Ordering::Less,
                            BinOp::LtEq => o != Ordering::Greater,
                            BinOp::Gt => o == Ordering::Greater,
                            _ => o != Ordering::Less,
                        }))
                    }
                    BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => {
                        arithmetic(*op, &x, &y)
                    }
                    BinOp::Concat => concat(&x, &y),
                    BinOp::Arrow => json_path::arrow(&x, &y),
                    BinOp::LongArrow => json_path::long_arrow(&x, &y),
                })
            }
            Expr::Call(f, args) => {
                let values: Vec<SqliteValue> =
                    args.iter().map(|a| a.eval(scope).into_owned()).collect();
                Cow::Owned(f.call(&values))
            }
        }
    }

    /// Evaluates as a condition: only a true result passes (NULL does not).
    pub(crate) fn passes(&self, scope: &Scope<'_>) -> bool {
        truthy(&self.eval(scope)) == Some(true)
    }
}
