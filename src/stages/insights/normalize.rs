//! Statement normalisation: one text per query shape, so that the same
//! statement run with other values (or a request id in a comment) groups
//! with itself.

/// Longest normalised text kept (longer texts are cut on a character
/// boundary and end in `…`), which also bounds the memory of every table
/// keyed by a statement.
pub const MAX_STATEMENT: usize = 240;

/// A SQL statement's shape: comments dropped, string and number literals
/// replaced with `?` (also when the assembler kept them, `--raw-sql`),
/// `IN (?, ?, ...)` lists collapsed to `IN (?)`, runs of white space made
/// one space, keywords kept as written, a trailing `;` dropped.
pub fn sql(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len().min(MAX_STATEMENT + 4));
    let mut i = 0;
    let mut space = false;
    let push_space = |out: &mut String, space: &mut bool| {
        if *space && !out.is_empty() {
            out.push(' ');
        }
        *space = false;
    };
    while i < b.len() {
        let c = b[i];
        // Comments.
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i = match find(b, i + 2, b"*/") {
                Some(e) => e + 2,
                None => b.len(),
            };
            space = true;
            continue;
        }
        if (c == b'-' && b.get(i + 1) == Some(&b'-')) || c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            space = true;
            continue;
        }
        if c.is_ascii_whitespace() {
            space = true;
            i += 1;
            continue;
        }
        // String literals ('...' with '' or \' escapes), and E'..' / N'..'.
        if c == b'\'' {
            i = skip_quoted(b, i, b'\'');
            push_space(&mut out, &mut space);
            out.push('?');
            continue;
        }
        // Quoted identifiers stay.
        if c == b'"' || c == b'`' {
            let end = skip_quoted(b, i, c);
            push_space(&mut out, &mut space);
            out.push_str(text.get(i..end).unwrap_or(""));
            i = end;
            continue;
        }
        // Numbers not part of an identifier ($1 placeholders stay).
        if c.is_ascii_digit() && !prev_is_word(&out, space) {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            push_space(&mut out, &mut space);
            out.push('?');
            continue;
        }
        push_space(&mut out, &mut space);
        // Copy one UTF-8 character.
        let len = utf8_len(c);
        out.push_str(text.get(i..i + len).unwrap_or("?"));
        i += len;
    }
    while out.ends_with(';') || out.ends_with(' ') {
        out.pop();
    }
    cap(collapse_in_lists(out))
}

/// A Redis command's shape: the command, and its key with every run of
/// digits (and long hexadecimal parts) replaced with `?`: `GET user:42`
/// and `GET user:43` are one shape.
pub fn redis(text: &str) -> String {
    let mut parts = text.splitn(2, ' ');
    let cmd = parts.next().unwrap_or("").to_ascii_uppercase();
    let Some(key) = parts.next() else {
        return cap(cmd);
    };
    let mut out = cmd;
    out.push(' ');
    let mut digits = false;
    for part in split_keep(key) {
        if is_id_like(part) {
            out.push('?');
            continue;
        }
        for ch in part.chars() {
            if ch.is_ascii_digit() {
                if !digits {
                    out.push('?');
                }
                digits = true;
            } else {
                digits = false;
                out.push(ch);
            }
        }
        digits = false;
    }
    cap(out)
}

/// Splits a key into parts and separators (`:`, `.`, `/`, `-`, `_`), each
/// kept.
fn split_keep(key: &str) -> impl Iterator<Item = &str> {
    let mut rest = key;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let is_sep = |c: char| matches!(c, ':' | '.' | '/' | '-' | '_' | '{' | '}');
        let first = rest.chars().next()?;
        let end = if is_sep(first) {
            first.len_utf8()
        } else {
            rest.find(is_sep).unwrap_or(rest.len())
        };
        let (a, b) = rest.split_at(end);
        rest = b;
        Some(a)
    })
}

/// A part that is an id: 8+ hexadecimal characters with a digit in them
/// (hashes, uuid pieces), or a test request id (letters then 3+ digits).
fn is_id_like(part: &str) -> bool {
    let hex = part.len() >= 8
        && part.bytes().all(|b| b.is_ascii_hexdigit())
        && part.bytes().any(|b| b.is_ascii_digit());
    let letters = part.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
    let tail = &part.as_bytes()[letters..];
    let rid = letters > 0 && tail.len() >= 3 && tail.iter().all(|b| b.is_ascii_digit());
    hex || rid
}

fn find(b: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(pat.len())
        .position(|w| w == pat)
        .map(|p| p + from)
}

/// Index past the quoted run starting at `i` (quote `q`), doubled quotes
/// and backslash escapes inside; the end of input if unterminated.
fn skip_quoted(b: &[u8], mut i: usize, q: u8) -> usize {
    i += 1;
    while i < b.len() {
        if b[i] == b'\\' && q == b'\'' {
            i += 2;
            continue;
        }
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

fn prev_is_word(out: &str, space: bool) -> bool {
    !space
        && out
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$')
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// `(?, ?, ?)` and `(?,?)` become `(?)`.
fn collapse_in_lists(s: String) -> String {
    if !s.contains("?,") && !s.contains("? ,") {
        return s;
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(p) = rest.find('(') {
        out.push_str(&rest[..=p]);
        rest = &rest[p + 1..];
        let list_end = rest.find(')');
        if let Some(e) = list_end {
            let inner = &rest[..e];
            let only_marks = inner.split(',').all(|x| x.trim() == "?");
            if only_marks && inner.contains(',') {
                out.push('?');
                rest = &rest[e..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn cap(mut s: String) -> String {
    if s.len() > MAX_STATEMENT {
        let mut end = MAX_STATEMENT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_shapes() {
        assert_eq!(
            sql("SELECT /* rid=r00042 */ name FROM profiles WHERE id = 42"),
            "SELECT name FROM profiles WHERE id = ?"
        );
        assert_eq!(
            sql("SELECT /* rid=r00043 */ name FROM profiles WHERE id = ?"),
            "SELECT name FROM profiles WHERE id = ?"
        );
        assert_eq!(
            sql("select  *\n from t where a = 'it''s' and b in (1, 2,3) -- x\n;"),
            "select * from t where a = ? and b in (?)"
        );
        assert_eq!(
            sql("SELECT t1.c2 FROM t1 WHERE x = $1"),
            "SELECT t1.c2 FROM t1 WHERE x = $1"
        );
        assert_eq!(
            sql("SELECT \"Col 1\" FROM `t`"),
            "SELECT \"Col 1\" FROM `t`"
        );
        assert_eq!(
            sql("INSERT INTO t VALUES (1.5e3, 'x')"),
            "INSERT INTO t VALUES (?)"
        );
        // Unterminated and odd input never panics.
        for s in ["'", "/*", "--", "\"", "é'", "(", "?,(", "\u{1F600}1"] {
            let _ = sql(s);
        }
        let long = format!("SELECT {} FROM t", "a, ".repeat(200));
        assert!(sql(&long).chars().count() <= MAX_STATEMENT + 1);
    }

    #[test]
    fn different_statements_stay_apart() {
        assert_ne!(
            sql("SELECT name FROM items WHERE id = 1"),
            sql("SELECT name FROM orders WHERE id = 1")
        );
        assert_ne!(sql("SELECT a FROM t"), sql("SELECT b FROM t"));
    }

    #[test]
    fn redis_shapes() {
        assert_eq!(redis("GET user:42"), "GET user:?");
        assert_eq!(redis("get user:43"), "GET user:?");
        assert_eq!(redis("GET zt:r00042:k"), "GET zt:?:k");
        assert_eq!(redis("HGET session:9f8e7d6c5b4a"), "HGET session:?");
        assert_eq!(redis("PING"), "PING");
        assert_ne!(redis("GET a"), redis("GET b"));
    }
}
