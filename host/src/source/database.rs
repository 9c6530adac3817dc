//! What the databases read through sqlx (SQLite, Postgres and Redshift,
//! MySQL) share: the `LIMIT 0` wrapper that checks a query without reading
//! a row, and sorting driver errors into the problems `ebb check` reports.

use super::error::Problem;

/// The model's SQL wrapped so that it runs without returning a row, and
/// how many characters the wrapper puts before the model's SQL (to map an
/// error position back onto the model's text).
pub(crate) fn limit_zero(sql: &str) -> (String, usize) {
    const BEFORE: &str = "SELECT * FROM (\n";
    let sql = sql.trim_end().trim_end_matches(';');
    (
        format!("{BEFORE}{sql}\n) AS ebb_check LIMIT 0"),
        BEFORE.chars().count(),
    )
}

/// Sorts a driver error into the problem `ebb check` reports. SQLSTATE
/// classes are shared by Postgres, Redshift and MySQL; codes a database
/// reports otherwise are mapped by its own module first.
pub(crate) fn classify(e: &sqlx::Error) -> Problem {
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => Problem::Timeout,
        // How TLS libraries report a failed handshake on the socket.
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => Problem::Tls,
        sqlx::Error::Io(_) => Problem::Connect,
        sqlx::Error::Tls(_) => Problem::Tls,
        sqlx::Error::PoolTimedOut => Problem::Timeout,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some(c) if c.starts_with("28") => Problem::Authentication,
            Some("42501") => Problem::Permission,
            // query_canceled: what a statement timeout raises.
            Some("57014") => Problem::Timeout,
            _ => Problem::Sql,
        },
        _ => Problem::Other,
    }
}
