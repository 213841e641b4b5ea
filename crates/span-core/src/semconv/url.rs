//! URLs as spans report them: a request target split into path and query,
//! with credentials taken out before any attribute, name or view is made.
//!
//! **Invariant:** no value of a sensitive query parameter
//! ([`DEFAULT_REDACTED_QUERY_PARAMS`] and the user's additions, matched
//! case-insensitively on the percent-decoded key) and no userinfo
//! (`user:pass@`) leaves this module: `url.query`, `url.full`, `url.path`,
//! span names, `server.address` and the typed view are all made from what
//! it returns. Keys stay, values become `REDACTED` (OpenTelemetry semantic
//! conventions, "URL": `q=OpenTelemetry&sig=REDACTED`,
//! `https://REDACTED:REDACTED@www.example.com/`). With
//! [`QueryRedaction::keep`] query values are kept as sent; userinfo is
//! redacted regardless (the conventions say it MUST NOT be recorded).

use std::borrow::Cow;

/// What replaces a redacted value.
pub const REDACTED: &str = "REDACTED";

/// Query parameters whose values are redacted by default: the
/// OpenTelemetry semantic conventions' list (`AWSAccessKeyId`, `Signature`,
/// `sig`, `X-Goog-Signature`), AWS Signature V4's equivalents, and the
/// names applications commonly give credentials. Matched case-insensitively.
pub const DEFAULT_REDACTED_QUERY_PARAMS: &[&str] = &[
    // OpenTelemetry semantic conventions (url.query, url.full).
    "AWSAccessKeyId",
    "Signature",
    "sig",
    "X-Goog-Signature",
    // AWS Signature V4 presigned URLs (what the conventions' AWS entries
    // became).
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    // Credentials by their usual names.
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "key",
    "auth",
    "code",
    "session",
    "jwt",
];

/// Which query values are redacted (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryRedaction {
    /// Keep every query value as sent (`--keep-query`).
    pub keep: bool,
    /// Names redacted besides [`DEFAULT_REDACTED_QUERY_PARAMS`]
    /// (`--redact-query-param`), matched case-insensitively.
    pub extra: Vec<String>,
}

impl QueryRedaction {
    /// Whether the value of parameter `key` (as sent: percent-encoded) is
    /// redacted.
    pub fn is_sensitive(&self, key: &str) -> bool {
        if self.keep {
            return false;
        }
        let decoded = percent_decode(key);
        let k = decoded.as_ref();
        DEFAULT_REDACTED_QUERY_PARAMS
            .iter()
            .copied()
            .chain(self.extra.iter().map(String::as_str))
            .any(|name| name.len() == k.len() && name.eq_ignore_ascii_case(k))
    }

    /// `query` (the part after `?`) with the value of every sensitive
    /// parameter replaced by [`REDACTED`], keys and everything else as
    /// sent. Parameters are separated by `&` or `;` (both are in use);
    /// a redacted value runs to the next `&`, so a `;` inside it cannot
    /// leave part of it behind. Borrowed when nothing was redacted.
    pub fn redact<'a>(&self, query: &'a str) -> Cow<'a, str> {
        if self.keep || query.is_empty() {
            return Cow::Borrowed(query);
        }
        let b = query.as_bytes();
        let mut out: Option<String> = None;
        // Bytes of `query` already accounted for in `out`.
        let mut copied = 0;
        let mut i = 0;
        while i < b.len() {
            let key_end = b[i..]
                .iter()
                .position(|c| matches!(c, b'=' | b'&' | b';'))
                .map_or(b.len(), |p| i + p);
            if key_end < b.len() && b[key_end] == b'=' {
                let value_start = key_end + 1;
                if self.is_sensitive(&query[i..key_end]) {
                    let value_end = b[value_start..]
                        .iter()
                        .position(|c| *c == b'&')
                        .map_or(b.len(), |p| value_start + p);
                    let o = out.get_or_insert_with(|| String::with_capacity(query.len()));
                    o.push_str(&query[copied..value_start]);
                    o.push_str(REDACTED);
                    copied = value_end;
                    i = value_end + 1;
                    continue;
                }
                // Not sensitive: skip the value (to the next separator).
                i = b[value_start..]
                    .iter()
                    .position(|c| matches!(c, b'&' | b';'))
                    .map_or(b.len(), |p| value_start + p)
                    + 1;
            } else {
                // A key without a value.
                i = key_end + 1;
            }
        }
        match out {
            None => Cow::Borrowed(query),
            Some(mut o) => {
                o.push_str(&query[copied.min(query.len())..]);
                Cow::Owned(o)
            }
        }
    }
}

/// `%XX` escapes decoded (and `+` read as a space), for matching key
/// names only; invalid escapes are kept as they are.
fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|c| c == b'%' || c == b'+') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// An authority (`[userinfo@]host[:port]`) without its userinfo, and
/// whether it had one (and with a password: `user:pass@`).
pub fn strip_userinfo(authority: &str) -> (&str, Option<Userinfo>) {
    match authority.rsplit_once('@') {
        Some((info, host)) => (
            host,
            Some(if info.contains(':') {
                Userinfo::UserAndPassword
            } else {
                Userinfo::User
            }),
        ),
        None => (authority, None),
    }
}

/// Userinfo that was in a URL (never its text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Userinfo {
    User,
    UserAndPassword,
}

impl Userinfo {
    /// What stands in for it in `url.full`.
    pub fn redacted(self) -> &'static str {
        match self {
            Userinfo::User => "REDACTED@",
            Userinfo::UserAndPassword => "REDACTED:REDACTED@",
        }
    }
}

/// A request target taken apart, credentials redacted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// `scheme://authority` of an absolute-form target (a request to a
    /// proxy), userinfo removed.
    pub absolute: Option<Absolute<'a>>,
    /// The path (`/` for an absolute-form target with none).
    pub path: &'a str,
    /// The query, sensitive values redacted.
    pub query: Option<Cow<'a, str>>,
}

/// The scheme and authority of an absolute-form target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Absolute<'a> {
    pub scheme: &'a str,
    /// `host[:port]`, without userinfo.
    pub authority: &'a str,
    pub userinfo: Option<Userinfo>,
}

impl Target<'_> {
    /// Path and (redacted) query, as `url.full` ends.
    pub fn path_and_query(&self) -> Cow<'_, str> {
        match &self.query {
            None => Cow::Borrowed(self.path),
            Some(_) => Cow::Owned(self.path_and_query_parts().concat()),
        }
    }

    /// The same in parts: path, `?` (or nothing), query (or nothing).
    pub fn path_and_query_parts(&self) -> [&str; 3] {
        match &self.query {
            None => [self.path, "", ""],
            Some(q) => [self.path, "?", q],
        }
    }
}

/// Split `target` (origin-form `/p?q`, absolute-form `http://h/p?q`,
/// authority-form `h:443`, or `*`) into its parts; a fragment, which
/// clients do not send, is dropped if present.
pub fn split_target<'a>(target: &'a str, redaction: &QueryRedaction) -> Target<'a> {
    let target = target.split_once('#').map_or(target, |(t, _)| t);
    let (absolute, rest) = match absolute_form(target) {
        Some((scheme, after)) => {
            let end = after.find(['/', '?']).unwrap_or(after.len());
            let (authority, userinfo) = strip_userinfo(&after[..end]);
            (
                Some(Absolute {
                    scheme,
                    authority,
                    userinfo,
                }),
                &after[end..],
            )
        }
        None => (None, target),
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(redaction.redact(q))),
        None => (rest, None),
    };
    let path = if path.is_empty() && absolute.is_some() {
        "/"
    } else {
        path
    };
    Target {
        absolute,
        path,
        query,
    }
}

/// `(scheme, rest after "://")` when `target` is absolute-form.
fn absolute_form(target: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = target.split_once("://")?;
    let mut chars = scheme.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    ok.then_some((scheme, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> QueryRedaction {
        QueryRedaction::default()
    }

    #[test]
    fn sensitive_values_are_redacted_keys_kept() {
        let q = "rid=7&password=SECRET789&token=SECRET000&x=1";
        assert_eq!(r().redact(q), "rid=7&password=REDACTED&token=REDACTED&x=1");
        // Every default name, any case.
        for name in DEFAULT_REDACTED_QUERY_PARAMS {
            for n in [
                name.to_string(),
                name.to_ascii_uppercase(),
                name.to_ascii_lowercase(),
            ] {
                let q = format!("a=1&{n}=S3CRET&b=2");
                let got = r().redact(&q);
                assert_eq!(got, format!("a=1&{n}=REDACTED&b=2"), "{q}");
            }
        }
        // Semantic conventions' example.
        assert_eq!(
            r().redact("q=OpenTelemetry&sig=abc"),
            "q=OpenTelemetry&sig=REDACTED"
        );
    }

    #[test]
    fn nothing_to_redact_borrows() {
        for q in ["", "a=1", "a=1&b", "tokens=x", "mytoken=x", "a=token", "=x"] {
            assert!(matches!(r().redact(q), Cow::Borrowed(_)), "{q}");
        }
    }

    #[test]
    fn separators_encodings_and_edge_cases() {
        // `;` separates too, but a redacted value runs to the next `&`.
        assert_eq!(r().redact("a=1;token=S;x&b=2"), "a=1;token=REDACTED&b=2");
        // Percent-encoded key names match.
        assert_eq!(
            r().redact("pass%77ord=S&pass%2=x"),
            "pass%77ord=REDACTED&pass%2=x"
        );
        assert_eq!(r().redact("api%5Fkey=S"), "api%5Fkey=REDACTED");
        // Empty values, repeated keys, keys at the end.
        assert_eq!(
            r().redact("token=&token=S"),
            "token=REDACTED&token=REDACTED"
        );
        assert_eq!(r().redact("a=1&key"), "a=1&key");
        assert_eq!(r().redact("key=S"), "key=REDACTED");
        assert_eq!(r().redact("&&key=S&&"), "&&key=REDACTED&&");
        assert_eq!(r().redact("key=a=b&c=d"), "key=REDACTED&c=d");
        // A trailing lone `%` or a multi-byte key never panics.
        assert_eq!(r().redact("%=1&é=2&%4=3"), "%=1&é=2&%4=3");
    }

    #[test]
    fn extra_names_and_keep() {
        let extra = QueryRedaction {
            keep: false,
            extra: vec!["Sessionid".into()],
        };
        assert_eq!(
            extra.redact("SESSIONID=S&token=T&u=1"),
            "SESSIONID=REDACTED&token=REDACTED&u=1"
        );
        let keep = QueryRedaction {
            keep: true,
            extra: vec!["u".into()],
        };
        assert_eq!(keep.redact("token=T&u=1"), "token=T&u=1");
    }

    #[test]
    fn targets() {
        let t = split_target("/users/7?rid=1&password=P", &r());
        assert_eq!(t.absolute, None);
        assert_eq!(t.path, "/users/7");
        assert_eq!(t.query.as_deref(), Some("rid=1&password=REDACTED"));
        assert_eq!(t.path_and_query(), "/users/7?rid=1&password=REDACTED");

        let t = split_target("http://bob:hunter2@example.com:8080/a/b?sig=X#frag", &r());
        assert_eq!(
            t.absolute,
            Some(Absolute {
                scheme: "http",
                authority: "example.com:8080",
                userinfo: Some(Userinfo::UserAndPassword),
            })
        );
        assert_eq!(t.path, "/a/b");
        assert_eq!(t.query.as_deref(), Some("sig=REDACTED"));

        let t = split_target("https://bob@example.com?x=1", &r());
        assert_eq!(t.path, "/");
        assert_eq!(t.absolute.unwrap().userinfo, Some(Userinfo::User));

        // Authority-form (CONNECT), asterisk, a path with "://" later on.
        assert_eq!(
            split_target("example.com:443", &r()).path,
            "example.com:443"
        );
        assert_eq!(split_target("*", &r()).path, "*");
        let t = split_target("/redirect?to=http://u:p@h/", &r());
        assert_eq!(t.absolute, None);
        assert_eq!(t.path, "/redirect");

        assert_eq!(
            strip_userinfo("u:p@host:1"),
            ("host:1", Some(Userinfo::UserAndPassword))
        );
        assert_eq!(strip_userinfo("host"), ("host", None));
    }
}
