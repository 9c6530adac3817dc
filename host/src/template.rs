//! `{{name}}` templates in model queries, read one way for everyone: the
//! config checks that a model's `cursor` and its query agree, extract turns
//! each template into a bind parameter, and a model whose query uses one is
//! incremental. All reading the query with the same scanner means the config
//! can never accept a template the extractor would read differently.
//!
//! A template counts only in the query's SQL: `{{…}}` inside a comment or a
//! string literal (as [`crate::sql_lexer`] reads the source's SQL) is text,
//! left as written, so commenting a template out really turns it off.

use crate::sql_lexer::{Lexicon, Span, spans};

/// A piece of a query: text as written, or a `{{…}}` with its name
/// (spaces inside the braces trimmed) and the byte offset of its `{{`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    Template { name: &'a str, at: usize },
}

/// A `{{` that no `}}` closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("`{{{{` without a closing `}}}}` in the query")]
pub struct Unclosed;

/// The pieces of `query` in order; an unclosed `{{` ends them. A comment or
/// quote the query never closes is text to the end (the single-statement
/// rule refuses such a query).
pub fn pieces<'a>(query: &'a str, lexicon: &'a Lexicon) -> Pieces<'a> {
    Pieces {
        query,
        lexicon,
        at: 0,
    }
}

/// Whether `query` references `{{name}}`.
pub fn uses(query: &str, lexicon: &Lexicon, name: &str) -> bool {
    templates(query, lexicon).any(|(n, _)| n == name)
}

/// Each template `query` uses, with the byte offset of its `{{`.
pub fn templates<'a>(
    query: &'a str,
    lexicon: &'a Lexicon,
) -> impl Iterator<Item = (&'a str, usize)> + 'a {
    pieces(query, lexicon)
        .map_while(Result::ok)
        .filter_map(|piece| match piece {
            Piece::Template { name, at } => Some((name, at)),
            Piece::Text(_) => None,
        })
}

/// See [`pieces`].
pub struct Pieces<'a> {
    query: &'a str,
    lexicon: &'a Lexicon,
    /// Where the next piece starts.
    at: usize,
}

impl Pieces<'_> {
    /// Where the next `{{` in the query's SQL is, from `self.at` on.
    fn next_open(&self) -> Option<usize> {
        spans(self.query, self.at, self.lexicon)
            .map_while(Result::ok)
            .filter(|(span, _)| *span == Span::Code)
            .find_map(|(_, range)| {
                let start = range.start;
                self.query[range].find("{{").map(|i| start + i)
            })
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = Result<Piece<'a>, Unclosed>;

    fn next(&mut self) -> Option<Self::Item> {
        let start = self.at;
        let rest = self.query.get(start..).filter(|r| !r.is_empty())?;
        let piece = match self.next_open() {
            None => {
                self.at = self.query.len();
                Piece::Text(rest)
            }
            Some(open) if open == start => {
                let after = &rest[2..];
                let Some(end) = after.find("}}") else {
                    self.at = self.query.len();
                    return Some(Err(Unclosed));
                };
                self.at = start + 2 + end + 2;
                Piece::Template {
                    name: after[..end].trim(),
                    at: start,
                }
            }
            Some(open) => {
                self.at = open;
                Piece::Text(&self.query[start..open])
            }
        };
        Some(Ok(piece))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql_lexer::{MYSQL, POSTGRES, SQLITE};

    #[test]
    fn templates_are_found_between_braces() {
        fn all(q: &str) -> Vec<Result<Piece<'_>, Unclosed>> {
            pieces(q, &SQLITE).collect()
        }
        assert_eq!(
            all("a > {{ last_sync_time }} OR b IS {{cursor}}"),
            [
                Ok(Piece::Text("a > ")),
                Ok(Piece::Template {
                    name: "last_sync_time",
                    at: 4
                }),
                Ok(Piece::Text(" OR b IS ")),
                Ok(Piece::Template {
                    name: "cursor",
                    at: 33
                }),
            ]
        );
        assert_eq!(all("x {{cursor"), [Ok(Piece::Text("x ")), Err(Unclosed)]);
        assert!(all("").is_empty());
        assert!(uses("WHERE {{ cursor }} IS NULL", &SQLITE, "cursor"));
        assert!(!uses("WHERE {{last_sync_time}} > 0", &SQLITE, "cursor"));
        assert!(!uses("WHERE cursor > 0", &SQLITE, "cursor"));
    }

    /// Commenting a template out, or quoting it, turns it off: it is left as
    /// written and the query does not use it.
    #[test]
    fn templates_in_comments_and_strings_are_text() {
        let found = |q: &'static str, lexicon| templates(q, lexicon).collect::<Vec<_>>();
        for lexicon in [&SQLITE, &POSTGRES, &MYSQL] {
            for q in [
                "SELECT * FROM t -- WHERE at > {{last_sync_time}}",
                "SELECT * FROM t /* WHERE at > {{ last_sync_time }} */",
                "SELECT '{{last_sync_time}}' AS t",
                "SELECT \"{{last_sync_time}}\" FROM t",
                "SELECT 1 -- {{last_sync_time\n FROM t",
            ] {
                assert_eq!(found(q, lexicon), [], "{q}");
                assert_eq!(
                    pieces(q, lexicon).collect::<Vec<_>>(),
                    [Ok(Piece::Text(q))],
                    "{q}"
                );
            }
            assert_eq!(
                found(
                    "SELECT '--' AS a -- {{cursor}}\nFROM t WHERE at > {{last_sync_time}}",
                    lexicon
                ),
                [("last_sync_time", 49)]
            );
        }
        assert_eq!(found("SELECT 1 # {{last_sync_time}}", &MYSQL), []);
        assert_eq!(
            found("SELECT 1 # {{last_sync_time}}", &SQLITE),
            [("last_sync_time", 11)]
        );
        assert_eq!(found("SELECT $x$ {{last_sync_time}} $x$", &POSTGRES), []);
        // An unterminated quote before a template: no template is read, and
        // the single-statement rule refuses the query.
        assert_eq!(found("SELECT 'a {{last_sync_time}}", &SQLITE), []);
    }
}
