//! The rule a model's SQL meets before anything runs, on every source:
//! one query, a `SELECT` or a `WITH … SELECT`, and nothing after it.
//! SQLite's driver runs every statement of a string in turn and the SQL
//! APIs take scripts, so a model of `SELECT …; DELETE FROM t` would run
//! both; Postgres and MySQL would refuse it only once it reached the
//! database, each in its own words. Checked when the model's query is
//! bound, the rule gives one message everywhere, before any connection.
//!
//! Telling one statement from two means reading the SQL as its database
//! does: quotes, comments and identifiers differ, so each source names
//! its [`Lexicon`].

/// How a source's SQL quotes and comments.
pub struct Lexicon {
    /// `#` starts a comment to the end of the line (MySQL, BigQuery).
    pub hash_comments: bool,
    /// A backslash escapes the next character inside quotes.
    pub backslash_escapes: bool,
    /// `[name]` quotes an identifier (SQLite).
    pub bracket_identifiers: bool,
    /// `$tag$ … $tag$` quotes a string (Postgres).
    pub dollar_quotes: bool,
}

/// The SQL-over-HTTP warehouses (Snowflake, BigQuery, Databricks).
pub const SQL_APIS: Lexicon = Lexicon {
    hash_comments: true,
    backslash_escapes: true,
    bracket_identifiers: false,
    dollar_quotes: false,
};

pub const SQLITE: Lexicon = Lexicon {
    hash_comments: false,
    backslash_escapes: false,
    bracket_identifiers: true,
    dollar_quotes: false,
};

/// Postgres and Redshift (standard strings, where a backslash is a
/// character).
pub const POSTGRES: Lexicon = Lexicon {
    hash_comments: false,
    backslash_escapes: false,
    bracket_identifiers: false,
    dollar_quotes: true,
};

pub const MYSQL: Lexicon = Lexicon {
    hash_comments: true,
    backslash_escapes: true,
    bracket_identifiers: false,
    dollar_quotes: false,
};

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
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let skip_to = |from: usize, pat: &str| sql[from..].find(pat).map(|p| from + p + pat.len());
        let next = match c {
            b'-' if bytes.get(i + 1) == Some(&b'-') => skip_to(i, "\n").unwrap_or(bytes.len()),
            b'#' if lexicon.hash_comments => skip_to(i, "\n").unwrap_or(bytes.len()),
            b'/' if bytes.get(i + 1) == Some(&b'*') => match skip_to(i + 2, "*/") {
                Some(n) => n,
                None => return refuse("the query has an unterminated /* comment"),
            },
            b'\'' | b'"' | b'`' | b'[' if c != b'[' || lexicon.bracket_identifiers => {
                if end < sql.len() {
                    return refuse("the query holds more than one statement");
                }
                first.get_or_insert(i);
                let close = if c == b'[' { b']' } else { c };
                let mut j = i + 1;
                loop {
                    match bytes.get(j) {
                        None => return refuse("the query has an unterminated quote"),
                        Some(b'\\') if lexicon.backslash_escapes => j += 2,
                        Some(&b) if b == close => {
                            // A doubled quote is an escaped one.
                            if c != b'[' && bytes.get(j + 1) == Some(&close) {
                                j += 2;
                            } else {
                                break j + 1;
                            }
                        }
                        Some(_) => j += 1,
                    }
                }
            }
            b'$' if lexicon.dollar_quotes
                && let Some(tag) = dollar_tag(&sql[i..]) =>
            {
                if end < sql.len() {
                    return refuse("the query holds more than one statement");
                }
                first.get_or_insert(i);
                match skip_to(i + tag.len(), tag) {
                    Some(n) => n,
                    None => return refuse("the query has an unterminated $-quoted string"),
                }
            }
            b';' => {
                end = end.min(i);
                i + 1
            }
            c if c.is_ascii_whitespace() => i + 1,
            _ => {
                if end < sql.len() {
                    return refuse("the query holds more than one statement");
                }
                first.get_or_insert(i);
                i + 1
            }
        };
        i = next;
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

/// The `$tag$` opening `sql`, if it opens a dollar-quoted string (a
/// placeholder such as `$1` does not).
fn dollar_tag(sql: &str) -> Option<&str> {
    let rest = sql.strip_prefix('$')?;
    let len = rest.find('$')?;
    let tag = &rest[..len];
    let word = tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (word && !tag.starts_with(|c: char| c.is_ascii_digit())).then(|| &sql[..len + 2])
}

#[cfg(test)]
mod tests {
    use super::*;

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
