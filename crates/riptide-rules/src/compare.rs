//! SQLite comparison: storage-class order (NULL < numbers < text < blob), numeric comparison
//! across integer and real, and the affinity conversions applied before comparing.

use std::cmp::Ordering;

use crate::SqliteValue;
use crate::cast::{CastType, parse_numeric_prefix};

/// The affinity an expression carries into a comparison. Only `CAST` gives one here: source
/// rows have no declared column types, so columns, literals and function results have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Affinity {
    None,
    Text,
    Numeric,
}

impl From<CastType> for Affinity {
    fn from(t: CastType) -> Self {
        match t {
            CastType::Text => Affinity::Text,
            CastType::Blob => Affinity::None,
            CastType::Integer | CastType::Real | CastType::Numeric => Affinity::Numeric,
        }
    }
}

fn apply_numeric(v: &SqliteValue) -> Option<SqliteValue> {
    match v {
        SqliteValue::Text(s) => match parse_numeric_prefix(s) {
            (n, true) => Some(n),
            _ => None,
        },
        _ => None,
    }
}

fn apply_text(v: &SqliteValue) -> Option<SqliteValue> {
    match v {
        SqliteValue::Integer(_) | SqliteValue::Real(_) => {
            crate::cast::to_text(v).map(|s| SqliteValue::Text(s.into_owned()))
        }
        _ => None,
    }
}

/// Compares two values after SQLite's affinity rules; `None` when either side is NULL.
pub(crate) fn compare(
    a: &SqliteValue,
    a_aff: Affinity,
    b: &SqliteValue,
    b_aff: Affinity,
) -> Option<Ordering> {
    if a.is_null() || b.is_null() {
        return None;
    }
    // Numeric affinity on one side converts well-formed text on the other side.
    let (ca, cb) = match (a_aff, b_aff) {
        (Affinity::Numeric, Affinity::Text | Affinity::None) => (None, apply_numeric(b)),
        (Affinity::Text | Affinity::None, Affinity::Numeric) => (apply_numeric(a), None),
        (Affinity::Text, Affinity::None) => (None, apply_text(b)),
        (Affinity::None, Affinity::Text) => (apply_text(a), None),
        _ => (None, None),
    };
    Some(compare_values(
        ca.as_ref().unwrap_or(a),
        cb.as_ref().unwrap_or(b),
    ))
}

fn class_rank(v: &SqliteValue) -> u8 {
    match v {
        SqliteValue::Null => 0,
        SqliteValue::Integer(_) | SqliteValue::Real(_) => 1,
        SqliteValue::Text(_) => 2,
        SqliteValue::Blob(_) => 3,
    }
}

fn compare_int_real(i: i64, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Greater;
    }
    if f >= 9.223_372_036_854_776e18 {
        return Ordering::Less;
    }
    if f < -9.223_372_036_854_776e18 {
        return Ordering::Greater;
    }
    let t = f.trunc() as i64;
    match i.cmp(&t) {
        Ordering::Equal => 0.0_f64
            .partial_cmp(&(f - f.trunc()))
            .unwrap_or(Ordering::Equal),
        o => o,
    }
}

/// Total order of SQLite values without conversions (the order of `ORDER BY`).
pub(crate) fn compare_values(a: &SqliteValue, b: &SqliteValue) -> Ordering {
    use SqliteValue::*;
    match (a, b) {
        (Integer(x), Integer(y)) => x.cmp(y),
        (Real(x), Real(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (Integer(x), Real(y)) => compare_int_real(*x, *y),
        (Real(x), Integer(y)) => compare_int_real(*y, *x).reverse(),
        (Text(x), Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Blob(x), Blob(y)) => x.cmp(y),
        _ => class_rank(a).cmp(&class_rank(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_class_order() {
        let t = SqliteValue::Text("1".into());
        let i = SqliteValue::Integer(1);
        assert_eq!(
            compare(&i, Affinity::None, &t, Affinity::None),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare(&i, Affinity::Numeric, &t, Affinity::None),
            Some(Ordering::Equal)
        );
        assert_eq!(
            compare(&i, Affinity::None, &t, Affinity::Text),
            Some(Ordering::Equal)
        );
        assert_eq!(
            compare(
                &SqliteValue::Integer(2),
                Affinity::None,
                &SqliteValue::Real(2.0),
                Affinity::None
            ),
            Some(Ordering::Equal)
        );
        assert_eq!(
            compare(
                &SqliteValue::Integer(i64::MAX),
                Affinity::None,
                &SqliteValue::Real(9.3e18),
                Affinity::None
            ),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare(&SqliteValue::Null, Affinity::None, &i, Affinity::None),
            None
        );
    }
}
