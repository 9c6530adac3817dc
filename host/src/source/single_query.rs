//! The rule a model's SQL meets before anything runs, on every source:
//! one query, a `SELECT` or a `WITH … SELECT`, and nothing after it.
//! SQLite's driver runs every statement of a string in turn and the SQL
//! APIs take scripts, so a model of `SELECT …; DELETE FROM t` would run
//! both; Postgres and MySQL would refuse it only once it reached the
//! database, each in its own words. Checked when the model's query is
//! bound, the rule gives one message everywhere, before any connection.
//!
//! Telling one statement from two means reading the SQL as its database
//! does; [`crate::sql_lexer`] knows each source's quotes and comments.

use crate::sql_lexer::{Lexicon, Span, spans};

/// The statement without a trailing `;`, when it is a single `SELECT` or
/// `WITH` query; otherwise why Ebb will not run it.
pub fn single_query<'s>(sql: &'s str, lexicon: &Lexicon) -> Result<&'s str, String> {
    let refuse = |what: &str| {
        Err(format!(
            "{what}; Ebb only runs a single SELECT (or WITH … SELECT) query against this source"
        ))
    };
    let mut first: Option<usize> = None;
    let mut end = sql.len();
    for span in spans(sql, 0, lexicon) {
        let (span, range) = match span {
            Ok(s) => s,
            Err(unterminated) => return refuse(&unterminated.to_string()),
        };
        let content = match span {
            Span::Comment => continue,
            Span::Quoted => vec![range.start],
            Span::Code => sql[range.clone()]
                .char_indices()
                .filter_map(|(i, c)| match c {
                    ';' => {
                        end = end.min(range.start + i);
                        None
                    }
                    c if c.is_whitespace() => None,
                    _ => Some(range.start + i),
                })
                .collect(),
        };
        for at in content {
            if at > end {
                return refuse("the query holds more than one statement");
            }
            first.get_or_insert(at);
        }
    }
    let Some(start) = first else {
        return refuse("the query is empty");
    };
    let word: String = sql[start..]
        .trim_start_matches(|c: char| c == '(' || c.is_whitespace())
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    if word != "SELECT" && word != "WITH" {
        return refuse(&format!(
            "the query starts with `{}`",
            sql[start..].split_whitespace().next().unwrap_or_default()
        ));
    }
    Ok(sql[..end].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql_lexer::{MYSQL, POSTGRES, SQL_APIS, SQLITE};

    #[test]
    fn only_single_queries_run() {
        for lexicon in [&SQL_APIS, &SQLITE] {
            let one = |sql| single_query(sql, lexicon);
            assert_eq!(one("SELECT 1;").unwrap(), "SELECT 1");
            assert_eq!(
                one("-- users\n/* all */ with u as (select 1) select * from u ; -- end").unwrap(),
                "-- users\n/* all */ with u as (select 1) select * from u"
            );
            assert_eq!(
                one("SELECT ';', 'it''s' FROM t").unwrap(),
                "SELECT ';', 'it''s' FROM t"
            );
            for bad in [
                "DELETE FROM users",
                "SELECT 1; DROP TABLE users",
                "  ",
                "SELECT 'open",
                "/* SELECT */ UPDATE t SET a = 1",
                "SELECT 1; 'x'",
            ] {
                assert!(one(bad).is_err(), "{bad}");
            }
            assert!(one("(SELECT 1) UNION ALL (SELECT 2)").is_ok());
            assert!(
                one("INSERT INTO t SELECT 1")
                    .unwrap_err()
                    .contains("`INSERT`")
            );
        }
    }

    #[test]
    fn postgres_dollar_quotes_hide_semicolons_and_placeholders_do_not_quote() {
        assert!(single_query("SELECT $$a;b$$, $x$;$x$ FROM t", &POSTGRES).is_ok());
        assert!(single_query("SELECT $1; DELETE FROM t", &POSTGRES).is_err());
        assert!(single_query("SELECT $$open", &POSTGRES).is_err());
        assert!(single_query(r"SELECT 'C:\'; DROP TABLE t", &POSTGRES).is_err());
        assert!(single_query(r"SELECT 'it\'s;' FROM t", &MYSQL).is_ok());
    }

    #[test]
    fn each_source_reads_its_own_quotes_and_comments() {
        // SQLite: a backslash is a character, `#` is not a comment, and
        // brackets quote identifiers.
        assert!(single_query(r"SELECT 'C:\'; DELETE FROM t", &SQLITE).is_err());
        assert!(single_query("SELECT [a;b] FROM t", &SQLITE).is_ok());
        assert!(single_query("SELECT 1 # ; DELETE FROM t", &SQLITE).is_err());
        // The SQL APIs: `\'` stays inside the string, `#` comments.
        assert!(single_query(r"SELECT 'it\'s;' FROM t", &SQL_APIS).is_ok());
        assert!(single_query("SELECT 1 # ; DELETE FROM t", &SQL_APIS).is_ok());
    }
}
