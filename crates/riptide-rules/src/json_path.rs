//! JSON on text values: `->`, `->>`, `json_extract` paths, and JSON ↔ SQLite value mapping.

use serde_json::Value;

use crate::SqliteValue;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(i64),
    /// `[#-N]`: N from the end.
    FromEnd(i64),
}

/// Parses a SQLite JSON path (`$`, `$.a.b`, `$.a[0]`, `$."a b"`, `$[#-1]`).
fn parse_path(path: &str) -> Option<Vec<Step>> {
    let rest = path.strip_prefix('$')?;
    let mut steps = Vec::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let mut key = String::new();
                if chars.peek() == Some(&'"') {
                    chars.next();
                    loop {
                        match chars.next() {
                            Some('"') => break,
                            Some(c) => key.push(c),
                            None => return None,
                        }
                    }
                } else {
                    while let Some(&c) = chars.peek() {
                        if c == '.' || c == '[' {
                            break;
                        }
                        key.push(c);
                        chars.next();
                    }
                }
                steps.push(Step::Key(key));
            }
            '[' => {
                let mut inner = String::new();
                loop {
                    match chars.next() {
                        Some(']') => break,
                        Some(c) => inner.push(c),
                        None => return None,
                    }
                }
                let inner = inner.trim();
                if let Some(n) = inner.strip_prefix("#-") {
                    steps.push(Step::FromEnd(n.trim().parse().ok()?));
                } else {
                    steps.push(Step::Index(inner.parse().ok()?));
                }
            }
            _ => return None,
        }
    }
    Some(steps)
}

/// The path an operand of `->`/`->>` designates: text starting with `$` is a full path, other
/// text `t` is `$.t` (so `'a.b'` descends, as the classic PowerSync rules do), integers index
/// arrays.
fn operand_path(op: &SqliteValue) -> Option<Vec<Step>> {
    match op {
        SqliteValue::Text(s) if s.starts_with('$') => parse_path(s),
        SqliteValue::Text(s) => parse_path(&format!("$.{s}")),
        SqliteValue::Integer(i) => Some(vec![Step::Index(*i)]),
        _ => None,
    }
}

fn walk<'a>(mut v: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    for step in steps {
        v = match (step, v) {
            (Step::Key(k), Value::Object(m)) => m.get(k)?,
            (Step::Index(i), Value::Array(a)) => a.get(usize::try_from(*i).ok()?)?,
            (Step::FromEnd(n), Value::Array(a)) => {
                let idx = (a.len() as i64).checked_sub(*n)?;
                a.get(usize::try_from(idx).ok()?)?
            }
            _ => return None,
        };
    }
    Some(v)
}

/// Parses JSON text held in a value; `None` when it is not text or not valid JSON.
pub(crate) fn parse_json(v: &SqliteValue) -> Option<Value> {
    match v {
        SqliteValue::Text(s) => serde_json::from_str(s).ok(),
        SqliteValue::Integer(i) => Some(Value::from(*i)),
        SqliteValue::Real(f) => serde_json::Number::from_f64(*f).map(Value::Number),
        _ => None,
    }
}

/// A JSON value as a SQL value (what `->>` and `json_extract` return).
pub(crate) fn json_to_sqlite(v: &Value) -> SqliteValue {
    match v {
        Value::Null => SqliteValue::Null,
        Value::Bool(b) => SqliteValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqliteValue::Integer(i),
            None => SqliteValue::Real(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => SqliteValue::Text(s.clone()),
        Value::Array(_) | Value::Object(_) => SqliteValue::Text(v.to_string()),
    }
}

/// `json -> path`: the JSON text of the designated part, NULL when absent.
pub(crate) fn arrow(json: &SqliteValue, path: &SqliteValue) -> SqliteValue {
    let (Some(doc), Some(steps)) = (parse_json(json), operand_path(path)) else {
        return SqliteValue::Null;
    };
    match walk(&doc, &steps) {
        Some(v) => SqliteValue::Text(v.to_string()),
        None => SqliteValue::Null,
    }
}

/// `json ->> path`: the SQL value of the designated part, NULL when absent.
pub(crate) fn long_arrow(json: &SqliteValue, path: &SqliteValue) -> SqliteValue {
    let (Some(doc), Some(steps)) = (parse_json(json), operand_path(path)) else {
        return SqliteValue::Null;
    };
    walk(&doc, &steps).map_or(SqliteValue::Null, json_to_sqlite)
}

/// `json_extract(json, path, …)`.
pub(crate) fn json_extract(json: &SqliteValue, paths: &[SqliteValue]) -> SqliteValue {
    let Some(doc) = parse_json(json) else {
        return SqliteValue::Null;
    };
    let find = |p: &SqliteValue| -> Option<&Value> {
        match p {
            SqliteValue::Text(s) => walk(&doc, &parse_path(s)?),
            _ => None,
        }
    };
    if let [single] = paths {
        return find(single).map_or(SqliteValue::Null, json_to_sqlite);
    }
    let all: Vec<Value> = paths
        .iter()
        .map(|p| find(p).cloned().unwrap_or(Value::Null))
        .collect();
    SqliteValue::Text(Value::Array(all).to_string())
}

/// The part of `json` at the optional `path` argument of `json_array_length`/`json_keys`.
fn at_optional_path(json: &SqliteValue, path: Option<&SqliteValue>) -> Option<Value> {
    let doc = parse_json(json)?;
    match path {
        None => Some(doc),
        Some(SqliteValue::Text(p)) => walk(&doc, &parse_path(p)?).cloned(),
        Some(_) => None,
    }
}

/// `json_array_length(json [, path])`: 0 for non-arrays, NULL when the path is absent.
pub(crate) fn json_array_length(json: &SqliteValue, path: Option<&SqliteValue>) -> SqliteValue {
    match at_optional_path(json, path) {
        Some(Value::Array(a)) => SqliteValue::Integer(a.len() as i64),
        Some(_) => SqliteValue::Integer(0),
        None => SqliteValue::Null,
    }
}

/// `json_keys(json [, path])`: JSON array text of an object's keys, NULL otherwise.
pub(crate) fn json_keys(json: &SqliteValue, path: Option<&SqliteValue>) -> SqliteValue {
    match at_optional_path(json, path) {
        Some(Value::Object(m)) => SqliteValue::Text(
            Value::Array(m.keys().map(|k| Value::String(k.clone())).collect()).to_string(),
        ),
        _ => SqliteValue::Null,
    }
}

/// `json_valid(x)`.
pub(crate) fn json_valid(v: &SqliteValue) -> SqliteValue {
    match v {
        SqliteValue::Null => SqliteValue::Null,
        SqliteValue::Text(s) => {
            SqliteValue::Integer(i64::from(serde_json::from_str::<Value>(s).is_ok()))
        }
        SqliteValue::Integer(_) => SqliteValue::Integer(1),
        SqliteValue::Real(f) => SqliteValue::Integer(i64::from(f.is_finite())),
        SqliteValue::Blob(_) => SqliteValue::Integer(0),
    }
}

/// The elements of a JSON array held in a value (for `json_each` and `IN <json array>`);
/// `None` when it is not a JSON array.
pub(crate) fn array_elements(v: &SqliteValue) -> Option<Vec<SqliteValue>> {
    match parse_json(v)? {
        Value::Array(a) => Some(a.iter().map(json_to_sqlite).collect()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> SqliteValue {
        SqliteValue::Text(s.into())
    }

    #[test]
    fn arrows_and_paths() {
        let doc = t(r#"{"a":{"b":[1,"x",true]},"n":null,"big":9007199254740993}"#);
        assert_eq!(long_arrow(&doc, &t("a.b")), t(r#"[1,"x",true]"#));
        assert_eq!(arrow(&doc, &t("$.a.b[1]")), t(r#""x""#));
        assert_eq!(long_arrow(&doc, &t("$.a.b[1]")), t("x"));
        assert_eq!(long_arrow(&doc, &t("$.a.b[#-1]")), SqliteValue::Integer(1));
        assert_eq!(
            long_arrow(&doc, &t("big")),
            SqliteValue::Integer(9007199254740993)
        );
        assert_eq!(long_arrow(&doc, &t("missing")), SqliteValue::Null);
        assert_eq!(long_arrow(&t("not json"), &t("a")), SqliteValue::Null);
        assert_eq!(
            json_array_length(&doc, Some(&t("$.a.b"))),
            SqliteValue::Integer(3)
        );
        assert_eq!(json_keys(&doc, None), t(r#"["a","n","big"]"#));
        assert_eq!(
            json_extract(&doc, &[t("$.n"), t("$.a.b[0]")]),
            t("[null,1]")
        );
        assert_eq!(json_valid(&t("{")), SqliteValue::Integer(0));
    }
}
