//! The JSON rules of docs/types.md, in two forms: values written straight
//! into a row's buffer (the databases' drivers, where speed matters) and
//! `serde_json` values (the SQL APIs, which parse JSON pages anyway). Both
//! forms take their decision from one function per rule, and write the
//! same text serde_json would for the value, so a record's encoding and
//! fingerprint do not depend on which form produced it.

use std::io::Write as _;

use serde_json::Value;

use crate::rows::{NotUtf8, ValueError};

/// The largest integer a JSON number keeps exactly in every consumer (a
/// double's 53-bit mantissa; JavaScript's `Number.MAX_SAFE_INTEGER`).
const MAX_SAFE_INTEGER: i128 = (1 << 53) - 1;

/// Writing to a `Vec` cannot fail, so serde_json's `Result` is dropped.
fn put(out: &mut Vec<u8>, v: &(impl serde::Serialize + ?Sized)) {
    let _ = serde_json::to_writer(out, v);
}

/// Integers a double holds exactly stay numbers; the rest become strings
/// of their digits, so no consumer silently rounds them.
fn safe_integer(v: i128) -> Option<i64> {
    (v.abs() <= MAX_SAFE_INTEGER).then_some(v as i64)
}

pub(crate) fn integer(v: impl Into<i128>) -> Value {
    let v: i128 = v.into();
    match safe_integer(v) {
        Some(n) => Value::from(n),
        None => Value::String(v.to_string()),
    }
}

pub(crate) fn write_integer(out: &mut Vec<u8>, v: impl Into<i128>) {
    let v: i128 = v.into();
    match safe_integer(v) {
        Some(n) => put(out, &n),
        None => {
            out.push(b'"');
            put(out, &v);
            out.push(b'"');
        }
    }
}

/// NaN and the infinities, which JSON numbers cannot hold, by name.
fn non_finite(f: f64) -> Option<&'static str> {
    match f {
        f if f.is_finite() => None,
        f if f.is_nan() => Some("NaN"),
        f if f > 0.0 => Some("Infinity"),
        _ => Some("-Infinity"),
    }
}

pub(crate) fn float(f: f64) -> Value {
    match non_finite(f) {
        None => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        Some(name) => Value::String(name.into()),
    }
}

pub(crate) fn write_float(out: &mut Vec<u8>, f: f64) {
    match non_finite(f) {
        None => put(out, &f),
        Some(name) => put(out, name),
    }
}

/// What an exact decimal becomes.
enum Decimal {
    Whole(i64),
    Fraction(f64),
    /// Too many digits for a double: the text as a string.
    Digits,
}

/// An exact decimal, given as its plain digits (`-12.50`): a number when
/// it has at most 15 significant digits (a double holds those exactly; a
/// whole one is written without a fraction), otherwise its digits.
fn decimal_form(text: &str) -> Decimal {
    let digits = text.trim_start_matches(['-', '+']).as_bytes();
    let point = digits.contains(&b'.');
    // Positions among the digits of the first and last non-zero ones.
    let (mut total, mut first, mut last) = (0, None, None);
    for b in digits.iter().filter(|b| b.is_ascii_digit()) {
        if *b != b'0' {
            first.get_or_insert(total);
            last = Some(total);
        }
        total += 1;
    }
    let significant = match (first, last) {
        (None, _) | (_, None) => 0,
        // Trailing zeros after the point do not need precision.
        (Some(first), Some(last)) if point => last + 1 - first,
        (Some(first), Some(_)) => total - first,
    };
    if significant <= 15
        && let Ok(f) = text.parse::<f64>()
    {
        if f.fract() == 0.0 {
            return Decimal::Whole(f as i64);
        }
        if f.is_finite() {
            return Decimal::Fraction(f);
        }
    }
    Decimal::Digits
}

pub(crate) fn decimal(text: &str) -> Value {
    match decimal_form(text) {
        Decimal::Whole(n) => integer(n),
        Decimal::Fraction(f) => float(f),
        Decimal::Digits => Value::String(text.to_string()),
    }
}

pub(crate) fn write_decimal(out: &mut Vec<u8>, text: &str) {
    match decimal_form(text) {
        Decimal::Whole(n) => write_integer(out, n),
        Decimal::Fraction(f) => write_float(out, f),
        Decimal::Digits => put(out, text),
    }
}

pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    put(out, s);
}

/// Text from a database, as a JSON string; refused with its bytes when it
/// is not UTF-8, which JSON cannot carry.
pub(crate) fn write_text(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), NotUtf8> {
    let text = std::str::from_utf8(bytes).map_err(|_| NotUtf8::new(bytes))?;
    write_str(out, text);
    Ok(())
}

pub(crate) fn write_bool(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

pub(crate) fn write_null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"null");
}

/// Text a database holds as JSON that is none.
#[derive(Debug, thiserror::Error)]
#[error("not JSON: {0}")]
pub(crate) struct NotJson(serde_json::Error);

/// JSON text from the database as nested JSON (not a string), in the
/// compact form, re-encoded as it is read rather than built in memory.
/// Text that is not UTF-8 is told from text that is not JSON only once
/// reading has failed, so valid JSON is read once.
pub(crate) fn write_json_text(out: &mut Vec<u8>, text: &[u8]) -> Result<(), ValueError<NotJson>> {
    let mut from = serde_json::Deserializer::from_slice(text);
    serde_transcode::transcode(&mut from, &mut serde_json::Serializer::new(&mut *out))
        .and_then(|()| from.end())
        .map_err(|e| match std::str::from_utf8(text) {
            Ok(_) => ValueError::Failed(NotJson(e)),
            Err(_) => ValueError::NotUtf8(NotUtf8::new(text)),
        })
}

/// `n` as at least two digits.
fn two_digits(out: &mut Vec<u8>, n: u32) {
    if n < 100 {
        out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
    } else {
        put(out, &n);
    }
}

/// `YYYY-MM-DD`, unquoted, for years 0 to 9999; false (and nothing
/// written) for others, which need a sign or more digits.
pub(crate) fn write_date(out: &mut Vec<u8>, year: i32, month: u32, day: u32) -> bool {
    let Ok(year) = u32::try_from(year) else {
        return false;
    };
    if year > 9999 {
        return false;
    }
    two_digits(out, year / 100);
    two_digits(out, year % 100);
    out.push(b'-');
    two_digits(out, month);
    out.push(b'-');
    two_digits(out, day);
    true
}

/// `HH:MM:SS`, unquoted; hours past 23 are written as they are.
pub(crate) fn write_clock(out: &mut Vec<u8>, hours: u32, minutes: u32, seconds: u32) {
    two_digits(out, hours);
    out.push(b':');
    two_digits(out, minutes);
    out.push(b':');
    two_digits(out, seconds);
}

/// How the fraction of a second is written.
#[derive(Clone, Copy)]
pub(crate) enum Fraction {
    /// Up to six digits, trailing zeros dropped (Postgres's own style).
    Trimmed,
    /// Three, six or nine digits, as few as hold it (chrono's `%.f`).
    Grouped,
}

/// `.f` for a fraction of a second given in nanoseconds; nothing for none.
pub(crate) fn write_fraction(out: &mut Vec<u8>, nanos: u32, style: Fraction) {
    if nanos == 0 {
        return;
    }
    let mut digits = [0u8; 9];
    let mut n = nanos;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let len = match style {
        Fraction::Trimmed => 6 - digits[..6].iter().rev().take_while(|&&d| d == b'0').count(),
        Fraction::Grouped if nanos.is_multiple_of(1_000_000) => 3,
        Fraction::Grouped if nanos.is_multiple_of(1_000) => 6,
        Fraction::Grouped => 9,
    };
    if len > 0 {
        out.push(b'.');
        out.extend_from_slice(&digits[..len]);
    }
}

/// A date and time as a JSON string, `YYYY-MM-DDTHH:MM:SS[.f]` with the
/// fraction as [`Fraction::Grouped`], then `zone` (`Z` or nothing).
pub(crate) fn write_datetime(out: &mut Vec<u8>, t: chrono::NaiveDateTime, zone: &str) {
    use chrono::{Datelike, Timelike};
    out.push(b'"');
    if write_date(out, t.year(), t.month(), t.day()) {
        out.push(b'T');
        write_clock(out, t.hour(), t.minute(), t.second());
        write_fraction(out, t.nanosecond(), Fraction::Grouped);
    } else {
        let _ = write!(out, "{}", t.format("%Y-%m-%dT%H:%M:%S%.f"));
    }
    out.extend_from_slice(zone.as_bytes());
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn written(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        write(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn numbers_stay_exact() {
        assert_eq!(
            integer(9_007_199_254_740_991_i64),
            json!(9007199254740991_i64)
        );
        assert_eq!(
            integer(-9_007_199_254_740_991_i64),
            json!(-9007199254740991_i64)
        );
        assert_eq!(
            integer(9_007_199_254_740_992_i64),
            json!("9007199254740992")
        );
        assert_eq!(integer(u64::MAX), json!("18446744073709551615"));
        assert_eq!(decimal("12.50"), json!(12.5));
        assert_eq!(decimal("-0.000123"), json!(-0.000123));
        assert_eq!(decimal("123456789012345"), json!(123456789012345_i64));
        assert_eq!(decimal("-100.00"), json!(-100));
        assert_eq!(decimal("1234567890.123456"), json!("1234567890.123456"));
        assert_eq!(
            decimal("99999999999999999999"),
            json!("99999999999999999999")
        );
        assert_eq!(decimal("0.000"), json!(0));
        assert_eq!(decimal("NaN"), json!("NaN"));
        assert_eq!(float(f64::NAN), json!("NaN"));
        assert_eq!(float(f64::NEG_INFINITY), json!("-Infinity"));
    }

    #[test]
    fn both_forms_write_the_same_text() {
        for text in [
            "12.50",
            "-0.000123",
            "123456789012345",
            "1234567890123456",
            "-100.00",
            "0",
            "99999999999999999999.5",
            "NaN",
            "Infinity",
        ] {
            let value = decimal(text).to_string();
            assert_eq!(written(|o| write_decimal(o, text)), value, "{text}");
        }
        for v in [0_i128, -1, 1 << 53, -(1 << 53) + 1, i128::from(u64::MAX)] {
            assert_eq!(written(|o| write_integer(o, v)), integer(v).to_string());
        }
        for f in [0.1, -2.5e-300, 1e21, f64::NAN, f64::INFINITY] {
            assert_eq!(written(|o| write_float(o, f)), float(f).to_string());
        }
    }

    #[test]
    fn json_text_is_written_compact_as_serde_json_would() {
        let text = br#" {"b": [1, 2.50, -3e2, null], "a": {"x": "\u00e9\n"}, "big": 18446744073709551616} "#;
        let value: Value = serde_json::from_slice(text).unwrap();
        assert_eq!(
            written(|o| write_json_text(o, text).unwrap()),
            value.to_string()
        );
        assert!(matches!(
            write_json_text(&mut Vec::new(), b"{\"a\": 1} x"),
            Err(ValueError::Failed(_))
        ));
        assert!(write_json_text(&mut Vec::new(), b"{\"a\":").is_err());
        assert!(matches!(
            write_json_text(&mut Vec::new(), b"{\"a\": \"\xff\"}"),
            Err(ValueError::NotUtf8(_))
        ));
    }

    #[test]
    fn text_that_is_not_utf8_is_refused_with_its_bytes() {
        assert_eq!(
            written(|o| write_text(o, "hé\"".as_bytes()).unwrap()),
            r#""hé\"""#
        );
        let e = write_text(&mut Vec::new(), b"Jos\xe9").unwrap_err();
        assert_eq!(e.escaped(), r"Jos\xe9");
        assert_eq!(e.to_string(), r#"byte 0xe9 at offset 3: "Jos\xe9""#);
    }

    #[test]
    fn dates_clocks_and_fractions() {
        let stamp = |y, nanos, style| {
            written(|o| {
                assert!(write_date(o, y, 2, 9));
                o.push(b'T');
                write_clock(o, 7, 5, 3);
                write_fraction(o, nanos, style);
            })
        };
        assert_eq!(stamp(2024, 0, Fraction::Trimmed), "2024-02-09T07:05:03");
        assert_eq!(
            stamp(33, 500_000_000, Fraction::Trimmed),
            "0033-02-09T07:05:03.5"
        );
        assert_eq!(
            stamp(2024, 120_000, Fraction::Trimmed),
            "2024-02-09T07:05:03.00012"
        );
        assert_eq!(
            stamp(2024, 500_000_000, Fraction::Grouped),
            "2024-02-09T07:05:03.500"
        );
        assert_eq!(
            stamp(2024, 120_000, Fraction::Grouped),
            "2024-02-09T07:05:03.000120"
        );
        assert!(!write_date(&mut Vec::new(), 10_000, 1, 1));
        let t = chrono::NaiveDate::from_ymd_opt(2024, 5, 1)
            .unwrap()
            .and_hms_micro_opt(10, 0, 0, 250_000)
            .unwrap();
        assert_eq!(
            written(|o| write_datetime(o, t, "Z")),
            format!(
                "\"{}\"",
                t.and_utc()
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            )
        );
        let far = chrono::NaiveDate::from_ymd_opt(12_345, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        assert_eq!(
            written(|o| write_datetime(o, far, "")),
            "\"+12345-01-01T00:00:00\""
        );
        assert!(!write_date(&mut Vec::new(), -1, 1, 1));
        assert_eq!(written(|o| write_clock(o, 100, 0, 1)), "100:00:01");
    }
}
