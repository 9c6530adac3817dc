//! Postgres values as JSON, by the rules in docs/types.md.
//!
//! Rows arrive in Postgres's binary format, and each column's decoder is
//! chosen once, from its type, before the first row. Reading the bytes here
//! rather than through the driver's typed decoders is what keeps numerics
//! of any width exact (a `rust_decimal` holds 28 digits), reads infinite
//! dates and timestamps and NaN numerics instead of failing on them, and
//! turns multi-dimensional arrays into nested JSON arrays.

use base64::Engine as _;
use sqlx::postgres::{PgColumn, PgRow, PgTypeInfo, PgTypeKind};
use sqlx::{Column, PgConnection, Row, TypeInfo, ValueRef};

use std::io::Write as _;

use crate::rows::ValueError;
use crate::source::database::classify;
use crate::source::error::{Problem, SourceError};
use crate::source::json::{self, Fraction};

/// How to read one type's binary form.
#[derive(Debug, Clone, PartialEq)]
enum Decoder {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Numeric,
    Money,
    /// text, varchar, bpchar, name, "char", citext, enums: UTF-8 as is
    /// (a database in `SQL_ASCII` keeps any bytes, so a value may not be
    /// UTF-8: that fails only its row).
    Text,
    Json,
    Jsonb,
    Uuid,
    Bytea,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Interval,
    Inet,
    MacAddr,
    Array(Box<Decoder>),
}

impl Decoder {
    /// The decoder for a type, or `None` when Ebb does not read it.
    fn of(t: &PgTypeInfo) -> Option<Decoder> {
        match t.kind() {
            PgTypeKind::Array(element) => Some(Decoder::Array(Box::new(Decoder::of(element)?))),
            PgTypeKind::Domain(base) => Decoder::of(base),
            PgTypeKind::Enum(_) => Some(Decoder::Text),
            PgTypeKind::Simple => Decoder::builtin(t.oid()?.0)
                .or_else(|| Decoder::extension(&t.name().to_ascii_lowercase())),
            _ => None,
        }
    }

    /// Built-in types, by their fixed OIDs (pg_type.dat).
    fn builtin(oid: u32) -> Option<Decoder> {
        Some(match oid {
            16 => Decoder::Bool,
            17 => Decoder::Bytea,
            18 | 19 | 25 | 705 | 1042 | 1043 => Decoder::Text,
            20 => Decoder::Int8,
            21 => Decoder::Int2,
            23 => Decoder::Int4,
            26 => Decoder::Oid,
            114 => Decoder::Json,
            650 | 869 => Decoder::Inet,
            700 => Decoder::Float4,
            701 => Decoder::Float8,
            774 | 829 => Decoder::MacAddr,
            790 => Decoder::Money,
            1082 => Decoder::Date,
            1083 => Decoder::Time,
            1114 => Decoder::Timestamp,
            1184 => Decoder::TimestampTz,
            1186 => Decoder::Interval,
            1266 => Decoder::TimeTz,
            1700 => Decoder::Numeric,
            2950 => Decoder::Uuid,
            3802 => Decoder::Jsonb,
            _ => return None,
        })
    }

    /// Types whose OIDs vary by installation, by name.
    fn extension(name: &str) -> Option<Decoder> {
        match name.rsplit('.').next() {
            Some("citext") => Some(Decoder::Text),
            // Redshift's semi-structured type travels as JSON text.
            Some("super") => Some(Decoder::Json),
            _ => None,
        }
    }

    fn uses_money(&self) -> bool {
        match self {
            Decoder::Money => true,
            Decoder::Array(element) => element.uses_money(),
            _ => false,
        }
    }

    /// Writes the value in `b` as JSON.
    fn write(
        &self,
        b: &[u8],
        money_scale: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), ValueError<String>> {
        match self {
            Decoder::Bool => json::write_bool(out, *b.first().ok_or("empty boolean")? != 0),
            Decoder::Int2 => json::write_integer(out, i16::from_be_bytes(fixed(b)?)),
            Decoder::Int4 => json::write_integer(out, i32::from_be_bytes(fixed(b)?)),
            Decoder::Int8 => json::write_integer(out, i64::from_be_bytes(fixed(b)?)),
            Decoder::Oid => json::write_integer(out, u32::from_be_bytes(fixed(b)?)),
            // The shortest text that reads back as the same f32, so a
            // real 0.1 is 0.1 and not 0.10000000149011612.
            Decoder::Float4 => match f32::from_be_bytes(fixed(b)?) {
                f if f.is_finite() => {
                    json::write_float(out, f.to_string().parse().map_err(|_| "bad real")?)
                }
                f => json::write_float(out, f64::from(f)),
            },
            Decoder::Float8 => json::write_float(out, f64::from_be_bytes(fixed(b)?)),
            Decoder::Numeric => json::write_decimal(out, &numeric(b)?),
            Decoder::Money => {
                json::write_decimal(out, &scaled(i64::from_be_bytes(fixed(b)?), money_scale))
            }
            Decoder::Text => json::write_text(out, b)?,
            Decoder::Json => json_text(out, b)?,
            Decoder::Jsonb => match b.split_first() {
                Some((1, rest)) => json_text(out, rest)?,
                _ => return Err("unknown jsonb version".into()),
            },
            Decoder::Uuid => json::write_str(
                out,
                uuid::Uuid::from_bytes(fixed(b)?)
                    .hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer()),
            ),
            Decoder::Bytea => {
                json::write_str(out, &base64::engine::general_purpose::STANDARD.encode(b))
            }
            Decoder::Date => date(i32::from_be_bytes(fixed(b)?), out)?,
            Decoder::Time => quoted(out, |out| {
                clock(i64::from_be_bytes(fixed(b)?), out);
                Ok(())
            })?,
            Decoder::TimeTz => quoted(out, |out| {
                let (micros, zone) = b.split_at_checked(8).ok_or("short timetz")?;
                clock(i64::from_be_bytes(fixed(micros)?), out);
                // Stored as seconds west of UTC; ISO 8601 counts east.
                out.extend_from_slice(offset(-i32::from_be_bytes(fixed(zone)?)).as_bytes());
                Ok(())
            })?,
            Decoder::Timestamp => timestamp(i64::from_be_bytes(fixed(b)?), "", out)?,
            Decoder::TimestampTz => timestamp(i64::from_be_bytes(fixed(b)?), "Z", out)?,
            Decoder::Interval => {
                let micros = i64::from_be_bytes(fixed(b.get(0..8).ok_or("short interval")?)?);
                let days = i32::from_be_bytes(fixed(b.get(8..12).ok_or("short interval")?)?);
                let months = i32::from_be_bytes(fixed(b.get(12..16).ok_or("short interval")?)?);
                json::write_str(out, &interval(months, days, micros))
            }
            Decoder::Inet => json::write_str(out, &inet(b)?),
            Decoder::MacAddr => json::write_str(
                out,
                &b.iter()
                    .map(|byte| format!("{byte:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
            Decoder::Array(element) => array(b, element, money_scale, out)?,
        }
        Ok(())
    }
}

/// The decoders for a query's columns, chosen before its first row.
pub(super) struct RowPlan {
    columns: Vec<(String, Decoder)>,
    /// Digits after the point in `money`, which follow the server's
    /// `lc_monetary` (2 for most currencies).
    money_scale: u32,
}

impl RowPlan {
    /// Fails with `UnsupportedType` naming the first column Ebb cannot read.
    pub async fn new(
        conn: &mut PgConnection,
        columns: &[PgColumn],
        model: &str,
    ) -> Result<RowPlan, SourceError> {
        let columns = columns
            .iter()
            .map(|c| match Decoder::of(c.type_info()) {
                Some(d) => Ok((c.name().to_string(), d)),
                None => Err(SourceError::UnsupportedType {
                    model: model.to_string(),
                    column: c.name().to_string(),
                    type_name: c.type_info().name().to_string(),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut money_scale = 2;
        if columns.iter().any(|(_, d)| d.uses_money()) {
            money_scale = sqlx::query_scalar::<_, i32>("SELECT scale(1::money::numeric)")
                .fetch_one(conn)
                .await
                .map_err(|e| SourceError::Query {
                    model: model.to_string(),
                    problem: classify(&e),
                    message: format!("cannot read the server's money format: {e}"),
                })?
                .unsigned_abs();
        }
        Ok(RowPlan {
            columns,
            money_scale,
        })
    }

    /// The columns' names, in query order.
    pub fn names(&self) -> Vec<String> {
        self.columns.iter().map(|(name, _)| name.clone()).collect()
    }

    /// Writes column `i` of `row` as JSON.
    pub fn write(
        &self,
        row: &PgRow,
        i: usize,
        out: &mut Vec<u8>,
        model: &str,
    ) -> Result<(), ValueError<SourceError>> {
        let (name, decoder) = &self.columns[i];
        row.try_get_raw(i)
            .map_err(|e| ValueError::Failed(e.to_string()))
            .and_then(|raw| match raw.is_null() {
                true => {
                    json::write_null(out);
                    Ok(())
                }
                false => raw
                    .as_bytes()
                    .map_err(|e| ValueError::Failed(e.to_string()))
                    .and_then(|b| decoder.write(b, self.money_scale, out)),
            })
            .map_err(|e| {
                e.map(|e| SourceError::Query {
                    model: model.to_string(),
                    problem: Problem::Other,
                    message: format!("column `{name}`: cannot read the value: {e}"),
                })
            })
    }
}

fn fixed<const N: usize>(b: &[u8]) -> Result<[u8; N], String> {
    b.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", b.len()))
}

/// `json` and `jsonb` text as nested JSON.
fn json_text(out: &mut Vec<u8>, b: &[u8]) -> Result<(), ValueError<String>> {
    json::write_json_text(out, b).map_err(|e| e.map(|e| e.to_string()))
}

/// A JSON string written by `write`, which adds no characters needing escapes.
fn quoted(
    out: &mut Vec<u8>,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
) -> Result<(), String> {
    out.push(b'"');
    write(out)?;
    out.push(b'"');
    Ok(())
}

/// `numeric`: base-10000 digits with a weight, a sign and a display scale,
/// written out as plain decimal digits (or NaN, Infinity, -Infinity).
fn numeric(b: &[u8]) -> Result<String, String> {
    let word = |i: usize| -> Result<u16, String> {
        Ok(u16::from_be_bytes(fixed(
            b.get(i * 2..i * 2 + 2).ok_or("short numeric")?,
        )?))
    };
    let ndigits = usize::from(word(0)?);
    let weight = i64::from(word(1)? as i16);
    let scale = usize::from(word(3)?);
    let negative = match word(2)? {
        0x0000 => false,
        0x4000 => true,
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        other => return Err(format!("unknown numeric sign {other:#x}")),
    };
    let digit = |i: i64| -> Result<u16, String> {
        match usize::try_from(i) {
            Ok(i) if i < ndigits => word(4 + i),
            _ => Ok(0),
        }
    };
    let four = |text: &mut String, d: u16| {
        for unit in [1000, 100, 10, 1] {
            text.push(char::from(b'0' + (d / unit % 10) as u8));
        }
    };
    let mut text = String::with_capacity(8 + 4 * (weight.max(0) as usize) + scale);
    text.push('-');
    for i in 0..=weight {
        match i {
            0 => text.push_str(&digit(i)?.to_string()),
            _ => four(&mut text, digit(i)?),
        }
    }
    if weight < 0 {
        text.push('0');
    }
    if scale > 0 {
        text.push('.');
        let point = text.len();
        let mut i = weight + 1;
        while text.len() - point < scale {
            four(&mut text, digit(i)?);
            i += 1;
        }
        text.truncate(point + scale);
    }
    // Zero has no sign.
    let zero = !text.bytes().any(|c| c.is_ascii_digit() && c != b'0');
    if !negative || zero {
        text.remove(0);
    }
    Ok(text)
}

/// A count of minor units as a decimal with `scale` digits after the point.
fn scaled(units: i64, scale: u32) -> String {
    let digits = units.unsigned_abs().to_string();
    let sign = if units < 0 { "-" } else { "" };
    let scale = scale as usize;
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = digits.split_at(digits.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Days since 2000-01-01, Postgres's epoch; the extremes are ±infinity.
fn date(days: i32, out: &mut Vec<u8>) -> Result<(), String> {
    match days {
        i32::MAX => json::write_str(out, "infinity"),
        i32::MIN => json::write_str(out, "-infinity"),
        _ => quoted(out, |out| calendar_day(i64::from(days), out))?,
    }
    Ok(())
}

fn calendar_day(days: i64, out: &mut Vec<u8>) -> Result<(), String> {
    use chrono::Datelike;
    let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).ok_or("bad epoch")?;
    let day = epoch
        .checked_add_signed(chrono::TimeDelta::days(days))
        .ok_or_else(|| format!("date {days} days after 2000-01-01 is out of range"))?;
    if !json::write_date(out, day.year(), day.month(), day.day()) {
        let _ = write!(out, "{}", day.format("%Y-%m-%d"));
    }
    Ok(())
}

/// Microseconds since 2000-01-01 00:00; the extremes are ±infinity.
fn timestamp(micros: i64, zone: &str, out: &mut Vec<u8>) -> Result<(), String> {
    match micros {
        i64::MAX => json::write_str(out, "infinity"),
        i64::MIN => json::write_str(out, "-infinity"),
        _ => quoted(out, |out| {
            calendar_day(micros.div_euclid(MICROS_PER_DAY), out)?;
            out.push(b'T');
            clock(micros.rem_euclid(MICROS_PER_DAY), out);
            out.extend_from_slice(zone.as_bytes());
            Ok(())
        })?,
    }
    Ok(())
}

/// `HH:MM:SS[.ffffff]` for microseconds since midnight (24:00:00 included,
/// as Postgres allows).
fn clock(micros: i64, out: &mut Vec<u8>) {
    let seconds = (micros / 1_000_000) as u32;
    json::write_clock(out, seconds / 3600, seconds / 60 % 60, seconds % 60);
    json::write_fraction(out, nanos(micros), Fraction::Trimmed);
}

/// The nanoseconds in the fraction of a second of a count of microseconds.
fn nanos(micros: i64) -> u32 {
    (micros % 1_000_000).unsigned_abs() as u32 * 1000
}

/// A UTC offset in seconds east, as `+HH:MM[:SS]`.
fn offset(east: i32) -> String {
    let sign = if east < 0 { '-' } else { '+' };
    let s = east.unsigned_abs();
    match s % 60 {
        0 => format!("{sign}{:02}:{:02}", s / 3600, s / 60 % 60),
        sec => format!("{sign}{:02}:{:02}:{sec:02}", s / 3600, s / 60 % 60),
    }
}

/// ISO 8601 duration, each part keeping its own sign as Postgres's
/// `iso_8601` interval style writes it: `P1Y2M-3DT4H5M6.5S`, `PT0S`.
fn interval(months: i32, days: i32, micros: i64) -> String {
    if months == 0 && days == 0 && micros == 0 {
        return "PT0S".into();
    }
    let mut out = String::from("P");
    for (n, unit) in [(months / 12, 'Y'), (months % 12, 'M'), (days, 'D')] {
        if n != 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if micros != 0 {
        out.push('T');
        let hours = micros / 3_600_000_000;
        let minutes = micros / 60_000_000 % 60;
        let rest = micros % 60_000_000;
        for (n, unit) in [(hours, 'H'), (minutes, 'M')] {
            if n != 0 {
                out.push_str(&format!("{n}{unit}"));
            }
        }
        if rest != 0 {
            let sign = if rest < 0 { "-" } else { "" };
            let mut fraction = Vec::new();
            json::write_fraction(&mut fraction, nanos(rest), Fraction::Trimmed);
            out.push_str(&format!(
                "{sign}{}{}S",
                (rest / 1_000_000).abs(),
                String::from_utf8_lossy(&fraction)
            ));
        }
    }
    out
}

/// `inet`/`cidr`: family, prefix bits, cidr flag, length, address. The
/// prefix is written unless an `inet` covers a single host, as Postgres
/// writes it.
fn inet(b: &[u8]) -> Result<String, String> {
    let [family, bits, is_cidr, _, addr @ ..] = b else {
        return Err("short inet".into());
    };
    let (ip, full): (std::net::IpAddr, u8) = match family {
        2 => (
            <[u8; 4]>::try_from(addr).map_err(|_| "bad IPv4")?.into(),
            32,
        ),
        3 => (
            <[u8; 16]>::try_from(addr).map_err(|_| "bad IPv6")?.into(),
            128,
        ),
        other => return Err(format!("unknown address family {other}")),
    };
    Ok(match *is_cidr == 0 && *bits == full {
        true => ip.to_string(),
        false => format!("{ip}/{bits}"),
    })
}

/// Arrays of any number of dimensions, as nested JSON arrays.
fn array(
    b: &[u8],
    element: &Decoder,
    money_scale: u32,
    out: &mut Vec<u8>,
) -> Result<(), ValueError<String>> {
    let int = |at: usize| -> Result<i32, String> {
        Ok(i32::from_be_bytes(fixed(
            b.get(at..at + 4).ok_or("short array")?,
        )?))
    };
    let dims = usize::try_from(int(0)?).map_err(|_| "negative dimensions")?;
    let lengths = (0..dims)
        .map(|d| usize::try_from(int(12 + d * 8)?).map_err(|_| "negative length".to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut at = 12 + dims * 8;
    let mut next = |out: &mut Vec<u8>| -> Result<(), ValueError<String>> {
        let len = int(at)?;
        at += 4;
        match usize::try_from(len) {
            Err(_) => json::write_null(out),
            Ok(len) => {
                let bytes = b.get(at..at + len).ok_or("short array element")?;
                at += len;
                element.write(bytes, money_scale, out)?;
            }
        }
        Ok(())
    };
    nest(&lengths, &mut next, out)
}

/// Writes an array of `lengths[0]` items, each an array of the remaining
/// lengths, with the elements `next` writes in order.
fn nest(
    lengths: &[usize],
    next: &mut impl FnMut(&mut Vec<u8>) -> Result<(), ValueError<String>>,
    out: &mut Vec<u8>,
) -> Result<(), ValueError<String>> {
    out.push(b'[');
    if let Some((n, inner)) = lengths.split_first() {
        for k in 0..*n {
            if k > 0 {
                out.push(b',');
            }
            match inner {
                [] => next(out)?,
                _ => nest(inner, next, out)?,
            }
        }
    }
    out.push(b']');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(write: impl FnOnce(&mut Vec<u8>) -> Result<(), String>) -> String {
        let mut out = Vec::new();
        write(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn durations_and_clocks() {
        assert_eq!(interval(0, 0, 0), "PT0S");
        assert_eq!(interval(14, 3, 14_706_500_000), "P1Y2M3DT4H5M6.5S");
        assert_eq!(interval(-1, -2, -3_000_001), "P-1M-2DT-3.000001S");
        let clock_of = |micros| {
            written(|o| {
                clock(micros, o);
                Ok(())
            })
        };
        assert_eq!(clock_of(86_400_000_000), "24:00:00");
        assert_eq!(clock_of(45_296_120_000), "12:34:56.12");
        assert_eq!(offset(-(5 * 3600 + 30 * 60)), "-05:30");
        assert_eq!(scaled(-5, 2), "-0.05");
        assert_eq!(
            written(|o| timestamp(-1, "Z", o)),
            "\"1999-12-31T23:59:59.999999Z\""
        );
        assert_eq!(written(|o| timestamp(i64::MAX, "", o)), "\"infinity\"");
        assert_eq!(written(|o| date(-730_119 - 1, o)), "\"0000-12-31\"");
    }

    #[test]
    fn numerics_keep_every_digit() {
        // (ndigits, weight, sign, dscale, base-10000 digits…)
        let numeric_of = |words: &[u16]| {
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
            numeric(&bytes).unwrap()
        };
        assert_eq!(numeric_of(&[2, 0, 0x4000, 2, 12, 3400]), "-12.34");
        assert_eq!(numeric_of(&[1, 1, 0, 0, 5]), "50000");
        assert_eq!(numeric_of(&[1, 0xffff, 0, 5, 12]), "0.00120");
        assert_eq!(numeric_of(&[0, 0, 0x4000, 2]), "0.00");
        assert_eq!(numeric_of(&[0, 0, 0xC000, 0]), "NaN");
    }
}
