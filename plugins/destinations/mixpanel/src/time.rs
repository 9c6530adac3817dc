//! An event's `time` as Mixpanel wants it: milliseconds since the epoch.
//! Warehouses give times as numbers (seconds or milliseconds since the
//! epoch) or as ISO 8601 text (`2024-05-01T10:00:00.5Z`, a zone-less
//! timestamp taken as UTC, or a date), so both are read here.

use serde_json::Value;

/// Numbers at or above this are milliseconds, below it seconds (10^11
/// seconds is the year 5138; 10^11 milliseconds is March 1973).
const MILLIS_FROM: f64 = 1e11;

/// `value` in milliseconds since the epoch, or why it is not a time.
pub fn millis(value: &Value) -> Result<i64, String> {
    let number = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(text) => match text.trim().parse::<f64>() {
            Ok(n) => Some(n),
            Err(_) => return iso8601(text.trim()).ok_or_else(|| unreadable(value)),
        },
        _ => None,
    };
    match number {
        Some(n) if n.is_finite() && n.abs() < MILLIS_FROM => Ok((n * 1000.0).round() as i64),
        Some(n) if n.is_finite() && n.abs() < MILLIS_FROM * 1000.0 => Ok(n.round() as i64),
        _ => Err(unreadable(value)),
    }
}

fn unreadable(value: &Value) -> String {
    format!(
        "`time` is {value}, not a time: give seconds or milliseconds since the epoch, \
         or an ISO 8601 timestamp such as 2024-05-01T10:00:00Z"
    )
}

/// `YYYY-MM-DD`, optionally followed by `T` (or a space) and
/// `HH:MM[:SS[.fff]]`, then `Z`, `±HH:MM` or nothing (UTC).
fn iso8601(text: &str) -> Option<i64> {
    let number = |part: &str, lo: i64, hi: i64| {
        let n = part.parse::<i64>().ok()?;
        (part.bytes().all(|b| b.is_ascii_digit()) && (lo..=hi).contains(&n)).then_some(n)
    };
    let (date, clock) = match text.find(['T', 't', ' ']) {
        Some(at) => (&text[..at], &text[at + 1..]),
        None => (text, "00:00"),
    };
    let mut parts = date.splitn(3, '-');
    let year = number(parts.next()?, 1, 9999)?;
    let month = number(parts.next()?, 1, 12)?;
    let day = number(parts.next()?, 1, 31)?;

    let (clock, offset_minutes) = split_zone(clock)?;
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut hms = hms.split(':');
    let hour = number(hms.next()?, 0, 23)?;
    let minute = number(hms.next()?, 0, 59)?;
    let second = hms.next().map_or(Some(0), |s| number(s, 0, 60))?;
    if hms.next().is_some() {
        return None;
    }
    let millis = match fraction {
        "" => 0,
        digits if digits.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{digits:0<3}")[..3].parse::<i64>().ok()?
        }
        _ => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

/// The clock without its zone, and the zone's offset east of UTC in
/// minutes (0 for `Z` or no zone).
fn split_zone(clock: &str) -> Option<(&str, i64)> {
    if let Some(clock) = clock.strip_suffix(['Z', 'z']) {
        return Some((clock, 0));
    }
    let Some(at) = clock.rfind(['+', '-']) else {
        return Some((clock, 0));
    };
    let (clock, zone) = clock.split_at(at);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let (hours, minutes) = zone[1..].split_once(':').unwrap_or((&zone[1..], "00"));
    let hours = hours.parse::<i64>().ok().filter(|h| *h <= 14)?;
    let minutes = minutes.parse::<i64>().ok().filter(|m| *m < 60)?;
    Some((clock, sign * (hours * 60 + minutes)))
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_are_seconds_or_milliseconds() {
        assert_eq!(millis(&json!(1_700_000_000)), Ok(1_700_000_000_000));
        assert_eq!(millis(&json!(1_700_000_000.25)), Ok(1_700_000_000_250));
        assert_eq!(millis(&json!(1_700_000_000_123_i64)), Ok(1_700_000_000_123));
        assert_eq!(millis(&json!("1700000000")), Ok(1_700_000_000_000));
    }

    #[test]
    fn iso_8601_text_is_read_in_utc_unless_it_says_otherwise() {
        for (text, expected) in [
            ("1970-01-01", 0),
            ("2024-05-01T10:00:00Z", 1_714_557_600_000),
            ("2024-05-01T10:00:00.5Z", 1_714_557_600_500),
            ("2024-05-01 10:00:00.123456", 1_714_557_600_123),
            ("2024-05-01T12:00:00+02:00", 1_714_557_600_000),
            ("2024-05-01T05:30-04:30", 1_714_557_600_000),
            ("2024-02-29T00:00:00", 1_709_164_800_000),
        ] {
            assert_eq!(millis(&json!(text)), Ok(expected), "{text}");
        }
    }

    #[test]
    fn anything_else_says_what_a_time_is() {
        for value in [
            json!("yesterday"),
            json!("2024-13-01"),
            json!("2024-05-01T25:00:00Z"),
            json!("2024-05-01T10:00:00:00"),
            json!(true),
            json!(null),
            json!("infinity"),
            json!("2024-05-01T10:00:00.éé"),
        ] {
            let error = millis(&value).unwrap_err();
            assert!(error.contains("ISO 8601"), "{value}: {error}");
        }
    }
}
