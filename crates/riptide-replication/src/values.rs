//! Postgres text-format values → [`SqliteValue`], by type (docs/protocol.md §8.2).
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

/// How date-time values are rendered: the sync rules' `timestamps_iso8601` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeFormat {
    /// `2024-05-01 13:45:10.123` (source sub-second digits), `13:45:10.5`.
    #[default]
    Legacy,
    /// `2024-05-01T13:45:10.123000` (6 sub-second digits), `13:45:10.500000`.
    Iso8601,
    /// ISO 8601 with at most this many sub-second digits (`timestamp_max_precision`: 0 for
    /// seconds, 3 for milliseconds; Postgres has 6): truncated, never rounded, as PowerSync.
    Iso8601Digits(u8),
}

impl TimeFormat {
    /// Sub-second digits of an ISO 8601 format (`None`: legacy).
    fn iso_digits(self) -> Option<usize> {
        match self {
            TimeFormat::Legacy => None,
            TimeFormat::Iso8601 => Some(6),
            TimeFormat::Iso8601Digits(d) => Some(usize::from(d.min(6))),
        }
    }
}

/// `.` + the fraction cut or padded to `digits` (nothing for 0 digits).
fn fraction(frac: Option<&str>, digits: usize) -> String {
    if digits == 0 {
        return String::new();
    }
    let f = frac.unwrap_or("");
    let cut = f.get(..digits.min(f.len())).unwrap_or(f);
    format!(".{cut:0<digits$}")
}

/// Mapping options a deployment's sync rules choose (compatibility options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ValueOptions {
    pub time_format: TimeFormat,
    /// `custom_types`: domains take their base type's mapping (otherwise raw text).
    pub custom_types: bool,
}

impl ValueOptions {
    /// The options the rules' edition and `config` select.
    pub fn from_rules(rules: &riptide_rules::SyncRules) -> ValueOptions {
        ValueOptions {
            time_format: match (rules.timestamps_iso8601(), rules.timestamp_max_precision()) {
                (false, _) => TimeFormat::Legacy,
                (true, Some(p)) if p.sub_second_digits() < 6 => {
                    TimeFormat::Iso8601Digits(p.sub_second_digits())
                }
                (true, _) => TimeFormat::Iso8601,
            },
            custom_types: rules.custom_types(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    Bool,
    Integer,
    Float,
    /// Kept as text (numeric, text, uuid, timetz, interval, money, enums, anything unknown).
    Text,
    /// JSON text (json, jsonb): text at top level, embedded JSON inside arrays.
    Json,
    /// Binary; not representable inside a JSON array (NULL there).
    Bytea,
    Date,
    /// `time` without time zone.
    Time(TimeFormat),
    /// timestamp without time zone.
    Timestamp(TimeFormat),
    /// timestamp with time zone: converted to UTC with a `Z`.
    Timestamptz(TimeFormat),
    /// pg_lsn: zero-padded so text order is LSN order.
    Lsn,
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
    pub const PG_LSN: u32 = 3220;
    pub const JSONB: u32 = 3802;
    pub const JSONPATH: u32 = 4072;
}

/// The kind of a scalar (non-array) built-in type with legacy options; unknown types are text.
pub fn scalar_kind(type_oid: u32) -> ScalarKind {
    scalar_kind_with(type_oid, ValueOptions::default())
}

/// The kind of a scalar (non-array) built-in type; unknown types are text.
pub fn scalar_kind_with(type_oid: u32, options: ValueOptions) -> ScalarKind {
    let f = options.time_format;
    match type_oid {
        oid::BOOL => ScalarKind::Bool,
        oid::INT2 | oid::INT4 | oid::INT8 | oid::OID => ScalarKind::Integer,
        oid::FLOAT4 | oid::FLOAT8 => ScalarKind::Float,
        oid::JSON | oid::JSONB => ScalarKind::Json,
        oid::BYTEA => ScalarKind::Bytea,
        oid::DATE => ScalarKind::Date,
        oid::TIME => ScalarKind::Time(f),
        oid::TIMESTAMP => ScalarKind::Timestamp(f),
        oid::TIMESTAMPTZ => ScalarKind::Timestamptz(f),
        oid::PG_LSN => ScalarKind::Lsn,
        _ => ScalarKind::Text,
    }
}

/// The element type of a built-in array type, if `type_oid` is one (every built-in array
/// whose text form uses `,` between elements).
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
        3221 => oid::PG_LSN,
        4073 => oid::JSONPATH,
        // Text elements: xml, macaddr, inet, cidr, macaddr8, bit, varbit, tsvector, tsquery,
        // point, lseg, path, polygon, line, circle, int4range…int8range, numrange, tsrange,
        // tstzrange, daterange.
        143 => 142,
        1040 => 829,
        1041 => 869,
        651 => 650,
        775 => 774,
        1561 => 1560,
        1563 => 1562,
        3643 => 3614,
        3645 => 3615,
        1017 => 600,
        1018 => 601,
        1019 => 602,
        1027 => 604,
        629 => 628,
        719 => 718,
        3905 => 3904,
        3907 => 3906,
        3909 => 3908,
        3911 => 3910,
        3913 => 3912,
        3927 => 3926,
        _ => return None,
    })
}

/// The kind of a built-in type, array or not, with legacy options.
pub fn value_kind(type_oid: u32) -> ValueKind {
    value_kind_with(type_oid, ValueOptions::default())
}

/// The kind of a built-in type, array or not.
pub fn value_kind_with(type_oid: u32, options: ValueOptions) -> ValueKind {
    match array_element(type_oid) {
        Some(elem) => ValueKind::Array(scalar_kind_with(elem, options)),
        None => ValueKind::Scalar(scalar_kind_with(type_oid, options)),
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
            Some(parsed) => {
                let mut out = String::with_capacity(text.len() + 2);
                write_array_json(elem, &parsed, &mut out);
                SqliteValue::Text(out)
            }
            None => SqliteValue::Text(lossy(text)),
        },
    }
}

fn lossy(text: &[u8]) -> String {
    String::from_utf8_lossy(text).into_owned()
}

fn text_or_null(v: Option<String>) -> SqliteValue {
    v.map_or(SqliteValue::Null, SqliteValue::Text)
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
        ScalarKind::Time(f) => SqliteValue::Text(convert_time(&lossy(text), f)),
        ScalarKind::Timestamp(f) => text_or_null(convert_timestamp(&lossy(text), f)),
        ScalarKind::Timestamptz(f) => text_or_null(convert_timestamptz_with(&lossy(text), f)),
        ScalarKind::Lsn => SqliteValue::Text(convert_lsn(&lossy(text))),
        ScalarKind::Text | ScalarKind::Json => SqliteValue::Text(lossy(text)),
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

/// `pg_lsn` `16/B374D848` → `00000016/B374D848`: both halves padded to 8 hex digits, so text
/// order is LSN order.
pub fn convert_lsn(text: &str) -> String {
    match text.split_once('/') {
        Some((hi, lo)) => format!("{hi:0>8}/{lo:0>8}"),
        None => text.to_owned(),
    }
}

/// `time`: legacy as printed; ISO with exactly 6 sub-second digits (`12:00:00.000000`), so
/// text order is time order. Text that is not `HH:MM:SS[.f]` is kept.
pub fn convert_time(text: &str, format: TimeFormat) -> String {
    let Some(digits) = format.iso_digits() else {
        return text.to_owned();
    };
    let (hms, frac) = match text.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (text, None),
    };
    let valid = !hms.is_empty()
        && hms.bytes().all(|b| b.is_ascii_digit() || b == b':')
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
    if !valid {
        return text.to_owned();
    }
    format!("{hms}{}", fraction(frac, digits))
}

/// The parts of `YYYY-MM-DD HH:MM:SS[.ffffff][±HH[:MM[:SS]]]` (ISO DateStyle).
struct DateTimeText<'a> {
    date: &'a str,
    hms: &'a str,
    frac: Option<&'a str>,
    offset: Option<&'a str>,
}

fn split_datetime(text: &str) -> Option<DateTimeText<'_>> {
    let (date, rest) = text.split_once(' ')?;
    if date.is_empty() || !date.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return None;
    }
    let (time, offset) = match rest.find(['+', '-']) {
        Some(at) => (&rest[..at], Some(&rest[at..])),
        None => (rest, None),
    };
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (time, None),
    };
    let digits_colons =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b':');
    if !digits_colons(hms)
        || frac.is_some_and(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()))
        || offset.is_some_and(|o| !digits_colons(&o[1..]))
    {
        return None;
    }
    Some(DateTimeText {
        date,
        hms,
        frac,
        offset,
    })
}

/// `timestamp` without time zone. Legacy: as Postgres prints it; ISO:
/// `2024-05-01T13:45:10.123000`. Infinities become the extreme timestamps; text that is
/// not a timestamp (BC dates) becomes NULL, like the official service.
pub fn convert_timestamp(text: &str, format: TimeFormat) -> Option<String> {
    let digits = format.iso_digits();
    let iso = digits.is_some();
    match text {
        "infinity" => {
            return Some(
                if iso {
                    "9999-12-31T23:59:59"
                } else {
                    "9999-12-31 23:59:59"
                }
                .into(),
            );
        }
        "-infinity" => {
            return Some(
                if iso {
                    "0000-01-01T00:00:00"
                } else {
                    "0000-01-01 00:00:00"
                }
                .into(),
            );
        }
        _ => {}
    }
    let parts = split_datetime(text)?;
    if parts.offset.is_some() {
        return None;
    }
    Some(if let Some(digits) = digits {
        format!(
            "{}T{}{}",
            parts.date,
            parts.hms,
            fraction(parts.frac, digits)
        )
    } else {
        text.to_owned()
    })
}

/// `timestamptz` in the legacy format (see [`convert_timestamptz_with`]); unconvertible text
/// is kept.
pub fn convert_timestamptz(text: &str) -> String {
    convert_timestamptz_with(text, TimeFormat::Legacy).unwrap_or_else(|| text.to_owned())
}

/// `timestamptz` (ISO DateStyle) → UTC. Legacy: `2024-05-01 11:45:10.123Z` (source
/// sub-second digits, none if the source has none); ISO: `2024-05-01T11:45:10.123000Z`.
/// Infinities become `9999-12-31 23:59:59Z` / `0000-01-01 00:00:00Z` (`T` in ISO). BC
/// dates and years beyond 9999 become NULL, like the official service.
pub fn convert_timestamptz_with(text: &str, format: TimeFormat) -> Option<String> {
    let digits = format.iso_digits();
    let iso = digits.is_some();
    match text {
        "infinity" => {
            return Some(
                if iso {
                    "9999-12-31T23:59:59Z"
                } else {
                    "9999-12-31 23:59:59Z"
                }
                .into(),
            );
        }
        "-infinity" => {
            return Some(
                if iso {
                    "0000-01-01T00:00:00Z"
                } else {
                    "0000-01-01 00:00:00Z"
                }
                .into(),
            );
        }
        _ => {}
    }
    to_utc(text, digits)
}

fn to_utc(text: &str, digits: Option<usize>) -> Option<String> {
    let iso = digits.is_some();
    let p = split_datetime(text)?;
    // Every field within what Postgres sends (years up to 294276, offsets up to ±15:59:59), so
    // the arithmetic below cannot overflow on a hostile or corrupt value.
    let field = |s: Option<&str>, range: std::ops::RangeInclusive<i64>| -> Option<i64> {
        let v: i64 = s?.parse().ok()?;
        range.contains(&v).then_some(v)
    };
    let mut d = p.date.splitn(3, '-');
    let year = field(d.next(), 0..=300_000)?;
    let month = field(d.next(), 1..=12)?;
    let day = field(d.next(), 1..=31)?;
    let mut t = p.hms.splitn(3, ':');
    let hour = field(t.next(), 0..=24)?;
    let minute = field(t.next(), 0..=59)?;
    let second = field(t.next(), 0..=60)?;
    let offset = p.offset.unwrap_or("+00");
    let negative = offset.starts_with('-');
    let mut o = offset.get(1..)?.splitn(3, ':');
    let oh = field(o.next(), 0..=15)?;
    let om = o.next().map_or(Some(0), |s| field(Some(s), 0..=59))?;
    let os = o.next().map_or(Some(0), |s| field(Some(s), 0..=59))?;
    let offset_secs = (oh * 3600 + om * 60 + os) * if negative { -1 } else { 1 };

    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let sep = if iso { 'T' } else { ' ' };
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}{sep}{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if let Some(digits) = digits {
        out.push_str(&fraction(p.frac, digits));
    } else if let Some(f) = p.frac {
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

/// Writes a JSON string literal.
fn write_json_string(s: &str, out: &mut String) {
    // serde_json's escaping of a plain string cannot fail.
    out.push_str(&serde_json::Value::String(s.to_owned()).to_string());
}

/// A float as JavaScript's `JSON.stringify` writes it (non-finite: `null`).
fn write_js_number(f: f64, out: &mut String) {
    use std::fmt::Write;
    if !f.is_finite() {
        out.push_str("null");
    } else if f == 0.0 {
        out.push('0');
    } else if f.fract() == 0.0 && f.abs() < 1e21 {
        let _ = write!(out, "{f:.0}");
    } else if f.abs() >= 1e-6 && f.abs() < 1e21 {
        let _ = write!(out, "{f}");
    } else {
        let _ = write!(out, "{f:e}");
        if let Some(at) = out.rfind('e')
            && !out[at + 1..].starts_with('-')
        {
            out.insert(at + 1, '+');
        }
    }
}

/// Appends the JSON of an array element, converting like the scalar mapping: booleans as
/// 1/0, integers exactly, floats as JavaScript numbers, JSON embedded verbatim (no precision
/// loss), bytea as null, date-times in the deployment's format, everything else a string.
fn write_array_json(elem: ScalarKind, value: &ArrayElement, out: &mut String) {
    match value {
        ArrayElement::Null => out.push_str("null"),
        ArrayElement::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_array_json(elem, item, out);
            }
            out.push(']');
        }
        ArrayElement::Value(text) => match elem {
            ScalarKind::Bool => match text.as_str() {
                "t" | "true" => out.push('1'),
                "f" | "false" => out.push('0'),
                _ => write_json_string(text, out),
            },
            ScalarKind::Integer => match text.parse::<i64>() {
                Ok(i) => out.push_str(&i.to_string()),
                Err(_) => write_json_string(text, out),
            },
            ScalarKind::Float => match text.parse::<f64>() {
                Ok(f) => write_js_number(f, out),
                Err(_) => write_json_string(text, out),
            },
            ScalarKind::Json => {
                if serde_json::from_str::<serde_json::Value>(text).is_ok() {
                    out.push_str(text.trim());
                } else {
                    write_json_string(text, out);
                }
            }
            ScalarKind::Bytea => out.push_str("null"),
            ScalarKind::Date => write_json_string(&convert_date(text), out),
            ScalarKind::Time(f) => write_json_string(&convert_time(text, f), out),
            ScalarKind::Timestamp(f) => match convert_timestamp(text, f) {
                Some(t) => write_json_string(&t, out),
                None => out.push_str("null"),
            },
            ScalarKind::Timestamptz(f) => match convert_timestamptz_with(text, f) {
                Some(t) => write_json_string(&t, out),
                None => out.push_str("null"),
            },
            ScalarKind::Lsn => write_json_string(&convert_lsn(text), out),
            ScalarKind::Text => write_json_string(text, out),
        },
    }
}

#[cfg(test)]
mod tests;
