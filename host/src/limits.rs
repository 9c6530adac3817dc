//! The limits from DESIGN.md, configurable under `[limits]`. They keep one
//! runaway model from exhausting memory or a destination's patience, and each
//! breach says which limit, which column or row, and how to raise it.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub query_chars: usize,
    pub columns: usize,
    pub column_name_chars: usize,
    pub record_bytes: usize,
    pub value_bytes: usize,
    pub records_per_extract: u64,
    /// The shortest `every` a schedule may have.
    pub shortest_interval_secs: u64,
    /// The most events a transform may split one event into.
    pub split_events: usize,
    /// The longest event id (record key) a transform may return, in bytes.
    pub event_id_bytes: usize,
    /// Bytes of log messages a plugin may write in one call.
    pub plugin_log_bytes: usize,
    /// Bytes of one HTTP response a destination plugin may read.
    pub http_response_bytes: u64,
    /// The longest error text kept in history, row errors and alerts.
    pub error_text_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            query_chars: 131_072,
            columns: 512,
            column_name_chars: 128,
            record_bytes: 512 * 1024,
            value_bytes: 128 * 1024,
            records_per_extract: 30_000_000,
            shortest_interval_secs: 60,
            split_events: 1000,
            event_id_bytes: 1024,
            plugin_log_bytes: 256 * 1024,
            http_response_bytes: 16 * 1024 * 1024,
            error_text_bytes: 16 * 1024,
        }
    }
}

/// A limit breached, or set to nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("every limit must be at least 1")]
    Zero,
    #[error(
        "the query has {chars} characters, over the limit of {limit}; shorten it or raise limits.query_chars"
    )]
    QueryTooLong { chars: usize, limit: usize },
    #[error(
        "the query returns {count} columns, over the limit of {limit}; select fewer or raise limits.columns"
    )]
    TooManyColumns { count: usize, limit: usize },
    #[error(
        "column `{name}` has a name longer than {limit} characters; alias it or raise limits.column_name_chars"
    )]
    ColumnNameTooLong { name: String, limit: usize },
}

impl Limits {
    pub fn check(&self) -> Result<(), LimitError> {
        if self.columns == 0
            || self.record_bytes == 0
            || self.value_bytes == 0
            || self.records_per_extract == 0
            || self.shortest_interval_secs == 0
            || self.split_events == 0
            || self.event_id_bytes == 0
            || self.plugin_log_bytes == 0
            || self.http_response_bytes == 0
            || self.error_text_bytes == 0
        {
            return Err(LimitError::Zero);
        }
        Ok(())
    }

    pub fn check_query(&self, query: &str) -> Result<(), LimitError> {
        let chars = query.chars().count();
        if chars > self.query_chars {
            return Err(LimitError::QueryTooLong {
                chars,
                limit: self.query_chars,
            });
        }
        Ok(())
    }

    pub fn check_columns<'a>(
        &self,
        names: impl ExactSizeIterator<Item = &'a str>,
    ) -> Result<(), LimitError> {
        if names.len() > self.columns {
            return Err(LimitError::TooManyColumns {
                count: names.len(),
                limit: self.columns,
            });
        }
        for name in names {
            if name.chars().count() > self.column_name_chars {
                return Err(LimitError::ColumnNameTooLong {
                    name: name.to_owned(),
                    limit: self.column_name_chars,
                });
            }
        }
        Ok(())
    }
}

/// `text` cut to `limit` bytes ([`Limits::error_text_bytes`]), saying how
/// much was cut: a plugin or a destination decides what its errors say, and
/// an error is kept in history and row errors and sent in alerts.
pub fn cap_error(mut text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text.len() - end;
    text.truncate(end);
    text.push_str(&format!(
        " … ({cut} more bytes cut at limits.error_text_bytes)"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_are_cut_on_a_character_and_say_so() {
        assert_eq!(cap_error("short".into(), 5), "short");
        assert_eq!(
            cap_error("abcdé and more".into(), 5),
            "abcd … (11 more bytes cut at limits.error_text_bytes)"
        );
    }
}
