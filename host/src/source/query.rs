//! A model query as a source runs it: its SQL with templates turned into
//! placeholders of the source's dialect, the values bound to them, and the
//! columns its result has.

use super::error::{Problem, SourceError};
use crate::param::{Native, Param};

/// A model query with `{{…}}` templates already turned into placeholders,
/// and the values to bind to them, one per placeholder number (numbered
/// dialects) or per occurrence (`?` dialects).
#[derive(Debug, Clone)]
pub struct BoundQuery {
    pub model: String,
    pub sql: String,
    pub params: Vec<Param>,
}

impl BoundQuery {
    /// The template values as drivers bind them; one that cannot be read as
    /// its kind is an error naming the model.
    pub(crate) fn natives(&self) -> Result<Vec<Native>, SourceError> {
        self.params
            .iter()
            .map(|p| {
                p.native().map_err(|message| SourceError::Query {
                    model: self.model.clone(),
                    problem: Problem::Other,
                    message: unbindable(message),
                })
            })
            .collect()
    }
}

/// How every source words a template value it cannot bind.
pub(crate) fn unbindable(reason: impl std::fmt::Display) -> String {
    format!("cannot bind a template value: {reason}")
}

/// A column of a query's result and the type the database declares for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_name: String,
}

/// How a dialect writes bind placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholders {
    /// `?1`, `?2` (SQLite): reusable by number.
    QuestionNumbered,
    /// `$1`, `$2` (Postgres): reusable by number.
    Dollar,
    /// `?` (MySQL, Snowflake, BigQuery): one value per occurrence.
    Question,
    /// `:p1` (Databricks): reusable by name.
    Named,
}

impl Placeholders {
    /// The text for placeholder `n` (1-based).
    pub fn write(self, n: usize) -> String {
        match self {
            Placeholders::QuestionNumbered => format!("?{n}"),
            Placeholders::Dollar => format!("${n}"),
            Placeholders::Question => "?".to_string(),
            Placeholders::Named => format!(":p{n}"),
        }
    }

    /// Whether one bound value can serve several occurrences.
    pub fn reusable(self) -> bool {
        self != Placeholders::Question
    }
}
