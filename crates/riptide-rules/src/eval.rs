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
        RequestValue::SubscriptionParameters => {
            r.subscription.as_ref().map_or(SqliteValue::Null, |m| {
                SqliteValue::Text(Value::Object(m.clone()).to_string())
            })
        }
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

/// `CASE [operand] WHEN … THEN … [ELSE …] END`: the first `WHEN` equal to the operand (or
/// true, without one) gives its `THEN`.
fn eval_case<'a>(
    operand: Option<&'a Expr>,
    whens: &'a [(Expr, Expr)],
    otherwise: Option<&'a Expr>,
    scope: &Scope<'a>,
) -> Cow<'a, SqliteValue> {
    let subject = operand.map(|o| o.eval(scope));
    for (when, then) in whens {
        let w = when.eval(scope);
        let hit = match &subject {
            Some(s) => !s.is_null() && !w.is_null() && equal(s, &w),
            None => truthy(&w) == Some(true),
        };
        if hit {
            return then.eval(scope);
        }
    }
    match otherwise {
        Some(e) => e.eval(scope),
        None => Cow::Borrowed(&NULL),
    }
}

/// `e [NOT] IN (list)`: NULL when `e` is NULL, or when no item matched and one compared as
/// NULL.
fn in_list(e: &Expr, list: &[Expr], negated: bool, scope: &Scope<'_>) -> SqliteValue {
    let x = e.eval(scope);
    if x.is_null() {
        return NULL;
    }
    let mut saw_null = false;
    for item in list {
        let y = item.eval(scope);
        match compare(&x, e.affinity(), &y, item.affinity()) {
            Some(Ordering::Equal) => return bool_value(Some(!negated)),
            None => saw_null = true,
            _ => {}
        }
    }
    if saw_null {
        NULL
    } else {
        bool_value(Some(negated))
    }
}

/// `a <op> b`: comparisons with the operands' affinities, arithmetic, concatenation and the
/// JSON arrows.
fn binary(op: BinOp, a: &Expr, b: &Expr, scope: &Scope<'_>) -> SqliteValue {
    let (x, y) = (a.eval(scope), b.eval(scope));
    match op {
        BinOp::Eq | BinOp::NotEq | BinOp::Lt | BinOp::LtEq | BinOp::Gt | BinOp::GtEq => {
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
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => arithmetic(op, &x, &y),
        BinOp::Concat => concat(&x, &y),
        BinOp::Arrow => json_path::arrow(&x, &y),
        BinOp::LongArrow => json_path::long_arrow(&x, &y),
        BinOp::ArrowFixed => crate::json_fixed::arrow(&x, &y),
        BinOp::LongArrowFixed => crate::json_fixed::long_arrow(&x, &y),
    }
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
            Expr::InList(e, list, negated) => Cow::Owned(in_list(e, list, *negated, scope)),
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
            Expr::Binary(op, a, b) => Cow::Owned(binary(*op, a, b, scope)),
            Expr::Call(f, args) => {
                let values: Vec<SqliteValue> =
                    args.iter().map(|a| a.eval(scope).into_owned()).collect();
                Cow::Owned(f.call(&values))
            }
            Expr::Case {
                operand,
                whens,
                otherwise,
            } => eval_case(operand.as_deref(), whens, otherwise.as_deref(), scope),
        }
    }

    /// Evaluates as a condition: only a true result passes (NULL does not).
    pub(crate) fn passes(&self, scope: &Scope<'_>) -> bool {
        truthy(&self.eval(scope)) == Some(true)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;
    use sqlparser::parser::Parser;

    use super::*;
    use crate::sql::lower::LowerScope;

    fn lower(sql: &str) -> Expr {
        let parsed = Parser::new(&crate::sql::dialect::RulesDialect::default())
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_expr());
        let parsed = match parsed {
            Ok(e) => e,
            Err(e) => panic!("{sql}: {e}"),
        };
        let scope = LowerScope {
            row_qualifiers: Some(vec!["t".into()]),
            request: true,
            bucket: false,
            columns: Default::default(),
            depth: Default::default(),
        };
        match scope.lower(&parsed) {
            Ok(e) => e,
            Err(e) => panic!("{sql}: {e:?}"),
        }
    }

    fn eval_sql(sql: &str) -> SqliteValue {
        let mut row = Row::new();
        row.insert("n", SqliteValue::Integer(7));
        row.insert("s", SqliteValue::Text("Hi".into()));
        row.insert("nul", SqliteValue::Null);
        row.insert(
            "doc",
            SqliteValue::Text(r#"{"a":{"b":[10,20]},"t":true}"#.into()),
        );
        let jwt = json!({"sub": "u1", "org": "o1", "parameters": {"team": 4}});
        let serde_json::Value::Object(jwt) = jwt else {
            unreachable!("object literal")
        };
        let request = RequestParameters::new(jwt, serde_json::Map::new());
        let e = lower(sql);
        let scope = Scope {
            row: Some(&row),
            request: Some(&request),
        };
        e.eval(&scope).into_owned()
    }

    #[test]
    fn sql_expressions() {
        use SqliteValue::{Integer as I, Null, Real as R};
        let t = |s: &str| SqliteValue::Text(s.into());
        let cases: Vec<(&str, SqliteValue)> = vec![
            ("7 / 2", I(3)),
            ("-7 / 2", I(-3)),
            ("7.0 / 2", R(3.5)),
            ("1 / 0", Null),
            ("7 % 3", I(1)),
            ("9223372036854775807 + 1", R(9.223_372_036_854_776e18)),
            ("'3' + 4", I(7)),
            ("'abc' + 1", I(1)),
            ("n * 2 - 1", I(13)),
            ("s || '!' || n", t("Hi!7")),
            ("s || nul", Null),
            ("nul + 1", Null),
            ("nul = nul", Null),
            ("nul IS NULL", I(1)),
            ("n IS NOT NULL", I(1)),
            ("nul IS NOT DISTINCT FROM NULL", I(1)),
            ("n IS DISTINCT FROM 7", I(0)),
            ("1 = 1 AND nul", Null),
            ("0 AND nul", I(0)),
            ("1 OR nul", I(1)),
            ("NOT nul", Null),
            ("NOT 0", I(1)),
            ("n IN (1, 7)", I(1)),
            ("n IN (1, nul)", Null),
            ("n NOT IN (1, 2)", I(1)),
            ("n = '7'", I(0)),
            ("CAST(n AS text) = '7'", I(1)),
            ("CAST('7' AS integer) = n", I(1)),
            ("CAST(n AS real)", R(7.0)),
            ("CAST('1.50' AS numeric)", R(1.5)),
            ("CAST(s AS blob)", SqliteValue::Blob(b"Hi".to_vec())),
            (
                "n > 5 AND n <= 7 AND n <> 8 AND n != 9 AND n >= 7 AND n < 8",
                I(1),
            ),
            ("'a' < 'b'", I(1)),
            ("1 < 'a'", I(1)),
            ("true", I(1)),
            ("false = 0", I(1)),
            ("1.5 + 1", R(2.5)),
            ("-n", I(-7)),
            ("doc -> 'a'", t(r#"{"b":[10,20]}"#)),
            ("doc ->> 'a.b'", t("[10,20]")),
            ("doc ->> '$.a.b[1]'", I(20)),
            ("doc ->> 't'", I(1)),
            ("json_extract(doc, '$.a.b[0]')", I(10)),
            ("json_array_length(doc, '$.a.b')", I(2)),
            ("json_keys(doc)", t(r#"["a","t"]"#)),
            ("json_valid(doc)", I(1)),
            ("upper(s) || lower(s)", t("HIhi")),
            ("substring(s, 2)", t("i")),
            ("substring(s FROM 1 FOR 1)", t("H")),
            ("substr(s, 1, 1)", t("H")),
            ("length(s)", I(2)),
            ("hex(s)", t("4869")),
            ("base64(s)", t("SGk=")),
            (
                "typeof(nul) || typeof(n) || typeof(1.0) || typeof(s)",
                t("nullintegerrealtext"),
            ),
            ("ifnull(nul, 'x')", t("x")),
            ("iif(n > 1, 'big', 'small')", t("big")),
            ("instr(s, 'i')", I(2)),
            ("unixepoch('1970-01-01 00:01:00')", I(60)),
            ("datetime(0, 'unixepoch')", t("1970-01-01 00:00:00")),
            (
                "datetime(86400 * n, 'unixepoch', '+1 day', 'start of month')",
                t("1970-01-01 00:00:00"),
            ),
            ("unixepoch('1970-01-01', '+' || n || ' days')", I(604_800)),
            (
                "datetime(1.5, 'unixepoch', 'subsec')",
                t("1970-01-01 00:00:01.500"),
            ),
            ("unixepoch(1.25, 'unixepoch', 'subsec')", R(1.25)),
            (
                "st_x('0101000000000000000000F03F0000000000000040') + st_y('0101000000000000000000F03F0000000000000040')",
                R(3.0),
            ),
            (
                "st_astext('0101000000000000000000F03F0000000000000040')",
                t("POINT(1 2)"),
            ),
            (
                "st_asgeojson('0101000000000000000000F03F0000000000000040') ->> '$.coordinates[1]'",
                I(2),
            ),
            ("st_astext(s)", Null),
            ("request.user_id()", t("u1")),
            ("request.jwt() ->> 'org'", t("o1")),
            ("token_parameters.team", I(4)),
            ("token_parameters.user_id", t("u1")),
            ("user_parameters.missing", Null),
            ("request.parameters()", t("{}")),
            ("t.n + n", I(14)),
            ("n IS 7", I(1)),
            ("n IS NOT 7", I(0)),
            ("nul IS 7", I(0)),
            ("nul IS NOT 7", I(1)),
            ("nul IS nul", I(1)),
            ("n IS '7'", I(0)),
            ("CAST(n AS text) IS '7'", I(1)),
            ("s IS 'Hi' AND n IS NOT nul", I(1)),
            ("n + 1 IS 8", I(1)),
            ("10 IN doc -> 'a' -> 'b'", I(1)),
            ("30 IN doc -> 'a' -> 'b'", I(0)),
            ("30 NOT IN doc ->> '$.a.b'", I(1)),
            ("10 IN json_extract(doc, '$.a.b') AND n IN (7)", I(1)),
            ("'10' IN doc -> 'a' -> 'b'", I(0)),
            ("nul IN doc -> 'a' -> 'b'", Null),
            ("1 IN doc -> 'missing'", Null),
            ("4 IN token_parameters.team", I(0)),
            ("'x' IN request.parameters() -> 'ids'", Null),
            ("n IS TRUE", I(1)),
            ("nul IS FALSE", I(0)),
            ("nul IS NOT TRUE", I(1)),
        ];
        let mut failures = Vec::new();
        for (sql, expected) in cases {
            let got = eval_sql(sql);
            if got != expected {
                failures.push(format!("{sql}: expected {expected:?}, got {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    fn value() -> impl Strategy<Value = SqliteValue> {
        prop_oneof![
            Just(SqliteValue::Null),
            any::<i64>().prop_map(SqliteValue::Integer),
            (-3i64..3).prop_map(SqliteValue::Integer),
            any::<f64>()
                .prop_filter("not NaN", |f| !f.is_nan())
                .prop_map(SqliteValue::Real),
            "[a-c0-9.]{0,4}".prop_map(SqliteValue::Text),
            proptest::collection::vec(any::<u8>(), 0..3).prop_map(SqliteValue::Blob),
        ]
    }

    fn lit(v: &SqliteValue) -> Box<Expr> {
        Box::new(Expr::Literal(v.clone()))
    }

    fn eval_const(e: &Expr) -> SqliteValue {
        e.eval(&Scope::default()).into_owned()
    }

    const OPS: [BinOp; 11] = [
        BinOp::Eq,
        BinOp::NotEq,
        BinOp::Lt,
        BinOp::LtEq,
        BinOp::Gt,
        BinOp::GtEq,
        BinOp::Add,
        BinOp::Sub,
        BinOp::Mul,
        BinOp::Div,
        BinOp::Concat,
    ];

    proptest! {
        #[test]
        fn null_propagates_through_operators(v in value(), op in 0..OPS.len()) {
            let op = OPS[op];
            let null = SqliteValue::Null;
            prop_assert_eq!(eval_const(&Expr::Binary(op, lit(&null), lit(&v))), SqliteValue::Null);
            prop_assert_eq!(eval_const(&Expr::Binary(op, lit(&v), lit(&null))), SqliteValue::Null);
            let f = crate::functions::Function::Upper;
            prop_assert_eq!(eval_const(&Expr::Call(f, vec![Expr::Literal(null)])), SqliteValue::Null);
        }

        #[test]
        fn comparisons_are_symmetric_and_total(a in value(), b in value()) {
            let cmp = |op, x: &SqliteValue, y: &SqliteValue| eval_const(&Expr::Binary(op, lit(x), lit(y)));
            prop_assert_eq!(cmp(BinOp::Eq, &a, &b), cmp(BinOp::Eq, &b, &a));
            prop_assert_eq!(cmp(BinOp::Lt, &a, &b), cmp(BinOp::Gt, &b, &a));
            prop_assert_eq!(cmp(BinOp::LtEq, &a, &b), cmp(BinOp::GtEq, &b, &a));
            if !a.is_null() && !b.is_null() {
                let truths = [BinOp::Lt, BinOp::Eq, BinOp::Gt]
                    .iter()
                    .filter(|op| cmp(**op, &a, &b) == SqliteValue::Integer(1))
                    .count();
                prop_assert_eq!(truths, 1);
                prop_assert_eq!(cmp(BinOp::Eq, &a, &a), SqliteValue::Integer(1));
            }
        }

        #[test]
        fn logic_is_commutative_and_three_valued(a in value(), b in value()) {
            let and = |x: &SqliteValue, y: &SqliteValue| eval_const(&Expr::And(lit(x), lit(y)));
            let or = |x: &SqliteValue, y: &SqliteValue| eval_const(&Expr::Or(lit(x), lit(y)));
            prop_assert_eq!(and(&a, &b), and(&b, &a));
            prop_assert_eq!(or(&a, &b), or(&b, &a));
            // De Morgan holds in three-valued logic.
            let not = |e: Expr| Expr::Not(Box::new(e));
            let lhs = eval_const(&not(Expr::And(lit(&a), lit(&b))));
            let rhs = eval_const(&Expr::Or(Box::new(not(Expr::Literal(a.clone()))), Box::new(not(Expr::Literal(b.clone())))));
            prop_assert_eq!(lhs, rhs);
            // IS never yields NULL.
            prop_assert!(!eval_const(&Expr::Is(lit(&a), lit(&b), false)).is_null());
        }

        #[test]
        fn arithmetic_never_panics(a in value(), b in value(), op in 6..OPS.len()) {
            let _ = eval_const(&Expr::Binary(OPS[op], lit(&a), lit(&b)));
            let _ = eval_const(&Expr::Binary(BinOp::Mod, lit(&a), lit(&b)));
            let _ = eval_const(&Expr::Negate(lit(&a)));
        }
    }
}
