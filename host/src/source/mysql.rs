//! MySQL and MariaDB as a warehouse. Each extraction runs in a
//! `START TRANSACTION READ ONLY` with the server's statement timeout
//! (MariaDB's `max_statement_time`, MySQL's `max_execution_time`), in a
//! session whose time zone is UTC, so `TIMESTAMP` values read as instants.
//!
//! Queries always go through prepared statements, so rows arrive in the
//! binary protocol and are decoded from it.
//!
//! The column definitions the driver exposes cannot tell two things apart
//! that decide the JSON: a binary string from a text one with a `_bin`
//! collation (the server flags both `BINARY`; only the charset, which the
//! driver keeps to itself, differs), and on MariaDB a JSON value from text
//! (MariaDB stores and returns JSON as `LONGTEXT`). So before a query runs,
//! Ebb asks the server about its columns with a query over it that reads no
//! rows: `COLLATION()` names the binary charset, and MariaDB embeds only a
//! JSON-typed value in `JSON_ARRAY()` unquoted, which is how JSON columns
//! and the results of JSON functions (`JSON_OBJECT`, `JSON_EXTRACT`, …) are
//! recognised. That query also proves the model is a plain `SELECT`: a DDL
//! statement would commit the read-only transaction implicitly and run
//! outside it, so anything that cannot be read as a subquery is refused.

use base64::Engine as _;
use futures::TryStreamExt;
use sqlx::mysql::types::MySqlTime;
use sqlx::mysql::{MySqlArguments, MySqlConnectOptions, MySqlDatabaseError, MySqlRow};
use sqlx::{
    ConnectOptions, Connection as _, Executor, MySql, MySqlConnection, Row, TypeInfo, ValueRef,
};
use std::str::FromStr;

use super::chunks::{ChunkSender, ChunkTx};
use super::database::classify;
use super::driver::Driver;
use super::error::{Problem, SourceError};
use super::json;
use super::query::{BoundQuery, Column, Placeholders, unbindable};
use crate::config::Source;
use crate::param::Native;
use crate::rows::ValueError;

/// The server's flavour, from `SELECT VERSION()`: the two name their
/// statement timeout differently and only MariaDB keeps JSON as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    MariaDb,
    MySql,
}

pub struct Mysql {
    conn: MySqlConnection,
    flavour: Flavour,
}

/// Describing a MySQL query runs it over an empty result, which is all
/// [`Driver::check`] needs.
impl Driver for Mysql {
    const PLACEHOLDERS: Placeholders = Placeholders::Question;

    async fn connect(source: &Source) -> Result<Mysql, SourceError> {
        let fail = |problem: Problem, message: String| SourceError::Connect {
            source_name: source.name.clone(),
            problem,
            message,
        };
        let db_fail = |e: sqlx::Error| fail(problem(&e), message(&e));
        let opts = MySqlConnectOptions::from_str(&source.url)
            .map_err(|e| fail(Problem::Connect, format!("bad MySQL URL: {e}")))?
            // The driver would otherwise make `||` concatenate, changing
            // what a model's SQL means.
            .pipes_as_concat(false)
            .timezone(Some("+00:00".to_string()));
        let mut conn = opts.connect().await.map_err(db_fail)?;
        let version: String = sqlx::query_scalar("SELECT VERSION()")
            .fetch_one(&mut conn)
            .await
            .map_err(db_fail)?;
        let flavour = match version.contains("MariaDB") {
            true => Flavour::MariaDb,
            false => Flavour::MySql,
        };
        // Session-wide, so describing a query is bounded too; 0 means none.
        let timeout = match flavour {
            Flavour::MariaDb => format!(
                "SET SESSION max_statement_time = {}",
                source.statement_timeout.as_secs_f64()
            ),
            Flavour::MySql => format!(
                "SET SESSION max_execution_time = {}",
                source.statement_timeout.as_millis()
            ),
        };
        conn.execute(timeout.as_str()).await.map_err(db_fail)?;
        Ok(Mysql { conn, flavour })
    }

    async fn columns(&mut self, query: &BoundQuery) -> Result<Vec<Column>, SourceError> {
        // Preparing runs nothing, so a statement that is not a query is
        // refused as such; settling the columns runs the model's SQL (under
        // `LIMIT 0`), read-only, so a function it calls cannot write.
        let mut described = prepare(&mut self.conn, query).await?;
        let mut txn = self
            .conn
            .begin_with("START TRANSACTION READ ONLY")
            .await
            .map_err(|e| query_error(query, e))?;
        settle(&mut txn, self.flavour, query, &mut described).await?;
        txn.rollback().await.map_err(|e| query_error(query, e))?;
        Ok(described
            .into_iter()
            .map(|c| Column {
                type_name: c.type_name(),
                name: c.name,
            })
            .collect())
    }

    async fn stream(mut self, query: &BoundQuery, tx: &ChunkTx) -> Result<(), SourceError> {
        let err = |e| query_error(query, e);
        let mut txn = self
            .conn
            .begin_with("START TRANSACTION READ ONLY")
            .await
            .map_err(err)?;
        let columns = describe(&mut txn, self.flavour, query).await?;
        if let Some(c) = columns.iter().find(|c| c.kind == Kind::Unsupported) {
            return Err(SourceError::UnsupportedType {
                model: query.model.clone(),
                column: c.name.clone(),
                type_name: c.driver_name.clone(),
            });
        }
        let names = columns.iter().map(|c| c.name.clone()).collect();
        let mut out = ChunkSender::new(tx, query, names)?;
        let mut rows = sqlx::query_with(statement(query), arguments(query)?).fetch(&mut *txn);
        while let Some(row) = rows.try_next().await.map_err(err)? {
            out.rows()
                .push_row(|i, o| value(&row, i, columns[i].kind, o))
                .map_err(|(i, e)| SourceError::Query {
                    model: query.model.clone(),
                    problem: Problem::Other,
                    message: format!(
                        "column `{}` ({}): {e}",
                        columns[i].name,
                        columns[i].type_name()
                    ),
                })?;
            if !out.send_if_full().await {
                return Ok(());
            }
        }
        drop(rows);
        out.flush().await;
        txn.rollback().await.map_err(err)?;
        Ok(())
    }
}

/// How a column's values become JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `TINYINT(1)` (what `BOOL` is).
    Bool,
    Signed,
    Unsigned,
    Float,
    Double,
    Decimal,
    Text,
    Bytes,
    Json,
    Date,
    Time,
    DateTime,
    Timestamp,
    Year,
    Bit,
    /// A column that is always NULL (`SELECT NULL AS x`).
    Null,
    Unsupported,
}

impl Kind {
    /// From the driver's name for the column's type.
    fn of(driver_name: &str) -> Kind {
        match driver_name {
            "BOOLEAN" => Kind::Bool,
            "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => Kind::Signed,
            n if n.ends_with(" UNSIGNED") => Kind::Unsigned,
            "FLOAT" => Kind::Float,
            "DOUBLE" => Kind::Double,
            "DECIMAL" => Kind::Decimal,
            "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM"
            | "SET" => Kind::Text,
            "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => Kind::Bytes,
            "JSON" => Kind::Json,
            "DATE" => Kind::Date,
            "TIME" => Kind::Time,
            "DATETIME" => Kind::DateTime,
            "TIMESTAMP" => Kind::Timestamp,
            "YEAR" => Kind::Year,
            "BIT" => Kind::Bit,
            "NULL" => Kind::Null,
            _ => Kind::Unsupported,
        }
    }
}

/// A result column as the server describes it, once its kind is settled.
struct Described {
    name: String,
    /// What the driver calls the type (`BLOB` for a `_bin` `TEXT`, too).
    driver_name: String,
    kind: Kind,
}

impl Described {
    /// The type as `ebb preview` shows it and cursors bind it.
    fn type_name(&self) -> String {
        let text_name = match self.driver_name.as_str() {
            "BINARY" => "CHAR",
            "VARBINARY" => "VARCHAR",
            "TINYBLOB" => "TINYTEXT",
            "BLOB" => "TEXT",
            "MEDIUMBLOB" => "MEDIUMTEXT",
            "LONGBLOB" => "LONGTEXT",
            other => other,
        };
        match self.kind {
            Kind::Json => "JSON".to_string(),
            Kind::Text => text_name.to_string(),
            // An instant (read in the UTC session), so a cursor on it binds
            // one rather than a wall-clock time.
            Kind::Timestamp => "TIMESTAMP WITH TIME ZONE".to_string(),
            _ => self.driver_name.clone(),
        }
    }
}

/// The model's SQL as a statement: a trailing `;` is not part of it.
fn statement(query: &BoundQuery) -> &str {
    query.sql.trim_end().trim_end_matches(';').trim_end()
}

/// Prepares the query (nothing runs) and settles each column's kind by
/// asking the server about the string columns (see the module docs).
async fn describe(
    conn: &mut MySqlConnection,
    flavour: Flavour,
    query: &BoundQuery,
) -> Result<Vec<Described>, SourceError> {
    let mut columns = prepare(conn, query).await?;
    settle(conn, flavour, query, &mut columns).await?;
    Ok(columns)
}

/// The query's columns as the server prepares it, which runs nothing; a
/// statement without columns is refused as not a query.
async fn prepare(
    conn: &mut MySqlConnection,
    query: &BoundQuery,
) -> Result<Vec<Described>, SourceError> {
    let sql = statement(query);
    let prepared = conn.prepare(sql).await.map_err(|e| query_error(query, e))?;
    let columns: Vec<Described> = sqlx::Statement::columns(&prepared)
        .iter()
        .map(|c| {
            let driver_name = sqlx::Column::type_info(c).name().to_string();
            Described {
                name: sqlx::Column::name(c).to_string(),
                kind: Kind::of(&driver_name),
                driver_name,
            }
        })
        .collect();
    if columns.is_empty() {
        return Err(SourceError::Query {
            model: query.model.clone(),
            problem: Problem::Sql,
            message: "the query returns no columns; a model is a SELECT (or WITH … SELECT) query"
                .to_string(),
        });
    }
    Ok(columns)
}

/// Settles the kinds of the string columns by asking the server about
/// them: per column its collation, and on MariaDB whether it is JSON.
async fn settle(
    conn: &mut MySqlConnection,
    flavour: Flavour,
    query: &BoundQuery,
    columns: &mut [Described],
) -> Result<(), SourceError> {
    let mut probes = Vec::new();
    for (i, c) in columns.iter().enumerate() {
        let column = format!("ebb_none.c{i}");
        if c.kind == Kind::Bytes {
            probes.push((i, Probe::Binary, format!("COLLATION({column})")));
        }
        if flavour == Flavour::MariaDb && matches!(c.kind, Kind::Text | Kind::Bytes) {
            probes.push((
                i,
                Probe::Json,
                format!("JSON_ARRAY(COALESCE({column}, JSON_ARRAY()))"),
            ));
        }
    }
    let select = match probes.is_empty() {
        true => "1".to_string(),
        false => probes
            .iter()
            .map(|(_, _, expr)| expr.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    };
    let names = (0..columns.len())
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = statement(query);
    // The newlines keep a trailing `-- comment` in the model from hiding
    // the closing parenthesis. `LIMIT 0` keeps the server from reading any
    // table; only a query without tables (`SELECT 1 AS id`) is evaluated.
    let probe_sql = format!(
        "WITH ebb_q ({names}) AS (\n{sql}\n) SELECT {select} FROM (SELECT 1) AS ebb_one \
         LEFT JOIN (SELECT * FROM ebb_q LIMIT 0) AS ebb_none ON TRUE"
    );
    let row = sqlx::query_with(&probe_sql, arguments(query)?)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| match mysql_number(&e) {
            // It prepared on its own, so the query is no query expression.
            Some(ER_PARSE_ERROR) => SourceError::Query {
                model: query.model.clone(),
                problem: Problem::Sql,
                message: format!(
                    "the query cannot be read as a subquery, which is how Ebb learns its column types ({}); a model is a single SELECT (or WITH … SELECT) query",
                    message(&e)
                ),
            },
            _ => query_error(query, e),
        })?;
    for (at, (i, probe, _)) in probes.iter().enumerate() {
        let answer: String = row
            .try_get_unchecked(at)
            .map_err(|e| query_error(query, e))?;
        let column = &mut columns[*i];
        match probe {
            Probe::Binary if answer != "binary" => column.kind = Kind::Text,
            Probe::Json if column.kind == Kind::Text && answer == "[[]]" => {
                column.kind = Kind::Json
            }
            _ => {}
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Probe {
    /// Is the column's collation `binary` (bytes rather than text)?
    Binary,
    /// Does MariaDB treat the column as JSON?
    Json,
}

/// The query's parameters, bound as their native types.
fn arguments(query: &BoundQuery) -> Result<MySqlArguments, SourceError> {
    use sqlx::Arguments;
    let mut args = MySqlArguments::default();
    for native in query.natives()? {
        let added = match native {
            Native::Int(v) => args.add(v),
            Native::Float(v) => args.add(v),
            Native::Decimal(v) => args.add(v),
            Native::Text(v) => args.add(v),
            Native::Bool(v) => args.add(v),
            Native::Timestamp(v) => args.add(v),
            Native::TimestampTz(v) => args.add(v),
            Native::Date(v) => args.add(v),
        };
        added.map_err(|e| SourceError::Query {
            model: query.model.clone(),
            problem: Problem::Other,
            message: unbindable(e),
        })?;
    }
    Ok(args)
}

/// MySQL's error numbers say more than its SQLSTATEs (a missing grant is
/// `42000`, like a syntax error).
fn problem(e: &sqlx::Error) -> Problem {
    match mysql_number(e) {
        Some(1045) => Problem::Authentication,
        Some(1044 | 1142 | 1143) => Problem::Permission,
        // 1049: the URL names a database the server does not have.
        Some(1049 | 2002 | 2003 | 2005) => Problem::Connect,
        // MySQL's max_execution_time, MariaDB's max_statement_time.
        Some(3024 | 1969) => Problem::Timeout,
        _ => classify(e),
    }
}

const ER_PARSE_ERROR: u16 = 1064;

fn mysql_number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
}

/// The server's own message and error number, or the driver's text.
fn message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.try_downcast_ref::<MySqlDatabaseError>() {
            Some(my) => format!("{} (error {})", my.message(), my.number()),
            None => db.message().to_string(),
        },
        _ => e.to_string(),
    }
}

fn query_error(query: &BoundQuery, e: sqlx::Error) -> SourceError {
    SourceError::Query {
        model: query.model.clone(),
        problem: problem(&e),
        message: message(&e),
    }
}

/// One value as JSON; a failure names the column's position. The kind was
/// settled by [`describe`], so values are decoded without the driver's own
/// type check (which would, for one, refuse a `_bin` text column as a
/// string). Text is read as its bytes, so text that is not UTF-8 fails
/// only its row.
fn value(
    row: &MySqlRow,
    i: usize,
    kind: Kind,
    out: &mut Vec<u8>,
) -> Result<(), ValueError<(usize, String)>> {
    fn get<'r, T: sqlx::Decode<'r, MySql>>(row: &'r MySqlRow, i: usize) -> Result<T, String> {
        row.try_get_unchecked::<T, _>(i).map_err(|e| e.to_string())
    }
    let write = |out: &mut Vec<u8>| -> Result<(), ValueError<String>> {
        // Zero dates (`0000-00-00`) read as NULL: they name no day.
        if row.try_get_raw(i).map_err(|e| e.to_string())?.is_null() {
            json::write_null(out);
            return Ok(());
        }
        match kind {
            Kind::Bool => json::write_bool(out, get::<i64>(row, i)? != 0),
            Kind::Signed => json::write_integer(out, get::<i64>(row, i)?),
            Kind::Unsigned | Kind::Year | Kind::Bit => {
                json::write_integer(out, get::<u64>(row, i)?)
            }
            // Through its shortest decimal form, so FLOAT 1.1 stays 1.1
            // rather than the double nearest to the single.
            Kind::Float => {
                let f = get::<f32>(row, i)?;
                json::write_float(out, f.to_string().parse().unwrap_or(f as f64))
            }
            Kind::Double => json::write_float(out, get::<f64>(row, i)?),
            // The server sends DECIMAL as its exact digits.
            Kind::Decimal => json::write_decimal(out, get::<&str>(row, i)?),
            Kind::Text => json::write_text(out, get::<&[u8]>(row, i)?)?,
            Kind::Bytes => json::write_str(
                out,
                &base64::engine::general_purpose::STANDARD.encode(get::<&[u8]>(row, i)?),
            ),
            Kind::Json => json::write_json_text(out, get::<&[u8]>(row, i)?)
                .map_err(|e| e.map(|e| format!("holds invalid JSON: {e}")))?,
            Kind::Date => json::write_str(out, &get::<chrono::NaiveDate>(row, i)?.to_string()),
            Kind::Time => json::write_str(out, &time(&get::<MySqlTime>(row, i)?)),
            Kind::DateTime => json::write_datetime(out, get::<chrono::NaiveDateTime>(row, i)?, ""),
            Kind::Timestamp => {
                json::write_datetime(out, get::<chrono::NaiveDateTime>(row, i)?, "Z")
            }
            Kind::Null => json::write_null(out),
            Kind::Unsupported => return Err("unsupported type".into()),
        }
        Ok(())
    };
    write(out).map_err(|e| e.map(|e| (i, e)))
}

/// A TIME as MySQL writes it: a duration that may be negative or past
/// 24 hours (`-838:59:59`), fractions as 3 or 6 digits like other times.
fn time(t: &MySqlTime) -> String {
    // `MySqlTime::is_negative` answers the opposite in sqlx 0.8; the sign
    // itself is right.
    let sign = if t.sign().is_negative() { "-" } else { "" };
    let micros = t.microseconds();
    let fraction = match micros {
        0 => String::new(),
        m if m % 1000 == 0 => format!(".{:03}", m / 1000),
        m => format!(".{m:06}"),
    };
    format!(
        "{sign}{:02}:{:02}:{:02}{fraction}",
        t.hours(),
        t.minutes(),
        t.seconds()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::mysql::types::MySqlTimeSign;

    #[test]
    fn times_keep_sign_and_hours_past_a_day() {
        let t = |h, m, s, us| MySqlTime::new(MySqlTimeSign::Positive, h, m, s, us).unwrap();
        assert_eq!(time(&t(0, 0, 0, 0)), "00:00:00");
        assert_eq!(time(&t(7, 5, 3, 500_000)), "07:05:03.500");
        assert_eq!(time(&t(100, 0, 1, 1)), "100:00:01.000001");
        assert_eq!(
            time(&t(838, 59, 59, 0).with_sign(MySqlTimeSign::Negative)),
            "-838:59:59"
        );
    }

    #[test]
    fn kinds_follow_the_driver_names() {
        assert_eq!(Kind::of("BOOLEAN"), Kind::Bool);
        assert_eq!(Kind::of("BIGINT UNSIGNED"), Kind::Unsigned);
        assert_eq!(Kind::of("LONGBLOB"), Kind::Bytes);
        assert_eq!(Kind::of("GEOMETRY"), Kind::Unsupported);
        let text = Described {
            name: "t".into(),
            driver_name: "BLOB".into(),
            kind: Kind::Text,
        };
        assert_eq!(text.type_name(), "TEXT");
    }
}
