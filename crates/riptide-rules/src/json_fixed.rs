//! JSON extraction as PowerSync evaluates it under the `fixed_json_extract` compatibility option
//! (on from edition 2, so always for Sync Streams): `->`, `->>` and `json_each`.
//!
//! A path is not SQLite's JSON path: text starting with `$` is split on `.` (the `$` dropped),
//! other text is a single key, so `->> 'a.b'` reads the key `a.b` and `->> '$.a.b'` descends.
//! A component reads an object's key or, when it is a canonical index (`0`, `12`), an array's
//! element. `->` gives the JSON text of what it finds (`null` for a JSON null, SQL NULL when
//! nothing is there); `->>` gives its SQL value (booleans as 1/0, a JSON null as SQL NULL,
//! objects and arrays as JSON text).

use serde_json::Value;

use crate::SqliteValue;
use crate::cast::to_text;

fn components(path: &str) -> Vec<&str> {
    match path.strip_prefix('$') {
        Some(rest) => rest.split('.').skip(1).collect(),
        None => vec![path],
    }
}

/// A JavaScript array index: `0` or digits without a leading zero.
fn array_index(key: &str) -> Option<usize> {
    let canonical = key == "0"
        || (!key.is_empty() && !key.starts_with('0') && key.bytes().all(|b| b.is_ascii_digit()));
    if canonical { key.parse().ok() } else { None }
}

fn find<'v>(doc: &'v Value, path: &SqliteValue) -> Option<&'v Value> {
    let path = to_text(path)?;
    let mut v = doc;
    for c in components(&path) {
        v = match v {
            Value::Object(m) => m.get(c)?,
            Value::Array(a) => a.get(array_index(c)?)?,
            _ => return None,
        };
    }
    Some(v)
}

fn parse(json: &SqliteValue) -> Option<Value> {
    serde_json::from_str(&to_text(json)?).ok()
}

/// A JSON value as the SQL value `->>` and `json_each` give.
pub(crate) fn to_sql(v: &Value) -> SqliteValue {
    match v {
        Value::Null => SqliteValue::Null,
        Value::Bool(b) => SqliteValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqliteValue::Integer(i),
            None => SqliteValue::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => SqliteValue::Text(s.clone()),
        Value::Array(_) | Value::Object(_) => SqliteValue::Text(v.to_string()),
    }
}

/// `json -> path`.
pub(crate) fn arrow(json: &SqliteValue, path: &SqliteValue) -> SqliteValue {
    if path.is_null() {
        return SqliteValue::Null;
    }
    let Some(doc) = parse(json) else {
        return SqliteValue::Null;
    };
    find(&doc, path).map_or(SqliteValue::Null, |v| SqliteValue::Text(v.to_string()))
}

/// `json ->> path`.
pub(crate) fn long_arrow(json: &SqliteValue, path: &SqliteValue) -> SqliteValue {
    if path.is_null() {
        return SqliteValue::Null;
    }
    let Some(doc) = parse(json) else {
        return SqliteValue::Null;
    };
    find(&doc, path).map_or(SqliteValue::Null, to_sql)
}

/// Switches `->`/`->>` in `e` to their `fixed_json_extract` forms (classic rules under the
/// option).
pub(crate) fn fix_operators(e: &mut crate::ir::Expr) {
    use crate::ir::{BinOp, Expr};
    match e {
        Expr::Binary(op, a, b) => {
            *op = match *op {
                BinOp::Arrow => BinOp::ArrowFixed,
                BinOp::LongArrow => BinOp::LongArrowFixed,
                other => other,
            };
            fix_operators(a);
            fix_operators(b);
        }
        Expr::Literal(_) | Expr::Column(_) | Expr::Request(_) | Expr::Bucket(_) => {}
        Expr::Not(x) | Expr::Negate(x) | Expr::IsNull(x, _) | Expr::Cast(x, _) => {
            fix_operators(x);
        }
        Expr::And(a, b) | Expr::Or(a, b) | Expr::Is(a, b, _) | Expr::InJson(a, b, _) => {
            fix_operators(a);
            fix_operators(b);
        }
        Expr::InList(x, items, _) => {
            fix_operators(x);
            items.iter_mut().for_each(fix_operators);
        }
        Expr::Call(_, args) => args.iter_mut().for_each(fix_operators),
        Expr::Case {
            operand,
            whens,
            otherwise,
        } => {
            if let Some(o) = operand {
                fix_operators(o);
            }
            for (w, t) in whens {
                fix_operators(w);
                fix_operators(t);
            }
            if let Some(o) = otherwise {
                fix_operators(o);
            }
        }
    }
}

/// Why `json_each` cannot expand a value (PowerSync fails the evaluation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonEachError {
    #[error("json_each needs JSON text, not a number or blob")]
    NotText,
    #[error("json_each needs valid JSON text")]
    InvalidJson,
}

/// `json_each(value)`: `(key, value)` rows: an array's elements (keys 0, 1, …), an object's
/// members (keys their names), a scalar as one row with a NULL key; none for NULL.
pub(crate) fn json_each(
    value: &SqliteValue,
) -> Result<Vec<(SqliteValue, SqliteValue)>, JsonEachError> {
    let text = match value {
        SqliteValue::Null => return Ok(Vec::new()),
        SqliteValue::Text(t) => t,
        _ => return Err(JsonEachError::NotText),
    };
    let doc: Value = serde_json::from_str(text).map_err(|_| JsonEachError::InvalidJson)?;
    Ok(match doc {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (SqliteValue::Integer(i as i64), to_sql(v)))
            .collect(),
        Value::Object(members) => members
            .iter()
            .map(|(k, v)| (SqliteValue::Text(k.clone()), to_sql(v)))
            .collect(),
        scalar => vec![(SqliteValue::Null, to_sql(&scalar))],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> SqliteValue {
        SqliteValue::Text(s.into())
    }

    #[test]
    fn paths_read_keys_not_sqlite_paths() {
        let doc = t(r#"{"a":{"b":[10,{"c":null}]},"a.b":"dotted","t":true,"n":null}"#);
        let cases: Vec<(&str, SqliteValue, SqliteValue)> = vec![
            ("a.b", t("dotted"), t("\"dotted\"")),
            ("$.a.b", t("[10,{\"c\":null}]"), t("[10,{\"c\":null}]")),
            ("$.a.b.0", SqliteValue::Integer(10), t("10")),
            ("$.a.b.01", SqliteValue::Null, SqliteValue::Null),
            ("$.a.b[0]", SqliteValue::Null, SqliteValue::Null),
            ("$.a.b.1.c", SqliteValue::Null, t("null")),
            ("t", SqliteValue::Integer(1), t("true")),
            ("n", SqliteValue::Null, t("null")),
            ("missing", SqliteValue::Null, SqliteValue::Null),
            ("$", t(&doc_text(&doc)), t(&doc_text(&doc))),
        ];
        for (path, text, json) in cases {
            assert_eq!(long_arrow(&doc, &t(path)), text, "->> {path}");
            assert_eq!(arrow(&doc, &t(path)), json, "-> {path}");
        }
        assert_eq!(
            long_arrow(&t("[5,6]"), &SqliteValue::Integer(1)),
            SqliteValue::Integer(6)
        );
        assert_eq!(long_arrow(&t("not json"), &t("a")), SqliteValue::Null);
        assert_eq!(long_arrow(&doc, &SqliteValue::Null), SqliteValue::Null);
    }

    fn doc_text(v: &SqliteValue) -> String {
        match v {
            SqliteValue::Text(s) => serde_json::from_str::<Value>(s)
                .map(|v| v.to_string())
                .unwrap_or_default(),
            _ => String::new(),
        }
    }

    #[test]
    fn classic_rules_follow_fixed_json_extract() {
        let rules = |config: &str| {
            let yaml = format!(
                "{config}bucket_definitions:\n  b:\n    data:\n      - SELECT id, doc ->> 'a.b' AS v FROM t\n"
            );
            match crate::SyncRules::parse(&yaml) {
                Ok(r) => r,
                Err(e) => panic!("{e}"),
            }
        };
        let mut row = crate::Row::new();
        row.insert("id", t("1"));
        row.insert("doc", t(r#"{"a.b":"key","a":{"b":"path"}}"#));
        let table = crate::TableRef::new("public", "t");
        let data = |r: crate::SyncRules| r.evaluate_row(&table, &row).rows[0].data.clone();
        assert_eq!(data(rules("")), r#"{"id":"1","v":"path"}"#);
        assert_eq!(
            data(rules("config:\n  edition: 2\n")),
            r#"{"id":"1","v":"key"}"#
        );
        assert_eq!(
            data(rules("config:\n  fixed_json_extract: true\n")),
            r#"{"id":"1","v":"key"}"#
        );
    }

    #[test]
    fn json_each_rows() {
        assert_eq!(
            json_each(&t(r#"[1,"a",null,true,[2]]"#)),
            Ok(vec![
                (SqliteValue::Integer(0), SqliteValue::Integer(1)),
                (SqliteValue::Integer(1), t("a")),
                (SqliteValue::Integer(2), SqliteValue::Null),
                (SqliteValue::Integer(3), SqliteValue::Integer(1)),
                (SqliteValue::Integer(4), t("[2]")),
            ])
        );
        assert_eq!(json_each(&t(r#"{"k":"v"}"#)), Ok(vec![(t("k"), t("v"))]));
        assert_eq!(
            json_each(&t("7")),
            Ok(vec![(SqliteValue::Null, SqliteValue::Integer(7))])
        );
        assert_eq!(json_each(&SqliteValue::Null), Ok(vec![]));
        assert_eq!(
            json_each(&SqliteValue::Integer(7)),
            Err(JsonEachError::NotText)
        );
        assert_eq!(json_each(&t("[")), Err(JsonEachError::InvalidJson));
    }
}
