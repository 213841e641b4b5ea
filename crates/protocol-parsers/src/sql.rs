//! SQL text helpers shared by the MySQL and PostgreSQL parsers and by the
//! span builder: [`sanitize`] (literals to `?`) and [`summarize`] (operation
//! and main table, best effort).
//!
//! Both work on one lexer that understands the quoting rules of MySQL and
//! PostgreSQL at once: `'...'` strings with `''` and backslash escapes,
//! `E'...'`, `X'..'`/`B'..'`/`0x..`/`0b..`, dollar quotes (`$$...$$`,
//! `$tag$...$tag$`), `"..."` and `` `...` `` identifiers, `--` and (nested)
//! `/* */` comments. Nothing here panics, whatever the input; an unterminated
//! quote or comment runs to the end of the text.
//!
//! Known limits: a MySQL string written in double quotes (`WHERE a = "x"`,
//! without `ANSI_QUOTES`) is taken for an identifier and kept; `#` is not
//! taken for a comment (it is an operator in PostgreSQL), so a MySQL `#`
//! comment is sanitised like SQL text.

pub(crate) mod wire;

/// Marker the wire parsers append to a statement they had to cut (see
/// [`MAX_SQL_LEN`]). [`sanitize`] keeps it at the end of its output.
pub const TRUNCATED_MARKER: &str = " /* zt:truncated */";

/// Longest statement text the wire parsers keep, in bytes; longer statements
/// are cut there and end with [`TRUNCATED_MARKER`].
pub const MAX_SQL_LEN: usize = 16 * 1024;

/// Operation and main table of a statement, best effort.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SqlSummary {
    /// `SELECT`, `INSERT`, ... upper-case: the first keyword, or for
    /// `WITH ... SELECT` the keyword of the main statement.
    pub operation: Option<String>,
    /// Main table the statement names (`FROM`/`INTO`/`UPDATE`/`TABLE`
    /// target), schema-qualified as written, quotes removed. `None` when
    /// unsure (sub-query, function, unknown statement).
    pub table: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    /// Spaces, tabs, newlines.
    Space,
    /// `-- ...` or `/* ... */`.
    Comment,
    /// Unquoted identifier or keyword (may contain digits, `_`, `$`).
    Word,
    /// `"..."` or `` `...` `` identifier.
    QuotedIdent,
    /// String, number, hex/bit or dollar-quoted literal.
    Literal,
    /// `$1`, `?`, `:name` is a Punct followed by a Word.
    Placeholder,
    /// Any other single character (operator, parenthesis, comma, ...).
    Punct,
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

/// Byte classes: 1 = starts an identifier, 2 = continues one, 4 = blank.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 {
            t[i] |= 1 | 2;
        }
        if b.is_ascii_digit() || b == b'$' {
            t[i] |= 2;
        }
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
            t[i] |= 4;
        }
        i += 1;
    }
    t
};

fn is_ident_start(b: u8) -> bool {
    CLASS[b as usize] & 1 != 0
}

fn is_ident_cont(b: u8) -> bool {
    CLASS[b as usize] & 2 != 0
}

fn is_blank(b: u8) -> bool {
    CLASS[b as usize] & 4 != 0
}

impl<'a> Lexer<'a> {
    fn new(s: &'a str) -> Self {
        Lexer {
            s: s.as_bytes(),
            i: 0,
        }
    }

    fn at(&self, k: usize) -> u8 {
        self.s.get(self.i + k).copied().unwrap_or(0)
    }

    /// Whether the previous byte ends a word or quoted name (`t.5` is not a
    /// number).
    fn prev_is_ident(&self) -> bool {
        self.i > 0 && matches!(self.s[self.i - 1], b'"' | b'`')
            || self.i > 0 && is_ident_cont(self.s[self.i - 1]) && self.s[self.i - 1] != b'$'
    }

    /// Skip a quoted run starting at `self.i` (the opening quote), honouring
    /// doubled quotes and, when `backslash`, backslash escapes.
    fn quoted(&mut self, q: u8, backslash: bool) {
        self.i += 1;
        while self.i < self.s.len() {
            let b = self.s[self.i];
            if backslash && b == b'\\' {
                self.i += 2;
            } else if b == q {
                if self.at(1) == q {
                    self.i += 2;
                } else {
                    self.i += 1;
                    return;
                }
            } else {
                self.i += 1;
            }
        }
        self.i = self.s.len();
    }

    fn number(&mut self) {
        let s = self.s;
        if s[self.i] == b'0' && matches!(self.at(1), b'x' | b'X') && self.at(2).is_ascii_hexdigit()
        {
            self.i += 2;
            while self.i < s.len() && s[self.i].is_ascii_hexdigit() {
                self.i += 1;
            }
            return;
        }
        if s[self.i] == b'0'
            && matches!(self.at(1), b'b' | b'B')
            && matches!(self.at(2), b'0' | b'1')
        {
            self.i += 2;
            while self.i < s.len() && matches!(s[self.i], b'0' | b'1') {
                self.i += 1;
            }
            return;
        }
        while self.i < s.len() && s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        if self.i < s.len() && s[self.i] == b'.' {
            self.i += 1;
            while self.i < s.len() && s[self.i].is_ascii_digit() {
                self.i += 1;
            }
        }
        if matches!(self.at(0), b'e' | b'E') {
            let k = if matches!(self.at(1), b'+' | b'-') {
                2
            } else {
                1
            };
            if self.at(k).is_ascii_digit() {
                self.i += k;
                while self.i < s.len() && s[self.i].is_ascii_digit() {
                    self.i += 1;
                }
            }
        }
    }

    /// Length of a dollar-quote opening tag (`$$`, `$tag$`) at `self.i`.
    fn dollar_tag(&self) -> Option<usize> {
        let s = &self.s[self.i..];
        let mut k = 1;
        if s.get(1).is_some_and(|&b| is_ident_start(b)) {
            while k < s.len() && (s[k].is_ascii_alphanumeric() || s[k] == b'_' || s[k] >= 0x80) {
                k += 1;
            }
        }
        (s.get(k) == Some(&b'$')).then_some(k + 1)
    }

    fn next(&mut self) -> Option<(Tok, usize, usize)> {
        let s = self.s;
        let start = self.i;
        let b = *s.get(self.i)?;
        let tok = match b {
            _ if is_blank(b) => {
                self.i += s[self.i..]
                    .iter()
                    .position(|&c| !is_blank(c))
                    .unwrap_or(s.len() - self.i);
                Tok::Space
            }
            b'-' if self.at(1) == b'-' => {
                while self.i < s.len() && s[self.i] != b'\n' {
                    self.i += 1;
                }
                Tok::Comment
            }
            b'/' if self.at(1) == b'*' => {
                let mut depth = 0usize;
                while self.i < s.len() {
                    if s[self.i] == b'/' && self.at(1) == b'*' {
                        depth += 1;
                        self.i += 2;
                    } else if s[self.i] == b'*' && self.at(1) == b'/' {
                        depth -= 1;
                        self.i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        self.i += 1;
                    }
                }
                self.i = self.i.min(s.len());
                Tok::Comment
            }
            b'\'' => {
                self.quoted(b'\'', true);
                Tok::Literal
            }
            b'"' | b'`' => {
                self.quoted(b, false);
                Tok::QuotedIdent
            }
            b'$' if self.at(1).is_ascii_digit() => {
                self.i += 1;
                while self.i < s.len() && s[self.i].is_ascii_digit() {
                    self.i += 1;
                }
                Tok::Placeholder
            }
            b'$' => match self.dollar_tag() {
                Some(k) => {
                    let tag = &s[self.i..self.i + k];
                    let body = self.i + k;
                    self.i = match s[body..].windows(k).position(|w| w == tag) {
                        Some(p) => body + p + k,
                        None => s.len(),
                    };
                    Tok::Literal
                }
                None => {
                    self.i += 1;
                    Tok::Punct
                }
            },
            b'?' => {
                self.i += 1;
                Tok::Placeholder
            }
            // Words are consumed whole, so a digit starting a token is a
            // number (`t1`, `col_2` never get here).
            b'0'..=b'9' => {
                self.number();
                Tok::Literal
            }
            b'.' if self.at(1).is_ascii_digit() && !self.prev_is_ident() => {
                self.number();
                Tok::Literal
            }
            // Prefixed strings: E'..' (escapes), X'..' / B'..' (hex, bit),
            // N'..' (national), U&'..' (unicode).
            b'e' | b'E' | b'x' | b'X' | b'b' | b'B' | b'n' | b'N' if self.at(1) == b'\'' => {
                self.i += 1;
                self.quoted(b'\'', true);
                Tok::Literal
            }
            b'u' | b'U' if self.at(1) == b'&' && self.at(2) == b'\'' => {
                self.i += 2;
                self.quoted(b'\'', true);
                Tok::Literal
            }
            _ if is_ident_start(b) => {
                self.i += s[self.i..]
                    .iter()
                    .position(|&c| !is_ident_cont(c))
                    .unwrap_or(s.len() - self.i);
                Tok::Word
            }
            _ => {
                self.i += 1;
                // Keep a multi-byte character whole (only reached for
                // continuation bytes of malformed text: ident_start covers
                // every byte >= 0x80).
                Tok::Punct
            }
        };
        Some((tok, start, self.i))
    }
}

/// Replace every literal of `sql` with `?`: quoted strings (`'..'`,
/// `E'..'`, `N'..'`, `U&'..'`), dollar-quoted strings, numbers, hex and bit
/// literals. Identifiers (quoted or not), keywords, placeholders (`$1`, `?`,
/// `:name`), operators, whitespace and comments are kept as written, so
/// sqlcommenter-style comments (trace context, test ids) survive. An
/// unterminated literal becomes a single `?` running to the end. The result
/// is idempotent: `sanitize(&sanitize(s)) == sanitize(s)`.
pub fn sanitize(sql: &str) -> String {
    let (body, marker) = match sql.strip_suffix(TRUNCATED_MARKER) {
        Some(b) => (b, TRUNCATED_MARKER),
        None => (sql, ""),
    };
    let mut out = String::with_capacity(body.len() + marker.len());
    let mut lx = Lexer::new(body);
    // Copy the text between literals in runs. Token bounds always fall on
    // ASCII bytes, so the slices are on character boundaries; `get` keeps
    // it panic-free regardless.
    let mut copied = 0;
    while let Some((tok, a, b)) = lx.next() {
        if tok == Tok::Literal {
            out.push_str(body.get(copied..a).unwrap_or(""));
            out.push('?');
            copied = b;
        }
    }
    out.push_str(body.get(copied..).unwrap_or(""));
    out.push_str(marker);
    out
}

/// A significant token for [`summarize`]: comments and spaces dropped.
struct Sig<'a> {
    tok: Tok,
    text: &'a str,
}

fn significant(sql: &str) -> impl Iterator<Item = Sig<'_>> {
    let mut lx = Lexer::new(sql);
    std::iter::from_fn(move || lx.next())
        .filter(|(t, _, _)| !matches!(t, Tok::Space | Tok::Comment))
        .map(move |(tok, a, b)| Sig {
            tok,
            text: sql.get(a..b).unwrap_or(""),
        })
}

fn unquote(s: &str) -> String {
    let bytes = s.as_bytes();
    if bytes.len() >= 2
        && (bytes[0] == b'"' || bytes[0] == b'`')
        && bytes[bytes.len() - 1] == bytes[0]
    {
        let q = &s[..1];
        let inner = &s[1..s.len() - 1];
        inner.replace(&format!("{q}{q}"), q)
    } else if bytes.first().is_some_and(|&b| b == b'"' || b == b'`') {
        s[1..].to_owned()
    } else {
        s.to_owned()
    }
}

/// Words that end a table-name search or can never be a table name.
const NOT_A_TABLE: &[&str] = &[
    "SELECT",
    "WHERE",
    "SET",
    "VALUES",
    "VALUE",
    "FROM",
    "INTO",
    "AS",
    "ON",
    "USING",
    "WITH",
    "LATERAL",
    "DUAL",
    "DEFAULT",
    "GROUP",
    "ORDER",
    "LIMIT",
    "UNION",
    "JOIN",
    "LEFT",
    "RIGHT",
    "INNER",
    "OUTER",
    "CROSS",
    "NATURAL",
    "HAVING",
    "WINDOW",
    "RETURNING",
    "FOR",
    "OFFSET",
];

/// Read a possibly qualified name (`a`, `s.a`, `"S"."A"`) starting at `toks[i]`.
fn name_at(toks: &[Sig<'_>], i: usize) -> Option<String> {
    name_at_(toks, i, false)
}

/// Like [`name_at`], for a name a column list may follow (`INTO t (a, b)`).
fn name_before_list(toks: &[Sig<'_>], i: usize) -> Option<String> {
    name_at_(toks, i, true)
}

fn name_at_(toks: &[Sig<'_>], mut i: usize, list_ok: bool) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    loop {
        let t = toks.get(i)?;
        match t.tok {
            Tok::Word => {
                if parts.is_empty() && NOT_A_TABLE.iter().any(|k| k.eq_ignore_ascii_case(t.text)) {
                    return None;
                }
                parts.push(t.text.to_owned());
            }
            Tok::QuotedIdent => parts.push(unquote(t.text)),
            _ => return None,
        }
        i += 1;
        match toks.get(i) {
            Some(t) if t.tok == Tok::Punct && t.text == "." => i += 1,
            // A name followed by `(` is a function call, not a table.
            Some(t) if t.tok == Tok::Punct && t.text == "(" && !list_ok => return None,
            _ => break,
        }
    }
    Some(if parts.len() == 1 {
        parts.pop().unwrap_or_default()
    } else {
        parts.join(".")
    })
}

fn is_kw(t: &Sig<'_>, kw: &str) -> bool {
    t.tok == Tok::Word && t.text.eq_ignore_ascii_case(kw)
}

/// Index of the first `kw` at parenthesis depth 0 from `from`.
fn find_kw(toks: &[Sig<'_>], from: usize, kw: &str) -> Option<usize> {
    let mut depth = 0i32;
    for (k, t) in toks.iter().enumerate().skip(from) {
        if t.tok == Tok::Punct {
            match t.text {
                "(" => depth += 1,
                ")" => depth -= 1,
                ";" if depth == 0 => return None,
                _ => {}
            }
        } else if depth == 0 && is_kw(t, kw) {
            return Some(k);
        }
    }
    None
}

/// Skip words in `skip` (modifiers such as `IGNORE`, `ONLY`, `IF NOT EXISTS`).
fn skip_words(toks: &[Sig<'_>], mut i: usize, skip: &[&str]) -> usize {
    while toks
        .get(i)
        .is_some_and(|t| skip.iter().any(|k| is_kw(t, k)))
    {
        i += 1;
    }
    i
}

/// Tokens of a statement's head looked at by [`summarize`] (a table named
/// after that is not found).
const MAX_SUMMARY_TOKENS: usize = 512;

/// Operation and main table of `sql`, best effort (see [`SqlSummary`]).
pub fn summarize(sql: &str) -> SqlSummary {
    // A statement's head is enough: cap the work on huge texts.
    let mut toks: Vec<Sig<'_>> = Vec::with_capacity(32);
    toks.extend(significant(sql).take(MAX_SUMMARY_TOKENS));
    let Some(first) = toks.first() else {
        return SqlSummary::default();
    };
    if first.tok != Tok::Word {
        // `(SELECT ...)` and friends: look inside the first parenthesis.
        if first.tok == Tok::Punct && first.text == "(" {
            let inner = toks
                .iter()
                .skip(1)
                .find(|t| t.tok != Tok::Punct || t.text != "(");
            if inner.is_some_and(|t| is_kw(t, "SELECT")) {
                return SqlSummary {
                    operation: Some("SELECT".into()),
                    table: None,
                };
            }
        }
        return SqlSummary::default();
    }
    let mut start = 0;
    if is_kw(first, "WITH") {
        // Skip `WITH [RECURSIVE] name [(cols)] AS [NOT] [MATERIALIZED] (...)`, ...
        let mut depth = 0i32;
        let mut main = None;
        for (k, t) in toks.iter().enumerate().skip(1) {
            if t.tok == Tok::Punct {
                match t.text {
                    "(" => depth += 1,
                    ")" => depth -= 1,
                    _ => {}
                }
            } else if depth == 0
                && t.tok == Tok::Word
                && [
                    "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "VALUES", "TABLE",
                ]
                .iter()
                .any(|kw| t.text.eq_ignore_ascii_case(kw))
                && toks[k - 1].tok == Tok::Punct
                && toks[k - 1].text == ")"
            {
                main = Some(k);
                break;
            }
        }
        match main {
            Some(k) => start = k,
            None => {
                return SqlSummary {
                    operation: Some("WITH".into()),
                    table: None,
                }
            }
        }
    }
    let op_tok = &toks[start];
    let op = op_tok.text.to_ascii_uppercase();
    let i = start + 1;
    let table = match op.as_str() {
        "SELECT" => find_kw(&toks, i, "FROM")
            .and_then(|k| name_at(&toks, skip_words(&toks, k + 1, &["ONLY"]))),
        "DELETE" => find_kw(&toks, i, "FROM")
            .and_then(|k| name_at(&toks, skip_words(&toks, k + 1, &["ONLY"]))),
        "INSERT" | "REPLACE" | "MERGE" => {
            let j = skip_words(
                &toks,
                i,
                &["LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE"],
            );
            if toks.get(j).is_some_and(|t| is_kw(t, "INTO")) {
                name_before_list(&toks, j + 1)
            } else {
                name_before_list(&toks, j)
            }
        }
        "UPDATE" => name_at(
            &toks,
            skip_words(&toks, i, &["LOW_PRIORITY", "IGNORE", "ONLY"]),
        ),
        "TABLE" | "COPY" | "LOCK" => {
            name_before_list(&toks, skip_words(&toks, i, &["ONLY", "TABLE", "TABLES"]))
        }
        "TRUNCATE" => name_at(&toks, skip_words(&toks, i, &["TABLE", "ONLY"])),
        // LOAD DATA [LOCAL] INFILE '...' INTO TABLE t
        "LOAD" => find_kw(&toks, i, "INTO")
            .and_then(|k| name_before_list(&toks, skip_words(&toks, k + 1, &["TABLE"]))),
        "CREATE" | "DROP" | "ALTER" => {
            let j = skip_words(
                &toks,
                i,
                &[
                    "OR",
                    "REPLACE",
                    "TEMPORARY",
                    "TEMP",
                    "UNLOGGED",
                    "GLOBAL",
                    "LOCAL",
                ],
            );
            if toks.get(j).is_some_and(|t| is_kw(t, "TABLE")) {
                name_before_list(
                    &toks,
                    skip_words(&toks, j + 1, &["IF", "NOT", "EXISTS", "ONLY"]),
                )
            } else if toks
                .get(j)
                .is_some_and(|t| is_kw(t, "INDEX") || is_kw(t, "UNIQUE"))
                && op == "CREATE"
            {
                find_kw(&toks, j, "ON")
                    .and_then(|k| name_before_list(&toks, skip_words(&toks, k + 1, &["ONLY"])))
            } else {
                None
            }
        }
        _ => None,
    };
    SqlSummary {
        operation: Some(op),
        table,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(sql: &str) -> (Option<&'static str>, Option<String>) {
        let s = summarize(sql);
        (
            s.operation.map(|o| &*Box::leak(o.into_boxed_str())),
            s.table,
        )
    }

    #[test]
    fn sanitizes_strings_and_numbers() {
        assert_eq!(
            sanitize("SELECT * FROM t1 WHERE a = 'x''y' AND b = 42 AND c = -3.5e10"),
            "SELECT * FROM t1 WHERE a = ? AND b = ? AND c = -?"
        );
        assert_eq!(sanitize(r"SELECT 'it\'s', E'a\'b'"), "SELECT ?, ?");
        assert_eq!(sanitize("SELECT $$a'b$$, $fn$ x $$ y $fn$"), "SELECT ?, ?");
        assert_eq!(
            sanitize("SELECT x'0F', 0xFF, b'101', 0b11, X'AB'"),
            "SELECT ?, ?, ?, ?, ?"
        );
        assert_eq!(
            sanitize("SELECT col_2, t1.c3 FROM t1"),
            "SELECT col_2, t1.c3 FROM t1"
        );
        assert_eq!(sanitize("WHERE id IN (1, 2, 3)"), "WHERE id IN (?, ?, ?)");
        assert_eq!(
            sanitize("WHERE a = $1 AND b = ? AND c = :name AND d::int4 = .5"),
            "WHERE a = $1 AND b = ? AND c = :name AND d::int4 = ?"
        );
        assert_eq!(
            sanitize(r#"SELECT "a1", `b2` FROM "t 3""#),
            r#"SELECT "a1", `b2` FROM "t 3""#
        );
        assert_eq!(
            sanitize("/* traceparent='00-abc-01' */ SELECT 1 -- id 7\n"),
            "/* traceparent='00-abc-01' */ SELECT ? -- id 7\n"
        );
        assert_eq!(
            sanitize("SELECT N'x', U&'d\\0061t', _utf8mb4'y'"),
            "SELECT ?, ?, _utf8mb4?"
        );
    }

    #[test]
    fn sanitize_unterminated_runs_to_end() {
        assert_eq!(sanitize("SELECT 'abc"), "SELECT ?");
        assert_eq!(sanitize("SELECT $x$ abc"), "SELECT ?");
        assert_eq!(sanitize("SELECT 'a\\"), "SELECT ?");
        assert_eq!(sanitize("SELECT /* open"), "SELECT /* open");
        assert_eq!(sanitize("SELECT $"), "SELECT $");
        assert_eq!(sanitize(""), "");
    }

    #[test]
    fn sanitize_keeps_truncation_marker() {
        let s = format!("INSERT INTO t VALUES ('abc{TRUNCATED_MARKER}");
        assert_eq!(
            sanitize(&s),
            format!("INSERT INTO t VALUES (?{TRUNCATED_MARKER}")
        );
    }

    #[test]
    fn sanitize_multibyte() {
        assert_eq!(
            sanitize("SELECT 'é', ünï FROM t WHERE x='日本'"),
            "SELECT ?, ünï FROM t WHERE x=?"
        );
    }

    #[test]
    fn summarizes_common_statements() {
        assert_eq!(
            sum("SELECT a FROM users WHERE id = 1"),
            (Some("SELECT"), Some("users".into()))
        );
        assert_eq!(
            sum("/* c */ -- x\n select * from public.\"Users\" u join b on 1"),
            (Some("SELECT"), Some("public.Users".into()))
        );
        assert_eq!(
            sum("insert into `db`.`t` (a) values (1)"),
            (Some("INSERT"), Some("db.t".into()))
        );
        assert_eq!(
            sum("INSERT IGNORE INTO t VALUES (1)"),
            (Some("INSERT"), Some("t".into()))
        );
        assert_eq!(
            sum("UPDATE ONLY t SET a = 1"),
            (Some("UPDATE"), Some("t".into()))
        );
        assert_eq!(
            sum("DELETE FROM t WHERE a"),
            (Some("DELETE"), Some("t".into()))
        );
        assert_eq!(
            sum("WITH x AS (SELECT * FROM a) SELECT * FROM x"),
            (Some("SELECT"), Some("x".into()))
        );
        assert_eq!(
            sum("WITH RECURSIVE x(n) AS (SELECT 1 UNION SELECT n+1 FROM x) DELETE FROM t"),
            (Some("DELETE"), Some("t".into()))
        );
        assert_eq!(sum("SELECT * FROM (SELECT 1) s"), (Some("SELECT"), None));
        assert_eq!(
            sum("SELECT * FROM generate_series(1, 3)"),
            (Some("SELECT"), None)
        );
        assert_eq!(sum("SELECT 1"), (Some("SELECT"), None));
        assert_eq!(
            sum("CREATE TABLE IF NOT EXISTS s.t (a int)"),
            (Some("CREATE"), Some("s.t".into()))
        );
        assert_eq!(
            sum("DROP TABLE IF EXISTS t"),
            (Some("DROP"), Some("t".into()))
        );
        assert_eq!(
            sum("CREATE UNIQUE INDEX i ON t (a)"),
            (Some("CREATE"), Some("t".into()))
        );
        assert_eq!(sum("TABLE t"), (Some("TABLE"), Some("t".into())));
        assert_eq!(
            sum("COPY t (a) FROM STDIN"),
            (Some("COPY"), Some("t".into()))
        );
        assert_eq!(
            sum("TRUNCATE TABLE t"),
            (Some("TRUNCATE"), Some("t".into()))
        );
        assert_eq!(sum("begin"), (Some("BEGIN"), None));
        assert_eq!(
            sum("SELECT a FROM t; DELETE FROM u"),
            (Some("SELECT"), Some("t".into()))
        );
        assert_eq!(sum(""), (None, None));
        assert_eq!(sum("  /* only a comment */ "), (None, None));
        assert_eq!(sum("(SELECT 1)"), (Some("SELECT"), None));
        assert_eq!(sum("WITH broken"), (Some("WITH"), None));
    }
}
