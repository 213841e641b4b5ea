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
    /// never allocated, when parsed).
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
