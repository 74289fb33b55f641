//! Bucket parameter values: normalisation, their canonical JSON encoding, and bucket names
//! (`definition` + JSON array of values, e.g. `user_lists["u1"]`, `by_org_team["o1",3]`).

use crate::SqliteValue;

/// A value usable as a bucket parameter: NULL, blobs and NaN are not (they match nothing);
/// reals with an integral value become integers so `3.0` and `3` name the same bucket.
pub(crate) fn normalize_parameter(v: &SqliteValue) -> Option<SqliteValue> {
    match v {
        SqliteValue::Null | SqliteValue::Blob(_) => None,
        SqliteValue::Real(f) if f.is_nan() => None,
        SqliteValue::Real(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
            Some(SqliteValue::Integer(*f as i64))
        }
        other => Some(other.clone()),
    }
}

/// Appends the JSON form of a value: text as a JSON string, integers exactly, reals as JSON
/// numbers (non-finite as `null`), NULL as `null`. Blobs are never passed here (they are
/// dropped before), but encode as `null`.
pub(crate) fn push_json(out: &mut String, v: &SqliteValue) {
    use std::fmt::Write as _;
    match v {
        SqliteValue::Null | SqliteValue::Blob(_) => out.push_str("null"),
        SqliteValue::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        SqliteValue::Real(f) => match serde_json::Number::from_f64(*f) {
            Some(n) => {
                let _ = write!(out, "{n}");
            }
            None => out.push_str("null"),
        },
        SqliteValue::Text(s) => push_json_string(out, s),
    }
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_string(out: &mut String, s: &str) {
    // Serialising a str into JSON cannot fail.
    out.push_str(&serde_json::Value::from(s).to_string());
}

/// The canonical JSON text of one (normalised) parameter value.
pub(crate) fn encode_parameter(v: &SqliteValue) -> String {
    let mut s = String::new();
    push_json(&mut s, v);
    s
}

/// `definition` + JSON array of the values.
pub(crate) fn bucket_name(definition: &str, values: &[SqliteValue]) -> String {
    let mut name = String::with_capacity(definition.len() + 2 + values.len() * 8);
    name.push_str(definition);
    push_json_array(&mut name, values);
    name
}

/// Appends the JSON array of the values.
pub(crate) fn push_json_array(out: &mut String, values: &[SqliteValue]) {
    out.push('[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json(out, v);
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(bucket_name("global", &[]), "global[]");
        assert_eq!(
            bucket_name(
                "by_org_team",
                &[SqliteValue::Text("o1".into()), SqliteValue::Integer(3)]
            ),
            r#"by_org_team["o1",3]"#
        );
        assert_eq!(
            bucket_name(
                "q",
                &[SqliteValue::Text("a\"b".into()), SqliteValue::Real(1.5)]
            ),
            r#"q["a\"b",1.5]"#
        );
        assert_eq!(
            bucket_name("big", &[SqliteValue::Integer(9_007_199_254_740_993)]),
            "big[9007199254740993]"
        );
        assert_eq!(
            normalize_parameter(&SqliteValue::Real(3.0)),
            Some(SqliteValue::Integer(3))
        );
        assert_eq!(normalize_parameter(&SqliteValue::Null), None);
    }
}
