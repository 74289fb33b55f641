//! `unixepoch(…)` and `datetime(…)`: SQLite time values (ISO-8601 text, Julian day numbers,
//! or Unix seconds with the `unixepoch` modifier) and SQLite's modifiers (`±N days|hours|
//! minutes|seconds|months|years`, `±HH:MM[:SS]`, `±YYYY-MM-DD`, `start of day|month|year`,
//! `weekday N`, `unixepoch`, `julianday`, `auto`, `subsec`; `localtime`/`utc` do nothing:
//! the service's time zone is UTC). Pure: `'now'` gives NULL. The official service accepts
//! only `unixepoch` and `subsec` (others give NULL there).

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

/// Milliseconds per unit of the `±NNN <unit>` modifiers that add a fixed duration.
fn unit_millis(unit: &str) -> Option<f64> {
    Some(match unit.strip_suffix('s').unwrap_or(unit) {
        "second" => 1_000.0,
        "minute" => 60_000.0,
        "hour" => 3_600_000.0,
        "day" => 86_400_000.0,
        _ => return None,
    })
}

/// A time being computed: Unix milliseconds, and whether the result shows milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Time {
    ms: i64,
    subsec: bool,
}

const DAY_MS: i64 = 86_400_000;

/// `0000-01-01 00:00:00` and `9999-12-31 23:59:59.999` in Unix milliseconds: SQLite's range.
const MIN_MS: i64 = -62_167_219_200_000;
const MAX_MS: i64 = 253_402_300_799_999;

fn from_f64_ms(f: f64) -> Option<i64> {
    let ms = f.round();
    (ms.is_finite() && (MIN_MS as f64..=MAX_MS as f64).contains(&ms)).then_some(ms as i64)
}

/// Unix milliseconds of a Julian day number.
fn julian_ms(day: f64) -> Option<i64> {
    from_f64_ms((day - 2_440_587.5) * 86_400_000.0)
}

/// Adds whole months (SQLite: the day of month is kept and overflows into the next month).
fn add_months(ms: i64, months: i64) -> Option<i64> {
    let days = ms.div_euclid(DAY_MS);
    let time = ms.rem_euclid(DAY_MS);
    let (y, m, d) = civil_from_days(days);
    let total = y.checked_mul(12)?.checked_add(m - 1)?.checked_add(months)?;
    let (y, m) = (total.div_euclid(12), total.rem_euclid(12) + 1);
    if !(-1..=10_000).contains(&y) {
        return None;
    }
    Some(days_from_civil(y, m, d) * DAY_MS + time)
}

/// `±HH:MM[:SS[.SSS]]` as milliseconds (without the sign).
fn clock_ms(s: &str) -> Option<i64> {
    let mut parts = s.split(':');
    let h = num(parts.next()?)?;
    let m = num(parts.next()?)?;
    let sec: f64 = match parts.next() {
        Some(sec) if !sec.is_empty() && sec.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
            sec.parse().ok()?
        }
        Some(_) => return None,
        None => 0.0,
    };
    if parts.next().is_some() || m > 59 || sec >= 60.0 {
        return None;
    }
    Some((h * 3600 + m * 60) * 1000 + (sec * 1000.0).round() as i64)
}

/// Applies one modifier (already lower-case and trimmed). `None`: invalid (→ NULL).
fn apply_modifier(t: Time, modifier: &str) -> Option<Time> {
    let Time { ms, subsec } = t;
    let with = |ms: i64| {
        (MIN_MS..=MAX_MS)
            .contains(&ms)
            .then_some(Time { ms, subsec })
    };
    match modifier {
        "subsec" | "subsecond" => return Some(Time { ms, subsec: true }),
        // The service runs in UTC: local time is UTC.
        "localtime" | "utc" => return Some(t),
        "start of day" => return with(ms.div_euclid(DAY_MS) * DAY_MS),
        "start of month" | "start of year" => {
            let (y, m, _) = civil_from_days(ms.div_euclid(DAY_MS));
            let m = if modifier == "start of year" { 1 } else { m };
            return with(days_from_civil(y, m, 1) * DAY_MS);
        }
        _ => {}
    }
    if let Some(n) = modifier.strip_prefix("weekday ") {
        let n = num(n.trim())?;
        if n > 6 {
            return None;
        }
        // 1970-01-01 was a Thursday (4); Sunday is 0.
        let days = ms.div_euclid(DAY_MS);
        let weekday = (days + 4).rem_euclid(7);
        return with(ms + (n - weekday).rem_euclid(7) * DAY_MS);
    }
    let (sign, rest) = match modifier.as_bytes().first()? {
        b'+' => (1i64, modifier.get(1..)?),
        b'-' => (-1i64, modifier.get(1..)?),
        _ => (1i64, modifier),
    };
    // `±NNN[.NNN] <unit>`
    if let Some((amount, unit)) = rest.split_once(char::is_whitespace) {
        let unit = unit.trim();
        let amount: f64 = amount.parse().ok().filter(|a: &f64| a.is_finite())?;
        let amount = amount * sign as f64;
        if let Some(per) = unit_millis(unit) {
            return with(from_f64_ms(ms as f64 + amount * per)?);
        }
        let (whole, per_month_days) = match unit.strip_suffix('s').unwrap_or(unit) {
            "month" => (amount.trunc() as i64, 30.0),
            "year" => ((amount.trunc() as i64).checked_mul(12)?, 365.0),
            _ => return None,
        };
        let shifted = add_months(ms, whole)?;
        // SQLite adds a fractional month (year) as 30 (365) days.
        let fraction = amount.fract() * per_month_days * 86_400_000.0;
        return with(from_f64_ms(shifted as f64 + fraction)?);
    }
    // `±HH:MM[:SS[.SSS]]` or `±YYYY-MM-DD[ HH:MM[:SS[.SSS]]]`
    if modifier.starts_with(['+', '-']) {
        if rest.contains(':') && !rest.contains('-') {
            return with(ms.checked_add(sign * clock_ms(rest)?)?);
        }
        let (date, time) = match rest.split_once([' ', 't']) {
            Some((d, t)) => (d, Some(t)),
            None => (rest, None),
        };
        let mut parts = date.split('-');
        let (y, m, d) = (
            num(parts.next()?)?,
            num(parts.next()?)?,
            num(parts.next()?)?,
        );
        if parts.next().is_some() || m > 11 || d > 30 {
            return None;
        }
        let shifted = add_months(ms, sign * (y.checked_mul(12)?.checked_add(m)?))?;
        let extra = d * DAY_MS + time.map(clock_ms).unwrap_or(Some(0))?;
        return with(shifted.checked_add(sign * extra)?);
    }
    None
}

/// The time value of the arguments, or `None` (→ NULL): the first is ISO-8601 text, a
/// Julian day number, or (with a first modifier `unixepoch`, or `auto` for a number in its
/// range) Unix seconds; the rest are SQLite modifiers applied left to right.
fn time_value(args: &[SqliteValue]) -> Option<Time> {
    let (first, modifiers) = args.split_first()?;
    let mut modifiers = modifiers
        .iter()
        .map(|m| match m {
            SqliteValue::Text(m) => Some(m.trim().to_ascii_lowercase()),
            _ => None,
        })
        .peekable();
    let number = match first {
        SqliteValue::Integer(i) => Some(*i as f64),
        SqliteValue::Real(f) => Some(*f),
        SqliteValue::Text(s) => match crate::cast::parse_numeric_prefix(s) {
            (SqliteValue::Integer(i), true) => Some(i as f64),
            (SqliteValue::Real(f), true) => Some(f),
            _ => None,
        },
        _ => None,
    };
    let ms = match number {
        Some(f) => {
            let format = match modifiers.peek() {
                Some(Some(m)) if m == "unixepoch" || m == "julianday" || m == "auto" => {
                    let m = m.clone();
                    modifiers.next();
                    m
                }
                _ => "julianday".to_owned(),
            };
            let unix = match format.as_str() {
                "unixepoch" => true,
                "auto" => !(0.0..5_373_484.5).contains(&f),
                _ => false,
            };
            if unix {
                from_f64_ms(f * 1000.0)?
            } else {
                julian_ms(f)?
            }
        }
        None => match first {
            SqliteValue::Text(s) => parse_text(s)?,
            _ => return None,
        },
    };
    let mut t = Time { ms, subsec: false };
    for m in modifiers {
        t = apply_modifier(t, &m?)?;
    }
    Some(t)
}

/// `unixepoch(time, modifier…)`: integer Unix seconds (a real with `subsec`).
pub(crate) fn unixepoch(args: &[SqliteValue]) -> SqliteValue {
    match time_value(args) {
        None => SqliteValue::Null,
        Some(Time { ms, subsec: true }) => SqliteValue::Real(ms as f64 / 1000.0),
        Some(Time { ms, .. }) => SqliteValue::Integer(ms.div_euclid(1000)),
    }
}

/// `datetime(time, modifier…)`: `YYYY-MM-DD HH:MM:SS` in UTC (`.SSS` added with `subsec`).
pub(crate) fn datetime(args: &[SqliteValue]) -> SqliteValue {
    let Some(Time { ms, subsec }) = time_value(args) else {
        return SqliteValue::Null;
    };
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    if !(0..=9999).contains(&y) {
        return SqliteValue::Null;
    }
    let sod = secs.rem_euclid(86_400);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if subsec {
        out.push_str(&format!(".{:03}", ms.rem_euclid(1000)));
    }
    SqliteValue::Text(out)
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
        assert_eq!(
            datetime(&[SqliteValue::Integer(1_714_563_910), t("auto")]),
            t("2024-05-01 11:45:10")
        );
        assert_eq!(
            datetime(&[SqliteValue::Real(2_460_432.0), t("auto")]),
            t("2024-05-01 12:00:00")
        );
        assert_eq!(datetime(&[t("2460431.5")]), t("2024-05-01 00:00:00"));
        assert_eq!(unixepoch(&[t("garbage")]), SqliteValue::Null);
    }

    /// SQLite's modifiers, with the values SQLite gives.
    #[test]
    fn modifiers() {
        let cases: Vec<(Vec<SqliteValue>, SqliteValue)> = vec![
            (
                vec![t("2024-05-01 13:45:10"), t("+1 day")],
                t("2024-05-02 13:45:10"),
            ),
            (
                vec![t("2024-05-01 13:45:10"), t("-2 hours")],
                t("2024-05-01 11:45:10"),
            ),
            (
                vec![t("2024-05-01 13:45:10"), t("+90 minutes")],
                t("2024-05-01 15:15:10"),
            ),
            (
                vec![t("2024-05-01 13:45:10"), t("+1.5 seconds"), t("subsec")],
                t("2024-05-01 13:45:11.500"),
            ),
            (
                vec![t("2024-01-31"), t("+1 month")],
                t("2024-03-02 00:00:00"),
            ),
            (
                vec![t("2023-01-31"), t("+1.5 months")],
                t("2023-03-18 00:00:00"),
            ),
            (
                vec![t("2024-02-29"), t("+1 year")],
                t("2025-03-01 00:00:00"),
            ),
            (
                vec![t("2024-05-01"), t("-3 months")],
                t("2024-02-01 00:00:00"),
            ),
            (
                vec![t("2024-05-01 13:45:10"), t("start of day")],
                t("2024-05-01 00:00:00"),
            ),
            (
                vec![t("2024-05-17 08:00"), t("START OF MONTH")],
                t("2024-05-01 00:00:00"),
            ),
            (
                vec![
                    t("2024-05-17"),
                    t("start of year"),
                    t("+2 years"),
                    t("-1 day"),
                ],
                t("2025-12-31 00:00:00"),
            ),
            (
                vec![t("2024-05-01 10:00"), t("+01:30")],
                t("2024-05-01 11:30:00"),
            ),
            (
                vec![t("2024-05-01 10:00"), t("-00:00:30.5"), t("subsec")],
                t("2024-05-01 09:59:29.500"),
            ),
            (
                vec![t("2024-05-01"), t("-0001-02-03")],
                t("2023-02-26 00:00:00"),
            ),
            (
                vec![t("2024-05-01"), t("weekday 0")],
                t("2024-05-05 00:00:00"),
            ),
            (
                vec![t("2024-05-01"), t("weekday 3")],
                t("2024-05-01 00:00:00"),
            ),
            (
                vec![t("2024-05-01"), t("localtime"), t("utc")],
                t("2024-05-01 00:00:00"),
            ),
            (
                vec![
                    SqliteValue::Real(1_714_563_910.5),
                    t("unixepoch"),
                    t("subsec"),
                ],
                t("2024-05-01 11:45:10.500"),
            ),
            (
                vec![t("1714563910"), t("unixepoch")],
                t("2024-05-01 11:45:10"),
            ),
            // Invalid modifiers, or `unixepoch` not right after a number: NULL.
            (vec![t("2024-05-01"), t("unixepoch")], SqliteValue::Null),
            (
                vec![SqliteValue::Integer(0), t("+1 day"), t("unixepoch")],
                SqliteValue::Null,
            ),
            (vec![t("2024-05-01"), t("+1 fortnight")], SqliteValue::Null),
            (vec![t("2024-05-01"), t("weekday 7")], SqliteValue::Null),
            (
                vec![t("2024-05-01"), SqliteValue::Integer(1)],
                SqliteValue::Null,
            ),
            (vec![t("9999-12-31"), t("+1 day")], SqliteValue::Null),
            (vec![t("2024-05-01"), t("+1e400 days")], SqliteValue::Null),
        ];
        let mut failures = Vec::new();
        for (args, expected) in cases {
            let got = datetime(&args);
            if got != expected {
                failures.push(format!(
                    "datetime{args:?}: expected {expected:?}, got {got:?}"
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert_eq!(
            unixepoch(&[t("2024-05-01 11:45:10.123"), t("subsec")]),
            SqliteValue::Real(1_714_563_910.123)
        );
        assert_eq!(
            unixepoch(&[t("2024-05-01 11:45:10"), t("+1 day")]),
            SqliteValue::Integer(1_714_650_310)
        );
    }
}
