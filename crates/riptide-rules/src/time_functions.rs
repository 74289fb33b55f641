//! `unixepoch(…)` and `datetime(…)`: SQLite time values (ISO-8601 text, Julian day numbers,
//! or Unix seconds with the `unixepoch` modifier). Pure: `'now'` gives NULL.

use crate::SqliteValue;

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

fn num(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `YYYY-MM-DD[( |T)HH:MM[:SS[.fff]]][Z|±HH:MM]` into Unix milliseconds.
fn parse_text(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = if s.len() > 10 {
        s.split_at_checked(10)?
    } else {
        (s, "")
    };
    let mut parts = date.split('-');
    let (y, m, d) = (
        num(parts.next()?)?,
        num(parts.next()?)?,
        num(parts.next()?)?,
    );
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut millis = days_from_civil(y, m, d) * 86_400_000;
    let rest = rest.strip_prefix(['T', ' ']).unwrap_or(rest);
    if rest.is_empty() {
        return Some(millis);
    }
    let (time, offset) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => rest.split_at_checked(i)?,
        None => (rest, ""),
    };
    let mut t = time.trim().split(':');
    let h = num(t.next()?)?;
    let mi = num(t.next()?)?;
    let sec: f64 = match t.next() {
        Some(sec) => sec.parse().ok().filter(|v: &f64| (0.0..61.0).contains(v))?,
        None => 0.0,
    };
    if t.next().is_some() || h > 24 || mi > 59 {
        return None;
    }
    millis += (h * 3600 + mi * 60) * 1000 + (sec * 1000.0).round() as i64;
    let offset = offset.trim();
    if !offset.is_empty() && !offset.eq_ignore_ascii_case("z") {
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (oh, om) = offset.get(1..)?.split_once(':')?;
        millis -= sign * (num(oh)? * 3600 + num(om)? * 60) * 1000;
    }
    Some(millis)
}

/// The time value of the arguments in Unix milliseconds, or `None` (→ NULL).
fn time_value(args: &[SqliteValue]) -> Option<i64> {
    let (first, modifiers) = args.split_first()?;
    let unix_modifier = match modifiers {
        [] => false,
        [SqliteValue::Text(m)] if m.eq_ignore_ascii_case("unixepoch") => true,
        _ => return None,
    };
    match first {
        SqliteValue::Integer(_) | SqliteValue::Real(_) => {
            let f = match first {
                SqliteValue::Integer(i) => *i as f64,
                SqliteValue::Real(f) => *f,
                _ => return None,
            };
            if !f.is_finite() {
                return None;
            }
            if unix_modifier {
                Some((f * 1000.0).round() as i64)
            } else {
                // Julian day number.
                Some(((f - 2_440_587.5) * 86_400_000.0).round() as i64)
            }
        }
        SqliteValue::Text(s) if !unix_modifier => parse_text(s),
        SqliteValue::Text(s) => match crate::cast::parse_numeric_prefix(s) {
            (n, true) => time_value(&[n, SqliteValue::Text("unixepoch".into())]),
            _ => None,
        },
        _ => None,
    }
}

/// `unixepoch(time, [modifier])`: integer Unix seconds.
pub(crate) fn unixepoch(args: &[SqliteValue]) -> SqliteValue {
    time_value(args).map_or(SqliteValue::Null, |ms| {
        SqliteValue::Integer(ms.div_euclid(1000))
    })
}

/// `datetime(time, [modifier])`: `YYYY-MM-DD HH:MM:SS` in UTC.
pub(crate) fn datetime(args: &[SqliteValue]) -> SqliteValue {
    let Some(ms) = time_value(args) else {
        return SqliteValue::Null;
    };
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    SqliteValue::Text(format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> SqliteValue {
        SqliteValue::Text(s.into())
    }

    #[test]
    fn times() {
        assert_eq!(unixepoch(&[t("1970-01-02")]), SqliteValue::Integer(86_400));
        assert_eq!(
            unixepoch(&[t("2024-05-01T11:45:10.123Z")]),
            SqliteValue::Integer(1_714_563_910)
        );
        assert_eq!(
            unixepoch(&[t("2024-05-01 13:45:10+02:00")]),
            SqliteValue::Integer(1_714_563_910)
        );
        assert_eq!(
            datetime(&[SqliteValue::Integer(1_714_563_910), t("unixepoch")]),
            t("2024-05-01 11:45:10")
        );
        assert_eq!(
            datetime(&[SqliteValue::Real(2_440_587.5)]),
            t("1970-01-01 00:00:00")
        );
        assert_eq!(datetime(&[t("now")]), SqliteValue::Null);
        assert_eq!(unixepoch(&[t("garbage")]), SqliteValue::Null);
    }
}
