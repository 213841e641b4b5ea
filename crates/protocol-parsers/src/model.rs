//! What parsers report about messages, independent of the wire format.

use serde::{Deserialize, Serialize};

/// Protocol-independent description of one message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MessageInfo {
    HttpRequest(HttpRequest),
    HttpResponse(HttpResponse),
    DbRequest(DbRequest),
    DbResponse(DbResponse),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpVersion {
    Http10,
    Http11,
    Http2,
}

impl HttpVersion {
    /// `network.protocol.version` value.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpVersion::Http10 => "1.0",
            HttpVersion::Http11 => "1.1",
            HttpVersion::Http2 => "2",
        }
    }
}

/// A kept header's name: `&'static` from [`KEPT_HEADERS`] when parsed.
pub type HeaderName = std::borrow::Cow<'static, str>;

/// An HTTP request head (HTTP/1.x or HTTP/2, gRPC included).
///
/// Only headers needed for tracing are kept (see [`KEPT_HEADERS`]);
/// credentials (`authorization`, `cookie`, ...) are never stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct HttpRequest {
    /// `None` when it could not be decoded (HTTP/2 joined mid-connection).
    pub method: Option<String>,
    /// Path and query as sent (`/users/7?x=1`), `None` if not decodable.
    pub target: Option<String>,
    pub version: Option<HttpVersion>,
    /// `Host` / `:authority`.
    pub authority: Option<String>,
    /// `:scheme` for HTTP/2.
    pub scheme: Option<String>,
    /// Kept headers, names lower-case (one of [`KEPT_HEADERS`]: borrowed,
    /// never allocated, when parsed). HTTP/1 keeps `host` only in
    /// `authority` and `content-length` only in `content_length`.
    pub headers: Vec<(HeaderName, String)>,
    /// Body length when declared (`Content-Length`).
    pub content_length: Option<u64>,
    /// gRPC call (content-type `application/grpc*`).
    pub grpc: bool,
    /// Number of gRPC messages seen in the request body (at `End`).
    pub grpc_messages: Option<u64>,
    /// Names of fields that could not be decoded (e.g. `:path` indexed into an
    /// HPACK dynamic table we never saw). Empty when everything decoded.
    pub undecoded: Vec<String>,
    /// Parts of the request that were received but are not valid HTTP (one
    /// of [`INVALID_METHOD`], [`INVALID_TARGET`], [`INVALID_VERSION`],
    /// [`INVALID_HEADER`], in that order). An invalid `method` or `target`
    /// holds the bytes as received, escaped with [`escape_invalid`]. Servers
    /// usually answer such a request with `400`; it is still a message.
    /// Empty for a valid request.
    pub invalid: Vec<String>,
}

/// [`HttpRequest::invalid`]: the method is not a token.
pub const INVALID_METHOD: &str = "method";
/// [`HttpRequest::invalid`]: the request target has bytes a URI cannot
/// hold (controls, space, DEL) or is not UTF-8.
pub const INVALID_TARGET: &str = "target";
/// [`HttpRequest::invalid`]: the version is not `HTTP/1.0` or `HTTP/1.1`.
pub const INVALID_VERSION: &str = "version";
/// [`HttpRequest::invalid`]: a header line is malformed (its name is not a
/// token, its value has control bytes, or it is not `name: value`).
pub const INVALID_HEADER: &str = "header";

/// Whether `b` is an HTTP token (RFC 9110 `tchar`), as a method must be.
pub fn is_token(b: &[u8]) -> bool {
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(c))
}

/// Whether `b` can be a request target as received: visible ASCII or
/// UTF-8 text, no controls, space or DEL (what `httparse` accepts).
pub fn is_valid_target(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(|c| *c > b' ' && *c != 0x7f) && std::str::from_utf8(b).is_ok()
}

/// Text for bytes that are not valid where they were received: UTF-8
/// text is kept, except control characters: ASCII ones and DEL become
/// `\xNN` like every byte that is not part of valid UTF-8, the C1 ones
/// `\u{NN}`; a backslash becomes
/// `\\`, so the escaped text reads back unambiguously.
pub fn escape_invalid(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(b.len() + 8);
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_ascii_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

impl HttpRequest {
    /// Value of a kept header (`name` lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP response head (and, at `End`, trailers such as `grpc-status`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct HttpResponse {
    /// `None` when `:status` could not be decoded.
    pub status: Option<u16>,
    pub version: Option<HttpVersion>,
    /// Kept headers (HTTP/2; and `:rst-stream`, see the HTTP/2 parser).
    /// An HTTP/1 response keeps none: nothing reads them, and its length
    /// is `content_length`.
    pub headers: Vec<(HeaderName, String)>,
    pub content_length: Option<u64>,
    pub grpc_status: Option<u32>,
    pub grpc_message: Option<String>,
    pub grpc_messages: Option<u64>,
    pub undecoded: Vec<String>,
}

/// Headers worth keeping for tracing. Everything else is dropped at parse
/// time, so credentials never leave the parser.
pub const KEPT_HEADERS: &[&str] = &[
    "traceparent",
    "tracestate",
    "host",
    "user-agent",
    "content-type",
    "content-length",
    "grpc-status",
    "grpc-message",
    "grpc-encoding",
    "te",
    "x-request-id",
    "x-forwarded-for",
];

/// Whether a header (name already lower-case) is kept.
pub fn is_kept_header(name: &str) -> bool {
    KEPT_HEADERS.contains(&name)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DbSystem {
    Mysql,
    Postgresql,
    Redis,
}

impl DbSystem {
    /// `db.system` value (OTel semantic conventions).
    pub fn as_str(self) -> &'static str {
        match self {
            DbSystem::Mysql => "mysql",
            DbSystem::Postgresql => "postgresql",
            DbSystem::Redis => "redis",
        }
    }
}

/// A database / cache command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DbRequest {
    pub system: DbSystem,
    /// `db.operation.name`: `SELECT`, `INSERT`, `COM_PING`, `GET`, ...
    pub operation: Option<String>,
    /// Raw statement text as sent (SQL). Redis: `None` (values are never kept).
    /// The consumer sanitises it before it leaves the process unless the user
    /// opted in to raw text.
    pub query: Option<String>,
    /// Table (SQL, best effort) or first key (Redis): `db.collection.name`.
    pub target: Option<String>,
    /// Database name (`db.namespace`) when the protocol says it.
    pub namespace: Option<String>,
    /// Prepared statement handle, when the command refers to one.
    pub statement: Option<String>,
}

/// Outcome of a database / cache command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct DbResponse {
    pub error: Option<DbError>,
    /// Rows returned or affected, when known.
    pub rows: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DbError {
    /// MySQL error number / PostgreSQL SQLSTATE / Redis error prefix (`ERR`, `WRONGTYPE`).
    pub code: Option<String>,
    pub message: String,
}
