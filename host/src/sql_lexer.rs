//! Which text of a model's query is SQL, and which is a comment or a quoted
//! string or identifier, read one way for every rule that needs to know:
//! the single-statement rule (a `;` in a string ends nothing) and the
//! `{{…}}` templates (one in a comment or a string literal is text, neither
//! bound nor making the model incremental). One reader means the rules can
//! never disagree about where a comment ends.
//!
//! Quotes and comments differ between databases, so each source kind names
//! its [`Lexicon`]. Templates are not SQL, so a full SQL tokenizer would
//! have to be taught them; this reader only needs to know where comments
//! and quotes start and end, and `{{` is plain text to it.

use std::ops::Range;

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

/// What a stretch of a query is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// SQL (and anything else outside comments and quotes, such as `{{…}}`).
    Code,
    /// `-- …`, `# …` where the source allows it, or `/* … */`.
    Comment,
    /// A quoted string or identifier, quotes included.
    Quoted,
}

/// A comment or quote the query never closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unterminated {
    #[error("the query has an unterminated /* comment")]
    Comment,
    #[error("the query has an unterminated quote")]
    Quote,
    #[error("the query has an unterminated $-quoted string")]
    DollarQuote,
}

/// The stretches of `sql` from byte `from` on, in order; an unterminated
/// comment or quote ends them.
pub fn spans<'a>(
    sql: &'a str,
    from: usize,
    lexicon: &'a Lexicon,
) -> impl Iterator<Item = Result<(Span, Range<usize>), Unterminated>> + 'a {
    let mut at = Some(from);
    std::iter::from_fn(move || {
        let start = at.filter(|&a| a < sql.len())?;
        let next = span_at(sql, start, lexicon);
        at = next.as_ref().ok().map(|(_, end)| *end);
        Some(next.map(|(span, end)| (span, start..end)))
    })
}

/// The stretch starting at byte `at`, and where it ends.
fn span_at(sql: &str, at: usize, lexicon: &Lexicon) -> Result<(Span, usize), Unterminated> {
    let bytes = sql.as_bytes();
    let skip_to = |from: usize, pat: &str| sql[from..].find(pat).map(|p| from + p + pat.len());
    let c = bytes[at];
    if opens_line_comment(bytes, at, lexicon) {
        return Ok((Span::Comment, skip_to(at, "\n").unwrap_or(bytes.len())));
    }
    if c == b'/' && bytes.get(at + 1) == Some(&b'*') {
        let end = skip_to(at + 2, "*/").ok_or(Unterminated::Comment)?;
        return Ok((Span::Comment, end));
    }
    if opens_quote(c, lexicon) {
        let close = if c == b'[' { b']' } else { c };
        let mut j = at + 1;
        loop {
            match bytes.get(j) {
                None => return Err(Unterminated::Quote),
                Some(b'\\') if lexicon.backslash_escapes => j += 2,
                // A doubled quote is an escaped one.
                Some(&b) if b == close && c != b'[' && bytes.get(j + 1) == Some(&close) => j += 2,
                Some(&b) if b == close => return Ok((Span::Quoted, j + 1)),
                Some(_) => j += 1,
            }
        }
    }
    if let Some(tag) = dollar_tag(sql, at, lexicon) {
        let end = skip_to(at + tag.len(), tag).ok_or(Unterminated::DollarQuote)?;
        return Ok((Span::Quoted, end));
    }
    let end = (at + 1..bytes.len())
        .find(|&i| {
            let c = bytes[i];
            opens_line_comment(bytes, i, lexicon)
                || (c == b'/' && bytes.get(i + 1) == Some(&b'*'))
                || opens_quote(c, lexicon)
                || dollar_tag(sql, i, lexicon).is_some()
        })
        .unwrap_or(bytes.len());
    Ok((Span::Code, end))
}

fn opens_line_comment(bytes: &[u8], i: usize, lexicon: &Lexicon) -> bool {
    match bytes[i] {
        b'-' => bytes.get(i + 1) == Some(&b'-'),
        b'#' => lexicon.hash_comments,
        _ => false,
    }
}

fn opens_quote(c: u8, lexicon: &Lexicon) -> bool {
    matches!(c, b'\'' | b'"' | b'`') || (c == b'[' && lexicon.bracket_identifiers)
}

/// The `$tag$` at byte `i`, if it opens a dollar-quoted string (a
/// placeholder such as `$1` does not).
fn dollar_tag<'s>(sql: &'s str, i: usize, lexicon: &Lexicon) -> Option<&'s str> {
    if !lexicon.dollar_quotes {
        return None;
    }
    let rest = sql[i..].strip_prefix('$')?;
    let len = rest.find('$')?;
    let tag = &rest[..len];
    let word = tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (word && !tag.starts_with(|c: char| c.is_ascii_digit())).then(|| &sql[i..i + len + 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<'a>(sql: &'a str, lexicon: &'a Lexicon) -> Vec<(Span, &'a str)> {
        spans(sql, 0, lexicon)
            .map(|s| s.map(|(span, r)| (span, &sql[r])))
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn comments_and_quotes_are_told_from_code() {
        use Span::*;
        assert_eq!(
            read("SELECT 'a--b' -- c\n/* d */ x", &SQLITE),
            [
                (Code, "SELECT "),
                (Quoted, "'a--b'"),
                (Code, " "),
                (Comment, "-- c\n"),
                (Comment, "/* d */"),
                (Code, " x"),
            ]
        );
        assert_eq!(
            read("a 'it''s' [b] # c", &SQLITE),
            [
                (Code, "a "),
                (Quoted, "'it''s'"),
                (Code, " "),
                (Quoted, "[b]"),
                (Code, " # c")
            ]
        );
        assert_eq!(
            read(r"a 'it\'s' # c", &MYSQL),
            [
                (Code, "a "),
                (Quoted, r"'it\'s'"),
                (Code, " "),
                (Comment, "# c")
            ]
        );
        assert_eq!(
            read("$1 $x$ '{{a}}' $x$", &POSTGRES),
            [(Code, "$1 "), (Quoted, "$x$ '{{a}}' $x$")]
        );
        assert_eq!(read("{{ a }}", &POSTGRES), [(Code, "{{ a }}")]);
        let fails = |sql, lexicon| spans(sql, 0, lexicon).find_map(Result::err);
        assert_eq!(fails("a /* b", &SQLITE), Some(Unterminated::Comment));
        assert_eq!(fails("a 'b", &SQLITE), Some(Unterminated::Quote));
        assert_eq!(fails("$$ b", &POSTGRES), Some(Unterminated::DollarQuote));
    }
}
