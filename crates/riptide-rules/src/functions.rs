//! Scalar SQL functions available in sync rules, with SQLite semantics.

use std::ops::RangeInclusive;

use base64::Engine as _;

use crate::SqliteValue;
use crate::cast::{to_text, truthy};
use crate::time_functions;
use crate::{geometry, json_path};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Function {
    Upper,
    Lower,
    /// `upper` of Sync Streams: Unicode case mapping, as PowerSync's JavaScript evaluator
    /// (classic rules keep SQLite's ASCII-only `upper`).
    UpperUnicode,
    LowerUnicode,
    Substring,
    Hex,
    Length,
    Base64,
    Typeof,
    Ifnull,
    Iif,
    Instr,
    JsonExtract,
    JsonArrayLength,
    JsonValid,
    JsonKeys,
    UuidBlob,
    Unixepoch,
    Datetime,
    StAsGeojson,
    StAsText,
    StX,
    StY,
}

impl Function {
    /// Looks a function up by its (case-insensitive) name.
    pub(crate) fn from_name(name: &str) -> Option<Function> {
        Some(match name.to_ascii_lowercase().as_str() {
            "upper" => Function::Upper,
            "lower" => Function::Lower,
            "substring" | "substr" => Function::Substring,
            "hex" => Function::Hex,
            "length" => Function::Length,
            "base64" => Function::Base64,
            "typeof" => Function::Typeof,
            "ifnull" => Function::Ifnull,
            "iif" => Function::Iif,
            "instr" => Function::Instr,
            "json_extract" => Function::JsonExtract,
            "json_array_length" => Function::JsonArrayLength,
            "json_valid" => Function::JsonValid,
            "json_keys" => Function::JsonKeys,
            "uuid_blob" => Function::UuidBlob,
            "unixepoch" => Function::Unixepoch,
            "datetime" => Function::Datetime,
            "st_asgeojson" => Function::StAsGeojson,
            "st_astext" => Function::StAsText,
            "st_x" => Function::StX,
            "st_y" => Function::StY,
            _ => return None,
        })
    }

    /// How many arguments the function takes.
    pub(crate) fn arity(self) -> RangeInclusive<usize> {
        match self {
            Function::Upper
            | Function::Lower
            | Function::UpperUnicode
            | Function::LowerUnicode
            | Function::Hex
            | Function::Length
            | Function::Base64
            | Function::Typeof
            | Function::JsonValid
            | Function::UuidBlob
            | Function::StAsGeojson
            | Function::StAsText
            | Function::StX
            | Function::StY => 1..=1,
            Function::Substring => 2..=3,
            Function::Ifnull | Function::Instr => 2..=2,
            Function::Iif => 3..=3,
            Function::JsonExtract => 2..=usize::MAX,
            Function::JsonArrayLength | Function::JsonKeys => 1..=2,
            Function::Unixepoch | Function::Datetime => 1..=usize::MAX,
        }
    }

    /// Calls the function; `args.len()` is within [`Function::arity`] (checked when lowering).
    pub(crate) fn call(self, args: &[SqliteValue]) -> SqliteValue {
        let arg = |i: usize| args.get(i).unwrap_or(&SqliteValue::Null);
        match self {
            Function::Upper => map_text(arg(0), |s| s.to_ascii_uppercase()),
            Function::Lower => map_text(arg(0), |s| s.to_ascii_lowercase()),
            Function::UpperUnicode => map_text(arg(0), str::to_uppercase),
            Function::LowerUnicode => map_text(arg(0), str::to_lowercase),
            Function::Substring => substring(arg(0), arg(1), args.get(2)),
            Function::Hex => match arg(0) {
                SqliteValue::Null => SqliteValue::Text(String::new()),
                SqliteValue::Blob(b) => SqliteValue::Text(hex::encode_upper(b)),
                other => SqliteValue::Text(hex::encode_upper(
                    to_text(other).unwrap_or_default().as_bytes(),
                )),
            },
            Function::Length => match arg(0) {
                SqliteValue::Null => SqliteValue::Null,
                SqliteValue::Blob(b) => SqliteValue::Integer(b.len() as i64),
                other => {
                    SqliteValue::Integer(to_text(other).unwrap_or_default().chars().count() as i64)
                }
            },
            Function::Base64 => match arg(0) {
                SqliteValue::Null => SqliteValue::Null,
                SqliteValue::Blob(b) => {
                    SqliteValue::Text(base64::engine::general_purpose::STANDARD.encode(b))
                }
                other => SqliteValue::Text(
                    base64::engine::general_purpose::STANDARD
                        .encode(to_text(other).unwrap_or_default().as_bytes()),
                ),
            },
            Function::Typeof => SqliteValue::Text(
                match arg(0) {
                    SqliteValue::Null => "null",
                    SqliteValue::Integer(_) => "integer",
                    SqliteValue::Real(_) => "real",
                    SqliteValue::Text(_) => "text",
                    SqliteValue::Blob(_) => "blob",
                }
                .into(),
            ),
            Function::Ifnull => {
                if arg(0).is_null() {
                    arg(1).clone()
                } else {
                    arg(0).clone()
                }
            }
            Function::Iif => {
                if truthy(arg(0)) == Some(true) {
                    arg(1).clone()
                } else {
                    arg(2).clone()
                }
            }
            Function::Instr => instr(arg(0), arg(1)),
            Function::JsonExtract => json_path::json_extract(arg(0), args.get(1..).unwrap_or(&[])),
            Function::JsonArrayLength => json_path::json_array_length(arg(0), args.get(1)),
            Function::JsonValid => json_path::json_valid(arg(0)),
            Function::JsonKeys => json_path::json_keys(arg(0), args.get(1)),
            Function::UuidBlob => match arg(0) {
                SqliteValue::Text(s) => match uuid::Uuid::parse_str(s) {
                    Ok(u) => SqliteValue::Blob(u.as_bytes().to_vec()),
                    Err(_) => SqliteValue::Null,
                },
                _ => SqliteValue::Null,
            },
            Function::Unixepoch => time_functions::unixepoch(args),
            Function::Datetime => time_functions::datetime(args),
            Function::StAsGeojson => geometry::st_asgeojson(arg(0)),
            Function::StAsText => geometry::st_astext(arg(0)),
            Function::StX => geometry::st_coordinate(arg(0), 0),
            Function::StY => geometry::st_coordinate(arg(0), 1),
        }
    }
}

fn map_text(v: &SqliteValue, f: impl FnOnce(&str) -> String) -> SqliteValue {
    match to_text(v) {
        Some(s) => SqliteValue::Text(f(&s)),
        None => SqliteValue::Null,
    }
}

fn to_int(v: &SqliteValue) -> Option<i64> {
    match crate::cast::to_numeric(v) {
        SqliteValue::Integer(i) => Some(i),
        SqliteValue::Real(f) => Some(crate::cast::real_to_integer(f)),
        _ => None,
    }
}

/// SQLite's `substr(x, start [, length])` window over `len` units: (offset, count).
fn substr_window(len: i64, start: i64, length: Option<i64>) -> (i64, i64) {
    let mut p1 = start;
    let mut p2 = length.unwrap_or(i64::MAX / 4);
    let neg_p2 = p2 < 0;
    if neg_p2 {
        p2 = p2.saturating_neg();
    }
    if p1 < 0 {
        p1 += len;
        if p1 < 0 {
            p2 += p1;
            if p2 < 0 {
                p2 = 0;
            }
            p1 = 0;
        }
    } else if p1 > 0 {
        p1 -= 1;
    } else if p2 > 0 {
        p2 -= 1;
    }
    if neg_p2 {
        p1 -= p2;
        if p1 < 0 {
            p2 += p1;
            p1 = 0;
        }
    }
    if p1.saturating_add(p2) > len {
        p2 = (len - p1).max(0);
    }
    (p1.clamp(0, len), p2.max(0))
}

fn substring(x: &SqliteValue, start: &SqliteValue, length: Option<&SqliteValue>) -> SqliteValue {
    if x.is_null() || start.is_null() || length.is_some_and(SqliteValue::is_null) {
        return SqliteValue::Null;
    }
    let (Some(start), length) = (to_int(start), length.and_then(to_int)) else {
        return SqliteValue::Null;
    };
    match x {
        SqliteValue::Blob(b) => {
            let (off, n) = substr_window(b.len() as i64, start, length);
            let (off, n) = (off as usize, n as usize);
            SqliteValue::Blob(b.iter().skip(off).take(n).copied().collect())
        }
        other => {
            let s = to_text(other).unwrap_or_default();
            let (off, n) = substr_window(s.chars().count() as i64, start, length);
            SqliteValue::Text(s.chars().skip(off as usize).take(n as usize).collect())
        }
    }
}

fn instr(haystack: &SqliteValue, needle: &SqliteValue) -> SqliteValue {
    match (haystack, needle) {
        (SqliteValue::Null, _) | (_, SqliteValue::Null) => SqliteValue::Null,
        (SqliteValue::Blob(h), SqliteValue::Blob(n)) => {
            let pos = if n.is_empty() {
                Some(0)
            } else {
                h.windows(n.len()).position(|w| w == n.as_slice())
            };
            SqliteValue::Integer(pos.map_or(0, |p| p as i64 + 1))
        }
        (h, n) => {
            let h = to_text(h).unwrap_or_default();
            let n = to_text(n).unwrap_or_default();
            match h.find(&*n) {
                Some(byte_pos) => SqliteValue::Integer(h[..byte_pos].chars().count() as i64 + 1),
                None => SqliteValue::Integer(0),
            }
        }
    }
}

/// Text form used by `||` (NULL stays NULL).
pub(crate) fn concat(a: &SqliteValue, b: &SqliteValue) -> SqliteValue {
    match (to_text(a), to_text(b)) {
        (Some(x), Some(y)) => SqliteValue::Text(format!("{x}{y}")),
        _ => SqliteValue::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> SqliteValue {
        SqliteValue::Text(s.into())
    }
    fn i(v: i64) -> SqliteValue {
        SqliteValue::Integer(v)
    }

    #[test]
    fn scalar_functions() {
        let cases: Vec<(Function, Vec<SqliteValue>, SqliteValue)> = vec![
            (Function::Upper, vec![t("abé")], t("ABé")),
            (Function::Lower, vec![i(12)], t("12")),
            (Function::Substring, vec![t("hello"), i(2), i(3)], t("ell")),
            (Function::Substring, vec![t("hello"), i(-3)], t("llo")),
            (Function::Substring, vec![t("hello"), i(0), i(2)], t("h")),
            (Function::Substring, vec![t("hello"), i(3), i(-2)], t("he")),
            (Function::Substring, vec![t("hello"), i(10)], t("")),
            (
                Function::Hex,
                vec![SqliteValue::Blob(vec![0xab, 1])],
                t("AB01"),
            ),
            (Function::Hex, vec![t("a")], t("61")),
            (Function::Length, vec![t("héllo")], i(5)),
            (Function::Length, vec![SqliteValue::Null], SqliteValue::Null),
            (
                Function::Base64,
                vec![SqliteValue::Blob(b"hi".to_vec())],
                t("aGk="),
            ),
            (Function::Typeof, vec![SqliteValue::Real(1.0)], t("real")),
            (Function::Ifnull, vec![SqliteValue::Null, i(2)], i(2)),
            (Function::Iif, vec![i(0), i(1), i(2)], i(2)),
            (Function::Iif, vec![t("1"), i(1), i(2)], i(1)),
            (Function::Instr, vec![t("héllo"), t("l")], i(3)),
            (Function::Instr, vec![t("abc"), t("z")], i(0)),
            (
                Function::UuidBlob,
                vec![t("00000000-0000-0000-0000-000000000001")],
                SqliteValue::Blob([vec![0; 15], vec![1]].concat()),
            ),
        ];
        for (f, args, expected) in cases {
            assert_eq!(f.call(&args), expected, "{f:?}({args:?})");
        }
        assert_eq!(concat(&t("a"), &i(1)), t("a1"));
        assert_eq!(concat(&t("a"), &SqliteValue::Null), SqliteValue::Null);
    }
}
