//! Shell-style glob patterns for routes, paths and attribute values
//! (`/checkout*`, `/health?`, `/api/v[12]/*`).
//!
//! `*` matches any run of characters (`/` included: routes are matched as
//! plain strings, not file paths), `?` one character, `[abc]`, `[a-z]` and
//! `[!abc]` one character of (or not of) a set, `\` makes the next character
//! literal. A pattern is checked once, when it is built
//! ([`Glob::new`]); matching never fails and takes time proportional to
//! pattern length times text length at worst.

use std::fmt;

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("glob {0:?}: `[` without its closing `]`")]
    UnclosedClass(String),
    #[error("glob {0:?}: `[]` matches nothing")]
    EmptyClass(String),
    #[error("glob {0:?}: range {1}-{2} runs backwards")]
    ReversedRange(String, char, char),
    #[error("glob {0:?}: ends with a lone `\\`")]
    TrailingEscape(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `[...]`: inclusive ranges (a single character is `(c, c)`).
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Literal(l) => *l == c,
            Token::One => true,
            Token::Star => false,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
            }
        }
    }
}

/// A checked glob pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    tokens: Vec<Token>,
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.pattern)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

impl std::str::FromStr for Glob {
    type Err = GlobError;
    fn from_str(s: &str) -> Result<Glob, GlobError> {
        Glob::new(s)
    }
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        let err_pattern = || pattern.to_owned();
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            let tok = match c {
                '*' => {
                    // `**` is `*`.
                    if tokens.last() == Some(&Token::Star) {
                        continue;
                    }
                    Token::Star
                }
                '?' => Token::One,
                '\\' => Token::Literal(
                    chars
                        .next()
                        .ok_or_else(|| GlobError::TrailingEscape(err_pattern()))?,
                ),
                '[' => {
                    let negated = chars.next_if(|&c| c == '!' || c == '^').is_some();
                    let mut ranges = Vec::new();
                    let mut closed = false;
                    // A `]` first in the set is a member, not the end.
                    let mut first = true;
                    while let Some(c) = chars.next() {
                        if c == ']' && !first {
                            closed = true;
                            break;
                        }
                        first = false;
                        let lo = if c == '\\' {
                            chars
                                .next()
                                .ok_or_else(|| GlobError::TrailingEscape(err_pattern()))?
                        } else {
                            c
                        };
                        let hi = if chars.peek() == Some(&'-') {
                            let mut ahead = chars.clone();
                            ahead.next();
                            match ahead.peek() {
                                // `a-]`: the dash is a member.
                                Some(']') | None => lo,
                                Some(_) => {
                                    chars.next();
                                    let hi = chars.next().unwrap_or(lo);
                                    let hi = if hi == '\\' {
                                        chars.next().ok_or_else(|| {
                                            GlobError::TrailingEscape(err_pattern())
                                        })?
                                    } else {
                                        hi
                                    };
                                    if hi < lo {
                                        return Err(GlobError::ReversedRange(
                                            err_pattern(),
                                            lo,
                                            hi,
                                        ));
                                    }
                                    hi
                                }
                            }
                        } else {
                            lo
                        };
                        ranges.push((lo, hi));
                    }
                    if !closed {
                        return Err(GlobError::UnclosedClass(err_pattern()));
                    }
                    if ranges.is_empty() {
                        return Err(GlobError::EmptyClass(err_pattern()));
                    }
                    Token::Class { negated, ranges }
                }
                c => Token::Literal(c),
            };
            tokens.push(tok);
        }
        Ok(Glob {
            pattern: pattern.to_owned(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        let toks = &self.tokens;
        let (mut p, mut t) = (0usize, 0usize);
        // The last `*` seen: the token after it and the text position it
        // has swallowed up to. On a mismatch it swallows one more character.
        let mut star: Option<(usize, usize)> = None;
        loop {
            if let Some(tok) = toks.get(p) {
                if *tok == Token::Star {
                    star = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                if let Some(c) = text[t..].chars().next() {
                    if tok.matches(c) {
                        p += 1;
                        t += c.len_utf8();
                        continue;
                    }
                }
            } else if t == text.len() {
                return true;
            }
            match star {
                Some((after, from)) => match text[from..].chars().next() {
                    Some(c) => {
                        let next = from + c.len_utf8();
                        star = Some((after, next));
                        p = after;
                        t = next;
                    }
                    None => return false,
                },
                None => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Glob::new(p).unwrap().matches(t)
    }

    #[test]
    fn stars_and_question_marks() {
        assert!(m("/checkout*", "/checkout"));
        assert!(m("/checkout*", "/checkout/cart/7"));
        assert!(!m("/checkout*", "/api/checkout"));
        assert!(m("*checkout*", "/api/checkout/7"));
        assert!(m("/health?", "/healthz"));
        assert!(!m("/health?", "/health"));
        assert!(m("*", ""));
        assert!(m("", ""));
        assert!(!m("", "x"));
        assert!(m("a*b*c", "aXXbYYbc"));
        assert!(!m("a*b*c", "aXXbYYb"));
        assert!(m("/users/{id}", "/users/{id}"));
        assert!(m("**/metrics", "/x/metrics"));
        // Multi-byte characters are one character each.
        assert!(m("/caf?", "/café"));
        assert!(m("*é*", "/café/x"));
    }

    #[test]
    fn classes_and_escapes() {
        assert!(m("/api/v[12]/*", "/api/v2/users"));
        assert!(!m("/api/v[12]/*", "/api/v3/users"));
        assert!(m("/api/v[!12]/*", "/api/v3/users"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[a-c]x", "dx"));
        assert!(m("[]]", "]"));
        assert!(m("[a-]", "-"));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "x"));
        assert!(m("[\\]]", "]"));
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        assert_eq!(
            Glob::new("/api/[v1").unwrap_err(),
            GlobError::UnclosedClass("/api/[v1".into())
        );
        assert!(matches!(
            Glob::new("[z-a]"),
            Err(GlobError::ReversedRange(_, 'z', 'a'))
        ));
        assert!(matches!(
            Glob::new("abc\\"),
            Err(GlobError::TrailingEscape(_))
        ));
        assert!(Glob::new("[!]").is_err());
        let e = Glob::new("/x[").unwrap_err().to_string();
        assert!(e.contains("/x[") && e.contains("closing"), "{e}");
    }

    #[test]
    fn worst_case_backtracking_stays_linear_in_stars() {
        // The classic exponential case for naive recursion.
        let text = "a".repeat(200);
        assert!(!m(&format!("{}b", "a*".repeat(20)), &text));
    }
}
