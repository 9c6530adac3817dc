//! What can go wrong in the state store. Users read these messages (and
//! tests match them), so each names what to fix; none repeats `state.url`
//! past its scheme, which may hold a password. A database failing passes
//! through as sqlx words it.
//!
//! The variants that quote a cause quote it in their message rather than
//! as a `source`: printed with its causes, the message would repeat them.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "state.url: `{scheme}:` is not a state store; use sqlite://PATH or postgres://USER@HOST/DB"
    )]
    UnknownScheme { scheme: String },
    #[error("state.url `{url}`: {error}")]
    SqliteUrl { url: String, error: sqlx::Error },
    #[error("state.url is not a usable Postgres URL: {0}")]
    PostgresUrl(sqlx::Error),
    #[error(
        "state.url: schema `{0}` is not a plain Postgres name; use lowercase letters, digits and _ (at most 63, not starting with a digit)"
    )]
    BadSchema(String),
    #[error("cannot create the state folder {}: {error}", .dir.display())]
    Folder { dir: PathBuf, error: std::io::Error },
    #[error("cannot open the state store {file}: {error}")]
    Open { file: String, error: sqlx::Error },
    #[error("cannot connect to the Postgres state store at {place} (state.url): {error}")]
    Connect { place: String, error: sqlx::Error },
    #[error(
        "cannot create the state schema `{schema}` ({error}); create it for Ebb's database user, or grant that user CREATE on the database"
    )]
    CreateSchema { schema: String, error: sqlx::Error },
    /// `store` names it: "the state store", with its schema on Postgres.
    #[error(
        "{store} was written by a newer Ebb (schema {version}, this binary knows {known}); upgrade ebb"
    )]
    NewerSchema {
        store: String,
        version: i64,
        known: i64,
    },
    /// A claim could not name the run it collided with, however often it
    /// tried.
    #[error(
        "sync `{sync}`: runs kept starting and finishing while this one tried to claim it; try again"
    )]
    ClaimContended { sync: String },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub type Result<T> = std::result::Result<T, StateError>;
