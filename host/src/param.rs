//! Typed values bound into model queries: `{{last_sync_time}}`,
//! `{{cursor}}` and the warehouse diff's bounds. They are shared by the
//! sources that bind them, the state store that keeps the cursor between
//! runs and the extraction that resolves templates, so they live apart
//! from all three.

/// The SQL type a parameter is bound as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    Int,
    Float,
    /// Exact decimal, carried as its text.
    Decimal,
    Text,
    Bool,
    /// A timestamp without time zone, `YYYY-MM-DDTHH:MM:SS[.f]`.
    Timestamp,
    /// An instant, RFC 3339 in UTC.
    TimestampTz,
    Date,
}

/// A typed bind parameter. The value is canonical text (or `None` for a
/// typed NULL); each source parses it into its driver's native type, so a
/// value is always bound, never spliced into the SQL.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Param {
    pub kind: ParamKind,
    pub value: Option<String>,
}

impl Param {
    pub fn int(v: i64) -> Param {
        Param {
            kind: ParamKind::Int,
            value: Some(v.to_string()),
        }
    }

    /// The value as the Rust type drivers bind for its kind.
    pub fn native(&self) -> Result<Native, String> {
        fn parse<T: std::str::FromStr>(
            v: &Option<String>,
            what: &str,
        ) -> Result<Option<T>, String> {
            v.as_deref()
                .map(|s| {
                    s.parse::<T>()
                        .map_err(|_| format!("`{s}` is not a valid {what}"))
                })
                .transpose()
        }
        let v = &self.value;
        Ok(match self.kind {
            ParamKind::Int => Native::Int(parse(v, "integer")?),
            ParamKind::Float => Native::Float(parse(v, "number")?),
            ParamKind::Decimal => Native::Decimal(parse(v, "decimal")?),
            ParamKind::Text => Native::Text(v.clone()),
            ParamKind::Bool => Native::Bool(parse(v, "boolean")?),
            // SQLite and MySQL write a space where ISO 8601 has a `T`.
            ParamKind::Timestamp => Native::Timestamp(parse(
                &v.as_ref().map(|s| s.replacen(' ', "T", 1)),
                "timestamp",
            )?),
            ParamKind::TimestampTz => Native::TimestampTz(parse(v, "timestamp with time zone")?),
            ParamKind::Date => Native::Date(parse(v, "date")?),
        })
    }
}

/// A parameter as a driver binds it; `None` is a NULL of that type. Values
/// of one kind order as the database orders them.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub enum Native {
    Int(Option<i64>),
    Float(Option<f64>),
    Decimal(Option<rust_decimal::Decimal>),
    Text(Option<String>),
    Bool(Option<bool>),
    Timestamp(Option<chrono::NaiveDateTime>),
    TimestampTz(Option<chrono::DateTime<chrono::Utc>>),
    Date(Option<chrono::NaiveDate>),
}
