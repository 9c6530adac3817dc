//! `{{name}}` templates in model queries, read one way for everyone: the
//! config checks that a model's `cursor` and its query agree, and extract
//! turns each template into a bind parameter. Both reading the query with
//! the same scanner means the config can never accept a template the
//! extractor would read differently.

/// A piece of a query: text as written, or a `{{…}}` with its name
/// (spaces inside the braces trimmed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    Template(&'a str),
}

/// A `{{` that no `}}` closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("`{{{{` without a closing `}}}}` in the query")]
pub struct Unclosed;

/// The pieces of `query` in order; an unclosed `{{` ends them.
pub fn pieces(query: &str) -> Pieces<'_> {
    Pieces { rest: Some(query) }
}

/// Whether `query` references `{{name}}`.
pub fn uses(query: &str, name: &str) -> bool {
    pieces(query)
        .map_while(Result::ok)
        .any(|piece| piece == Piece::Template(name))
}

/// See [`pieces`].
pub struct Pieces<'a> {
    /// What is left to read; `None` once done.
    rest: Option<&'a str>,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = Result<Piece<'a>, Unclosed>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest.filter(|r| !r.is_empty())?;
        let piece = match rest.find("{{") {
            None => {
                self.rest = None;
                Piece::Text(rest)
            }
            Some(0) => {
                let after = &rest[2..];
                let Some(end) = after.find("}}") else {
                    self.rest = None;
                    return Some(Err(Unclosed));
                };
                self.rest = Some(&after[end + 2..]);
                Piece::Template(after[..end].trim())
            }
            Some(start) => {
                self.rest = Some(&rest[start..]);
                Piece::Text(&rest[..start])
            }
        };
        Some(Ok(piece))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_found_between_braces() {
        fn all(q: &str) -> Vec<Result<Piece<'_>, Unclosed>> {
            pieces(q).collect()
        }
        assert_eq!(
            all("a > {{ last_sync_time }} OR b IS {{cursor}}"),
            [
                Ok(Piece::Text("a > ")),
                Ok(Piece::Template("last_sync_time")),
                Ok(Piece::Text(" OR b IS ")),
                Ok(Piece::Template("cursor")),
            ]
        );
        assert_eq!(all("x {{cursor"), [Ok(Piece::Text("x ")), Err(Unclosed)]);
        assert!(all("").is_empty());
        assert!(uses("WHERE {{ cursor }} IS NULL", "cursor"));
        assert!(!uses("WHERE {{last_sync_time}} > 0", "cursor"));
        assert!(!uses("WHERE cursor > 0", "cursor"));
    }
}
