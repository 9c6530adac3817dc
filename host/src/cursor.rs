//! Cursor models: `cursor = "updated_at"` makes Ebb remember the highest
//! value of that column it has delivered and bind it as `{{cursor}}`, so a
//! model reads only rows past it (mParticle's iterator).
//!
//! The value is kept as typed text ([`Param`]): its kind comes from the
//! column's declared type, so it is bound as a timestamp, a number or text,
//! never spliced into SQL. Before anything was delivered it is a typed NULL,
//! which is why cursor queries are written
//! `WHERE {{cursor}} IS NULL OR updated_at > {{cursor}}`.
//!
//! The cursor moves only when a run delivered everything it read, like
//! `{{last_sync_time}}`: a row still owed has a cursor value at or below the
//! new high mark, and moving past it would mean never reading it again.

use crate::config::SourceKind;
use crate::param::{Native, Param, ParamKind};
use crate::source;

/// The bind kind for a column of the given database type name. What a bare
/// `TIMESTAMP` holds, the source's kind says.
pub fn kind_of_type(kind: SourceKind, type_name: &str) -> ParamKind {
    let t = type_name.to_ascii_uppercase();
    let has = |s: &str| t.contains(s);
    if has("TIMESTAMPTZ") || has("WITH TIME ZONE") || has("TIMESTAMP_TZ") || has("TIMESTAMP_LTZ") {
        ParamKind::TimestampTz
    } else if t == "TIMESTAMP" {
        source::driver(kind).bare_timestamp()
    } else if has("TIMESTAMP") || has("DATETIME") {
        ParamKind::Timestamp
    } else if has("DATE") {
        ParamKind::Date
    } else if has("INT") {
        ParamKind::Int
    } else if has("FLOAT") || has("DOUBLE") || has("REAL") {
        ParamKind::Float
    } else if has("NUMERIC") || has("DECIMAL") || has("NUMBER") {
        ParamKind::Decimal
    } else if has("BOOL") {
        ParamKind::Bool
    } else {
        ParamKind::Text
    }
}

/// A row's cursor value that cannot move the cursor.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error(
        "cursor column `{column}` holds {value}, which cannot be ordered; use a timestamp, number or text column"
    )]
    Unordered { column: String, value: String },
    #[error("cursor column `{column}`: {reason}")]
    Unreadable { column: String, reason: String },
}

/// Tracks the highest cursor value a run reads.
pub struct Cursor {
    pub column: String,
    pub kind: ParamKind,
    high: Option<(Native, String)>,
}

impl Cursor {
    /// Starts from the stored value (if any), typed as the column is now.
    pub fn new(column: &str, kind: ParamKind, stored: Option<Param>) -> Cursor {
        let mut cursor = Cursor {
            column: column.to_string(),
            kind,
            high: None,
        };
        if let Some(text) = stored.and_then(|p| p.value)
            && let Ok(native) = cursor.param(Some(text.clone())).native()
        {
            cursor.high = Some((native, text));
        }
        cursor
    }

    fn param(&self, value: Option<String>) -> Param {
        Param {
            kind: self.kind,
            value,
        }
    }

    /// What `{{cursor}}` binds to: the high mark, or a typed NULL.
    pub fn template(&self) -> Param {
        self.param(self.high.as_ref().map(|(_, text)| text.clone()))
    }

    /// Takes a row's cursor value into account; NULLs are ignored (no `>`
    /// comparison can select them anyway).
    /// The value comes as the JSON a source wrote for it.
    pub fn observe(&mut self, json: Option<&[u8]>) -> Result<(), CursorError> {
        let text = match json {
            Some(v @ [b'{' | b'[', ..]) => {
                return Err(CursorError::Unordered {
                    column: self.column.clone(),
                    value: String::from_utf8_lossy(v).into_owned(),
                });
            }
            Some(v) => match crate::rows::key_text(v) {
                Some(text) => text.into_owned(),
                None => return Ok(()),
            },
            None => return Ok(()),
        };
        let native =
            self.param(Some(text.clone()))
                .native()
                .map_err(|reason| CursorError::Unreadable {
                    column: self.column.clone(),
                    reason,
                })?;
        let higher = match &self.high {
            None => true,
            Some((high, _)) => native.partial_cmp(high) == Some(std::cmp::Ordering::Greater),
        };
        if higher {
            self.high = Some((native, text));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn kinds_follow_declared_types() {
        use SourceKind::*;
        assert_eq!(
            kind_of_type(Postgres, "TIMESTAMPTZ"),
            ParamKind::TimestampTz
        );
        assert_eq!(kind_of_type(Postgres, "timestamp"), ParamKind::Timestamp);
        assert_eq!(kind_of_type(Bigquery, "TIMESTAMP"), ParamKind::TimestampTz);
        assert_eq!(kind_of_type(Bigquery, "DATETIME"), ParamKind::Timestamp);
        assert_eq!(
            kind_of_type(Snowflake, "TIMESTAMP_NTZ"),
            ParamKind::Timestamp
        );
        assert_eq!(kind_of_type(Sqlite, "DATE"), ParamKind::Date);
        assert_eq!(kind_of_type(Postgres, "BIGINT UNSIGNED"), ParamKind::Int);
        assert_eq!(kind_of_type(Postgres, "NUMERIC"), ParamKind::Decimal);
        assert_eq!(kind_of_type(Postgres, "VARCHAR"), ParamKind::Text);
    }

    #[test]
    fn keeps_the_highest_value_in_the_columns_order() {
        let mut c = Cursor::new("n", ParamKind::Int, None);
        assert_eq!(c.template().value, None);
        for v in [json!(9), json!(10), Value::Null, json!(2)] {
            c.observe(Some(v.to_string().as_bytes())).unwrap();
        }
        // Numerically, not as text ("9" > "10").
        assert_eq!(c.template().value.as_deref(), Some("10"));

        let stored = Param {
            kind: ParamKind::TimestampTz,
            value: Some("2024-05-01T00:00:00Z".into()),
        };
        let mut t = Cursor::new("at", ParamKind::TimestampTz, Some(stored));
        let observe = |t: &mut Cursor, v: Value| t.observe(Some(v.to_string().as_bytes()));
        observe(&mut t, json!("2024-04-30T23:59:59Z")).unwrap();
        assert_eq!(t.template().value.as_deref(), Some("2024-05-01T00:00:00Z"));
        observe(&mut t, json!("2024-05-01T00:00:00.5Z")).unwrap();
        assert_eq!(
            t.template().value.as_deref(),
            Some("2024-05-01T00:00:00.5Z")
        );
        assert!(observe(&mut t, json!({"a": 1})).is_err());
        assert!(observe(&mut t, json!("yesterday")).is_err());
    }
}
