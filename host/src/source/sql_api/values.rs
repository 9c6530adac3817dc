//! Text the SQL APIs send, turned into Ebb's JSON values. Every API sends
//! values as strings (numbers too, so nothing is rounded on the way); these
//! are the conversions more than one of them needs. Times travel as exact
//! decimal seconds and are split without going through a float.

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use std::str::FromStr;

use crate::source::json;

/// A value an API sent that does not read as its column's type.
#[derive(Debug, thiserror::Error)]
pub enum BadValue {
    /// The text is not `what` ("an integer", "a date", …).
    #[error("`{text}` is not {what}")]
    Not { text: String, what: &'static str },
    #[error("`{0}` is out of range")]
    OutOfRange(String),
    #[error("`{0}` days is out of range")]
    DaysOutOfRange(String),
    #[error("holds text that is not JSON ({0})")]
    NotJson(serde_json::Error),
    /// A cell that should hold text.
    #[error("expected text, got {0}")]
    NotText(Value),
}

impl BadValue {
    /// `text`, which is not `what`.
    pub fn not(text: &str, what: &'static str) -> BadValue {
        BadValue::Not {
            text: text.to_string(),
            what,
        }
    }
}

/// Seconds and nanoseconds from decimal seconds such as `1714557600.5`,
/// `-0.25` or `1.7145576005E9`, exactly.
pub fn seconds(text: &str) -> Result<(i64, u32), BadValue> {
    let bad = || BadValue::not(text, "a number of seconds");
    let d = match text.contains(['e', 'E']) {
        true => Decimal::from_scientific(text),
        false => Decimal::from_str(text),
    }
    .map_err(|_| bad())?;
    let whole = d.floor();
    let nanos = ((d - whole) * Decimal::from(1_000_000_000)).trunc();
    let secs = i64::try_from(whole).map_err(|_| bad())?;
    let nanos = u32::try_from(nanos).map_err(|_| bad())?;
    Ok((secs, nanos))
}

/// The instant `text` seconds after the Unix epoch.
pub fn epoch(text: &str) -> Result<DateTime<Utc>, BadValue> {
    let (secs, nanos) = seconds(text)?;
    DateTime::from_timestamp(secs, nanos).ok_or_else(|| BadValue::OutOfRange(text.to_string()))
}

/// An instant as UTC RFC 3339 with `Z`.
pub fn instant(t: DateTime<Utc>) -> Value {
    Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// A timestamp without time zone, `YYYY-MM-DDTHH:MM:SS[.f]`.
pub fn wall_clock(t: NaiveDateTime) -> Value {
    Value::String(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string())
}

pub fn time(t: NaiveTime) -> Value {
    Value::String(t.to_string())
}

pub fn date(d: NaiveDate) -> Value {
    Value::String(d.to_string())
}

/// `YYYY-MM-DD[T| ]HH:MM:SS[.f]` without a zone.
pub fn parse_wall_clock(text: &str) -> Result<NaiveDateTime, BadValue> {
    NaiveDateTime::parse_from_str(&text.replacen(' ', "T", 1), "%Y-%m-%dT%H:%M:%S%.f")
        .map_err(|_| BadValue::not(text, "a date and time"))
}

pub fn parse_time(text: &str) -> Result<NaiveTime, BadValue> {
    NaiveTime::from_str(text).map_err(|_| BadValue::not(text, "a time of day"))
}

pub fn parse_date(text: &str) -> Result<NaiveDate, BadValue> {
    NaiveDate::from_str(text).map_err(|_| BadValue::not(text, "a date"))
}

/// An integer of any width by the integer rule.
pub fn integer(text: &str) -> Result<Value, BadValue> {
    text.parse::<i128>()
        .map(json::integer)
        .map_err(|_| BadValue::not(text, "an integer"))
}

/// A float, including the spellings of NaN and the infinities.
pub fn float(text: &str) -> Result<Value, BadValue> {
    text.parse::<f64>()
        .map(json::float)
        .map_err(|_| BadValue::not(text, "a number"))
}

pub fn boolean(text: &str) -> Result<Value, BadValue> {
    match text {
        "true" | "TRUE" | "1" => Ok(Value::Bool(true)),
        "false" | "FALSE" | "0" => Ok(Value::Bool(false)),
        _ => Err(BadValue::not(text, "a boolean")),
    }
}

/// JSON held as text (VARIANT, JSON, ARRAY<…> columns) as nested JSON.
pub fn nested(text: &str) -> Result<Value, BadValue> {
    serde_json::from_str(text).map_err(BadValue::NotJson)
}

/// Base64 text checked and re-emitted in the standard padded alphabet.
pub fn base64(text: &str) -> Result<Value, BadValue> {
    let engine = &base64::engine::general_purpose::STANDARD;
    engine
        .decode(text)
        .map(|bytes| Value::String(engine.encode(bytes)))
        .map_err(|_| BadValue::not(text, "base64"))
}

pub fn hex_to_base64(text: &str) -> Result<Value, BadValue> {
    hex::decode(text)
        .map(|bytes| Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)))
        .map_err(|_| BadValue::not(text, "hexadecimal"))
}

/// The digits after the decimal point of a decimal's text.
pub fn scale_of(text: &str) -> usize {
    text.split_once('.').map_or(0, |(_, f)| f.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seconds_split_exactly() {
        assert_eq!(
            seconds("1714557600.123456789").unwrap(),
            (1714557600, 123456789)
        );
        assert_eq!(
            seconds("1.7145576001234E9").unwrap(),
            (1714557600, 123400000)
        );
        assert_eq!(seconds("-0.25").unwrap(), (-1, 750000000));
        assert_eq!(seconds("36000").unwrap(), (36000, 0));
        assert!(seconds("soon").is_err());
        assert_eq!(
            instant(epoch("1714557600.5").unwrap()),
            json!("2024-05-01T10:00:00.500Z")
        );
    }

    #[test]
    fn text_values() {
        assert_eq!(
            integer("9007199254740993").unwrap(),
            json!("9007199254740993")
        );
        assert_eq!(float("-inf").unwrap(), json!("-Infinity"));
        assert_eq!(float("Infinity").unwrap(), json!("Infinity"));
        assert_eq!(hex_to_base64("48690a").unwrap(), json!("SGkK"));
        assert_eq!(
            wall_clock(parse_wall_clock("2024-05-01 10:00:00.25").unwrap()),
            json!("2024-05-01T10:00:00.250")
        );
        assert_eq!(scale_of("-12.500"), 3);
    }
}
