//! SQLite conversions between storage classes: text ↔ numbers, `CAST`, real formatting and
//! truthiness.

use std::borrow::Cow;

use crate::SqliteValue;

/// Target of `CAST(x AS …)`, which is also the affinity such an expression carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CastType {
    Text,
    Integer,
    Real,
    Numeric,
    Blob,
}

/// Formats a real the way SQLite prints it (`%!.15g`: 15 significant digits, always a `.0` or
/// exponent so it reads back as a real).
pub(crate) fn format_real(f: f64) -> String {
    if f.is_nan() {
        return String::new();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Inf".into() } else { "-Inf".into() };
    }
    if f == 0.0 {
        return "0.0".into();
    }
    let sci = format!("{:.14e}", f);
    let (mantissa, exp) = match sci.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (sci.as_str(), 0),
    };
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let sign = if negative { "-" } else { "" };
    if (-4..15).contains(&exp) {
        let (int_part, frac_part) = if exp >= 0 {
            let point = (exp as usize) + 1;
            if digits.len() > point {
                (digits[..point].to_string(), digits[point..].to_string())
            } else {
                (format!("{digits:0<point$}"), String::new())
            }
        } else {
            let zeros = "0".repeat((-exp - 1) as usize);
            ("0".to_string(), format!("{zeros}{digits}"))
        };
        let frac = if frac_part.is_empty() {
            "0".to_string()
        } else {
            frac_part
        };
        format!("{sign}{int_part}.{frac}")
    } else {
        let (first, rest) = digits.split_at(1);
        let rest = if rest.is_empty() { "0" } else { rest };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}.{rest}e{esign}{:02}", exp.abs())
    }
}

/// The text form of a value (`CAST(x AS TEXT)`); `None` for NULL.
pub(crate) fn to_text(v: &SqliteValue) -> Option<Cow<'_, str>> {
    match v {
        SqliteValue::Null => None,
        SqliteValue::Integer(i) => Some(Cow::Owned(i.to_string())),
        SqliteValue::Real(f) => Some(Cow::Owned(format_real(*f))),
        SqliteValue::Text(s) => Some(Cow::Borrowed(s)),
        SqliteValue::Blob(b) => Some(String::from_utf8_lossy(b)),
    }
}

/// The longest numeric prefix of `s` (after leading spaces), as SQLite's `CAST(s AS NUMERIC)`
/// reads it: an integer when it has no fraction/exponent and fits in i64, else a real. No digits
/// gives integer 0. The flag says whether the whole string (modulo surrounding spaces) was used.
pub(crate) fn parse_numeric_prefix(s: &str) -> (SqliteValue, bool) {
    let trimmed = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0c']);
    let b = trimmed.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - int_start;
    let mut is_real = false;
    if i < b.len() && b[i] == b'.' {
        let mut j = i + 1;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let frac = j - i - 1;
        if digits + frac > 0 {
            is_real = true;
            digits += frac;
            i = j;
        }
    }
    if digits == 0 {
        return (SqliteValue::Integer(0), false);
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let exp_start = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_start {
            is_real = true;
            i = j;
        }
    }
    let text = &trimmed[..i];
    let whole = trimmed[i..]
        .trim_end_matches([' ', '\t', '\n', '\r', '\x0c'])
        .is_empty();
    if !is_real && let Ok(v) = text.parse::<i64>() {
        return (SqliteValue::Integer(v), whole);
    }
    (SqliteValue::Real(text.parse::<f64>().unwrap_or(0.0)), whole)
}

/// Numeric value for arithmetic: integers and reals as they are, text by its numeric prefix,
/// NULL stays NULL.
pub(crate) fn to_numeric(v: &SqliteValue) -> SqliteValue {
    match v {
        SqliteValue::Null => SqliteValue::Null,
        SqliteValue::Integer(_) | SqliteValue::Real(_) => v.clone(),
        SqliteValue::Text(s) => parse_numeric_prefix(s).0,
        SqliteValue::Blob(b) => parse_numeric_prefix(&String::from_utf8_lossy(b)).0,
    }
}

/// A real converted to integer the way SQLite does (truncation, saturating).
pub(crate) fn real_to_integer(f: f64) -> i64 {
    if f.is_nan() {
        0
    } else {
        // `as` saturates at the i64 bounds.
        f as i64
    }
}

/// Truthiness in a boolean context: `None` for NULL.
pub(crate) fn truthy(v: &SqliteValue) -> Option<bool> {
    match to_numeric(v) {
        SqliteValue::Null => None,
        SqliteValue::Integer(i) => Some(i != 0),
        SqliteValue::Real(f) => Some(f != 0.0),
        _ => Some(false),
    }
}

/// A SQL boolean result (1/0, NULL for unknown).
pub(crate) fn bool_value(b: Option<bool>) -> SqliteValue {
    match b {
        None => SqliteValue::Null,
        Some(true) => SqliteValue::Integer(1),
        Some(false) => SqliteValue::Integer(0),
    }
}

/// `CAST(v AS ty)`.
pub(crate) fn cast(v: &SqliteValue, ty: CastType) -> SqliteValue {
    if v.is_null() {
        return SqliteValue::Null;
    }
    match ty {
        CastType::Text => match to_text(v) {
            Some(s) => SqliteValue::Text(s.into_owned()),
            None => SqliteValue::Null,
        },
        CastType::Blob => match v {
            SqliteValue::Blob(b) => SqliteValue::Blob(b.clone()),
            other => SqliteValue::Blob(
                to_text(other)
                    .map(|s| s.into_owned().into_bytes())
                    .unwrap_or_default(),
            ),
        },
        CastType::Integer => match to_numeric(v) {
            SqliteValue::Real(f) => SqliteValue::Integer(real_to_integer(f)),
            other => other,
        },
        CastType::Real => match to_numeric(v) {
            SqliteValue::Integer(i) => SqliteValue::Real(i as f64),
            other => other,
        },
        CastType::Numeric => match to_numeric(v) {
            SqliteValue::Real(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => {
                SqliteValue::Integer(f as i64)
            }
            other => other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reals_format_like_sqlite() {
        let cases = [
            (1.0, "1.0"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (0.1 + 0.2, "0.3"),
            (1e20, "1.0e+20"),
            (123456789012345.0, "123456789012345.0"),
            (1e15, "1.0e+15"),
            (0.0001, "0.0001"),
            (0.00001, "1.0e-05"),
            (f64::INFINITY, "Inf"),
        ];
        for (f, expected) in cases {
            assert_eq!(format_real(f), expected, "{f}");
        }
    }

    #[test]
    fn numeric_prefixes() {
        assert_eq!(
            parse_numeric_prefix("12abc"),
            (SqliteValue::Integer(12), false)
        );
        assert_eq!(
            parse_numeric_prefix(" 12 "),
            (SqliteValue::Integer(12), true)
        );
        assert_eq!(
            parse_numeric_prefix("1.5e2"),
            (SqliteValue::Real(150.0), true)
        );
        assert_eq!(
            parse_numeric_prefix("abc"),
            (SqliteValue::Integer(0), false)
        );
        assert_eq!(parse_numeric_prefix("-7"), (SqliteValue::Integer(-7), true));
        assert_eq!(
            parse_numeric_prefix("99999999999999999999"),
            (SqliteValue::Real(1e20), true)
        );
    }

    #[test]
    fn casts() {
        let t = |s: &str| SqliteValue::Text(s.into());
        assert_eq!(cast(&t("3.9"), CastType::Integer), SqliteValue::Integer(3));
        assert_eq!(cast(&t("3.0"), CastType::Numeric), SqliteValue::Integer(3));
        assert_eq!(
            cast(&SqliteValue::Integer(3), CastType::Real),
            SqliteValue::Real(3.0)
        );
        assert_eq!(cast(&SqliteValue::Real(2.5), CastType::Text), t("2.5"));
        assert_eq!(
            cast(&t("ab"), CastType::Blob),
            SqliteValue::Blob(b"ab".to_vec())
        );
        assert_eq!(cast(&SqliteValue::Null, CastType::Text), SqliteValue::Null);
    }
}
