//! Postgres text-format values → [`SqliteValue`], by type (protocol reference §8).
//!
//! Both the snapshot and the replication connection force `TimeZone=UTC`, `DateStyle=ISO` and
//! `bytea_output=hex`, so the text each type prints is predictable. A value whose text does not
//! parse as its type (which Postgres never sends) is kept as text rather than failing the row.

use riptide_rules::SqliteValue;

use crate::pg_array::{self, ArrayElement};

/// How a Postgres type's text maps to a SQLite value; resolved once per column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Scalar(ScalarKind),
    /// An array of the element kind; becomes JSON array text.
    Array(ScalarKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    Bool,
    Integer,
    Float,
    /// Kept as text (numeric, text, uuid, time, interval, enums, anything unknown).
    Text,
    /// JSON text (json, jsonb): text at top level, embedded JSON inside arrays.
    Json,
    Bytea,
    Date,
    /// timestamp without time zone: text as Postgres prints it.
    Timestamp,
    /// timestamp with time zone: converted to UTC with a `Z`.
    Timestamptz,
}

/// Built-in type OIDs this mapping knows (from `pg_type.dat`).
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const MONEY: u32 = 790;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const TIMETZ: u32 = 1266;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// The kind of a scalar (non-array) built-in type; unknown types are text.
pub fn scalar_kind(type_oid: u32) -> ScalarKind {
    match type_oid {
        oid::BOOL => ScalarKind::Bool,
        oid::INT2 | oid::INT4 | oid::INT8 | oid::OID => ScalarKind::Integer,
        oid::FLOAT4 | oid::FLOAT8 => ScalarKind::Float,
        oid::JSON | oid::JSONB => ScalarKind::Json,
        oid::BYTEA => ScalarKind::Bytea,
        oid::DATE => ScalarKind::Date,
        oid::TIMESTAMP => ScalarKind::Timestamp,
        oid::TIMESTAMPTZ => ScalarKind::Timestamptz,
        _ => ScalarKind::Text,
    }
}

/// The element type of a built-in array type, if `type_oid` is one.
pub fn array_element(type_oid: u32) -> Option<u32> {
    Some(match type_oid {
        1000 => oid::BOOL,
        1001 => oid::BYTEA,
        1002 => oid::CHAR,
        1003 => oid::NAME,
        1005 => oid::INT2,
        1007 => oid::INT4,
        1009 => oid::TEXT,
        1014 => oid::BPCHAR,
        1015 => oid::VARCHAR,
        1016 => oid::INT8,
        1021 => oid::FLOAT4,
        1022 => oid::FLOAT8,
        1028 => oid::OID,
        199 => oid::JSON,
        3807 => oid::JSONB,
        2951 => oid::UUID,
        1182 => oid::DATE,
        1183 => oid::TIME,
        1115 => oid::TIMESTAMP,
        1185 => oid::TIMESTAMPTZ,
        1187 => oid::INTERVAL,
        1270 => oid::TIMETZ,
        1231 => oid::NUMERIC,
        791 => oid::MONEY,
        _ => return None,
    })
}

/// The kind of a built-in type, array or not.
pub fn value_kind(type_oid: u32) -> ValueKind {
    match array_element(type_oid) {
        Some(elem) => ValueKind::Array(scalar_kind(elem)),
        None => ValueKind::Scalar(scalar_kind(type_oid)),
    }
}

/// Converts one text-format value.
pub fn convert(kind: ValueKind, text: &[u8]) -> SqliteValue {
    match kind {
        ValueKind::Scalar(s) => convert_scalar(s, text),
        ValueKind::Array(elem) => match std::str::from_utf8(text)
            .ok()
            .and_then(|t| pg_array::parse(t).ok())
        {
            Some(parsed) => SqliteValue::Text(array_json(elem, &parsed).to_string()),
            None => SqliteValue::Text(lossy(text)),
        },
    }
}

fn lossy(text: &[u8]) -> String {
    String::from_utf8_lossy(text).into_owned()
}

fn convert_scalar(kind: ScalarKind, text: &[u8]) -> SqliteValue {
    match kind {
        ScalarKind::Bool => match text {
            b"t" | b"true" => SqliteValue::Integer(1),
            b"f" | b"false" => SqliteValue::Integer(0),
            _ => SqliteValue::Text(lossy(text)),
        },
        ScalarKind::Integer => match std::str::from_utf8(text).ok().and_then(|t| t.parse().ok()) {
            Some(i) => SqliteValue::Integer(i),
            None => SqliteValue::Text(lossy(text)),
        },
        ScalarKind::Float => match parse_float(text) {
            Some(f) => SqliteValue::Real(f),
            None => SqliteValue::Text(lossy(text)),
        },
        ScalarKind::Bytea => match decode_bytea(text) {
            Some(b) => SqliteValue::Blob(b),
            None => SqliteValue::Text(lossy(text)),
        },
        ScalarKind::Date => SqliteValue::Text(convert_date(&lossy(text))),
        ScalarKind::Timestamptz => SqliteValue::Text(convert_timestamptz(&lossy(text))),
        ScalarKind::Text | ScalarKind::Json | ScalarKind::Timestamp => {
            SqliteValue::Text(lossy(text))
        }
    }
}

fn parse_float(text: &[u8]) -> Option<f64> {
    let t = std::str::from_utf8(text).ok()?;
    // Postgres prints NaN, Infinity and -Infinity, which Rust's parser accepts.
    t.parse::<f64>().ok()
}

/// Decodes bytea text: hex (`\x0102`) or the legacy escape format.
pub fn decode_bytea(text: &[u8]) -> Option<Vec<u8>> {
    if let Some(hex) = text.strip_prefix(b"\\x") {
        if hex.len() % 2 != 0 {
            return None;
        }
        let nibble = |c: u8| -> Option<u8> {
            match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                b'A'..=b'F' => Some(c - b'A' + 10),
                _ => None,
            }
        };
        return hex
            .chunks_exact(2)
            .map(|p| match p {
                [h, l] => Some(nibble(*h)? << 4 | nibble(*l)?),
                _ => None,
            })
            .collect();
    }
    // Escape format: `\\` is a backslash, `\ooo` an octal byte, anything else literal.
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while let Some(&c) = text.get(i) {
        if c != b'\\' {
            out.push(c);
            i += 1;
        } else if text.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let digits = text.get(i + 1..i + 4)?;
            let mut v: u16 = 0;
            for d in digits {
                if !(b'0'..=b'7').contains(d) {
                    return None;
                }
                v = v * 8 + u16::from(d - b'0');
            }
            out.push(u8::try_from(v).ok()?);
            i += 4;
        }
    }
    Some(out)
}

/// `date`: ISO text as is; infinities become the extreme dates.
pub fn convert_date(text: &str) -> String {
    match text {
        "infinity" => "9999-12-31".to_owned(),
        "-infinity" => "0000-01-01".to_owned(),
        other => other.to_owned(),
    }
}

/// `timestamptz` (ISO DateStyle) → UTC in the legacy format: `2024-05-01 11:45:10.123Z`.
/// Sub-second digits are kept as the source printed them. Infinities become
/// `9999-12-31T23:59:59Z` / `0000-01-01T00:00:00Z`; BC dates and anything unparsable are
/// kept as text.
pub fn convert_timestamptz(text: &str) -> String {
    match text {
        "infinity" => return "9999-12-31T23:59:59Z".to_owned(),
        "-infinity" => return "0000-01-01T00:00:00Z".to_owned(),
        _ => {}
    }
    to_utc(text).unwrap_or_else(|| text.to_owned())
}

fn to_utc(text: &str) -> Option<String> {
    // `YYYY-MM-DD HH:MM:SS[.ffffff]±HH[:MM[:SS]]`; the year may have more than 4 digits.
    let (date, rest) = text.split_once(' ')?;
    let sign_at = rest.rfind(['+', '-'])?;
    let (time, offset) = rest.split_at(sign_at);
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (time, None),
    };
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    let mut t = hms.splitn(3, ':');
    let hour: i64 = t.next()?.parse().ok()?;
    let minute: i64 = t.next()?.parse().ok()?;
    let second: i64 = t.next()?.parse().ok()?;
    if let Some(f) = frac
        && (f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let negative = offset.starts_with('-');
    let mut o = offset.get(1..)?.splitn(3, ':');
    let oh: i64 = o.next()?.parse().ok()?;
    let om: i64 = o.next().map_or(Some(0), |s| s.parse().ok())?;
    let os: i64 = o.next().map_or(Some(0), |s| s.parse().ok())?;
    let offset_secs = (oh * 3600 + om * 60 + os) * if negative { -1 } else { 1 };

    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let mut out = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out.push('Z');
    Some(out)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn array_json(elem: ScalarKind, value: &ArrayElement) -> serde_json::Value {
    use serde_json::Value;
    match value {
        ArrayElement::Null => Value::Null,
        ArrayElement::Array(items) => {
            Value::Array(items.iter().map(|i| array_json(elem, i)).collect())
        }
        ArrayElement::Value(text) => match elem {
            ScalarKind::Bool => match text.as_str() {
                "t" | "true" => Value::Bool(true),
                "f" | "false" => Value::Bool(false),
                _ => Value::String(text.clone()),
            },
            ScalarKind::Integer => text
                .parse::<i64>()
                .map_or_else(|_| Value::String(text.clone()), Value::from),
            ScalarKind::Float => match text.parse::<f64>() {
                Ok(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
                Err(_) => Value::String(text.clone()),
            },
            ScalarKind::Json => {
                serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))
            }
            ScalarKind::Date => Value::String(convert_date(text)),
            ScalarKind::Timestamptz => Value::String(convert_timestamptz(text)),
            ScalarKind::Text | ScalarKind::Bytea | ScalarKind::Timestamp => {
                Value::String(text.clone())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> SqliteValue {
        SqliteValue::Text(s.to_owned())
    }

    #[test]
    fn golden_table() {
        let cases: Vec<(u32, &str, SqliteValue)> = vec![
            (oid::BOOL, "t", SqliteValue::Integer(1)),
            (oid::BOOL, "f", SqliteValue::Integer(0)),
            (oid::INT2, "-32768", SqliteValue::Integer(-32768)),
            (oid::INT4, "42", SqliteValue::Integer(42)),
            (
                oid::INT8,
                "9223372036854775807",
                SqliteValue::Integer(i64::MAX),
            ),
            (oid::OID, "4294967295", SqliteValue::Integer(4_294_967_295)),
            (oid::FLOAT8, "1.5", SqliteValue::Real(1.5)),
            (
                oid::FLOAT4,
                "-Infinity",
                SqliteValue::Real(f64::NEG_INFINITY),
            ),
            (oid::FLOAT8, "Infinity", SqliteValue::Real(f64::INFINITY)),
            (
                oid::NUMERIC,
                "12345678901234567890.000001",
                t("12345678901234567890.000001"),
            ),
            (oid::NUMERIC, "NaN", t("NaN")),
            (oid::TEXT, "héllo", t("héllo")),
            (oid::VARCHAR, "", t("")),
            (oid::BPCHAR, "ab  ", t("ab  ")),
            (oid::NAME, "pg_class", t("pg_class")),
            (
                oid::UUID,
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                t("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            ),
            (oid::JSON, r#"{"a": [1, 2]}"#, t(r#"{"a": [1, 2]}"#)),
            (oid::JSONB, r#"{"a": 1}"#, t(r#"{"a": 1}"#)),
            (
                oid::TIMESTAMP,
                "2024-05-01 13:45:10.123",
                t("2024-05-01 13:45:10.123"),
            ),
            (oid::TIMESTAMP, "infinity", t("infinity")),
            (
                oid::TIMESTAMPTZ,
                "2024-05-01 11:45:10.123+00",
                t("2024-05-01 11:45:10.123Z"),
            ),
            (
                oid::TIMESTAMPTZ,
                "2024-05-01 13:45:10+02",
                t("2024-05-01 11:45:10Z"),
            ),
            (
                oid::TIMESTAMPTZ,
                "2024-01-01 00:15:00.5-05:30",
                t("2024-01-01 05:45:00.5Z"),
            ),
            (
                oid::TIMESTAMPTZ,
                "2024-12-31 23:30:00-01",
                t("2025-01-01 00:30:00Z"),
            ),
            (oid::TIMESTAMPTZ, "infinity", t("9999-12-31T23:59:59Z")),
            (oid::TIMESTAMPTZ, "-infinity", t("0000-01-01T00:00:00Z")),
            (
                oid::TIMESTAMPTZ,
                "0044-03-15 12:00:00+00 BC",
                t("0044-03-15 12:00:00+00 BC"),
            ),
            (oid::DATE, "2024-05-01", t("2024-05-01")),
            (oid::DATE, "infinity", t("9999-12-31")),
            (oid::DATE, "-infinity", t("0000-01-01")),
            (oid::TIME, "13:45:10.5", t("13:45:10.5")),
            (oid::TIMETZ, "13:45:10+02", t("13:45:10+02")),
            (oid::INTERVAL, "1 day 02:00:00", t("1 day 02:00:00")),
            (oid::MONEY, "$1,000.00", t("$1,000.00")),
            (123_456, "happy", t("happy")),
            (oid::BYTEA, "\\x00ff10", SqliteValue::Blob(vec![0, 255, 16])),
            (oid::BYTEA, "\\x", SqliteValue::Blob(vec![])),
            (
                oid::BYTEA,
                "a\\\\b\\001",
                SqliteValue::Blob(b"a\\b\x01".to_vec()),
            ),
            (1007, "{1,2,NULL}", t("[1,2,null]")),
            (1007, "{{1,2},{3,4}}", t("[[1,2],[3,4]]")),
            (1007, "[0:1]={5,6}", t("[5,6]")),
            (1007, "{}", t("[]")),
            (
                1009,
                r#"{a,"b c","d\"e",NULL,"NULL"}"#,
                t(r#"["a","b c","d\"e",null,"NULL"]"#),
            ),
            (1000, "{t,f}", t("[true,false]")),
            (1022, "{1.5,NaN}", t("[1.5,null]")),
            (3807, r#"{"{\"a\": 1}",null}"#, t(r#"[{"a":1},null]"#)),
            (1231, "{1.10,2}", t(r#"["1.10","2"]"#)),
            (
                1185,
                "{\"2024-05-01 11:45:10+00\"}",
                t(r#"["2024-05-01 11:45:10Z"]"#),
            ),
            (1182, "{infinity}", t(r#"["9999-12-31"]"#)),
            // Garbage stays text rather than failing.
            (oid::INT4, "x", t("x")),
            (oid::BOOL, "maybe", t("maybe")),
            (1007, "{1,2", t("{1,2")),
            (oid::BYTEA, "\\x0", t("\\x0")),
        ];
        for (type_oid, text, expected) in cases {
            let got = convert(value_kind(type_oid), text.as_bytes());
            match (&got, &expected) {
                (SqliteValue::Real(a), SqliteValue::Real(b)) if a.is_nan() && b.is_nan() => {}
                _ => assert_eq!(got, expected, "type {type_oid} text {text:?}"),
            }
        }
        match convert(value_kind(oid::FLOAT8), b"NaN") {
            SqliteValue::Real(f) => assert!(f.is_nan()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn utc_conversion_matches_days_arithmetic() {
        for days in [-719_528, -1, 0, 1, 11_016, 19_844, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
