//! Span names and OpenTelemetry semantic-convention attributes from what the
//! parsers reported.

use crate::event::SockTuple;
use crate::naming::route_template;
use crate::span::{Attributes, SpanKind, Status, StatusCode};
use protocol_parsers::{
    sql, DbRequest, DbResponse, HttpRequest, HttpResponse, MessageInfo, Protocol,
};
use std::borrow::Cow;

/// What a finished exchange looked like, input to naming.
pub(crate) struct ExchangeView<'a> {
    pub kind: SpanKind,
    pub protocol: Protocol,
    pub tuple: SockTuple,
    pub tls: bool,
    pub request: Option<&'a MessageInfo>,
    pub response: Option<&'a MessageInfo>,
    pub raw_sql: bool,
}

/// gRPC codes that make a *server* span an error (OTel rpc conventions).
const GRPC_SERVER_ERRORS: &[u32] = &[2, 4, 12, 13, 14, 15];

const GRPC_CODE_NAMES: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Name, attributes and status of a span.
pub(crate) fn describe(v: &ExchangeView<'_>) -> (String, Attributes, Status) {
    let mut attrs = Attributes(Vec::with_capacity(28));
    let (name, status) = match (v.request, v.response) {
        (Some(MessageInfo::HttpRequest(req)), resp) => {
            let resp = match resp {
                Some(MessageInfo::HttpResponse(r)) => Some(r),
                _ => None,
            };
            if req.grpc || resp.is_some_and(|r| r.grpc_status.is_some()) {
                grpc(v, req, resp, &mut attrs)
            } else {
                http(v, req, resp, &mut attrs)
            }
        }
        (Some(MessageInfo::DbRequest(req)), resp) => {
            let resp = match resp {
                Some(MessageInfo::DbResponse(r)) => Some(r),
                _ => None,
            };
            db(v, req, resp, &mut attrs)
        }
        _ => (v.protocol.as_str().to_owned(), Status::UNSET),
    };
    peer_attrs(v, &mut attrs);
    (name, attrs, status)
}

fn peer_attrs(v: &ExchangeView<'_>, attrs: &mut Attributes) {
    let remote = v.tuple.remote;
    attrs.set("network.transport", "tcp");
    attrs.set(
        "network.type",
        if remote.is_ipv4() { "ipv4" } else { "ipv6" },
    );
    let peer = ip_text(remote.ip());
    match v.kind {
        SpanKind::Client => {
            if attrs.get("server.address").is_none() {
                attrs.set("server.address", peer.clone());
            }
            if attrs.get("server.port").is_none() {
                attrs.set("server.port", remote.port() as i64);
            }
        }
        SpanKind::Server => {
            attrs.set("client.address", peer.clone());
            attrs.set("client.port", remote.port() as i64);
            if attrs.get("server.port").is_none() {
                attrs.set("server.port", v.tuple.local.port() as i64);
            }
        }
    }
    attrs.set("network.peer.address", peer);
    attrs.set("network.peer.port", remote.port() as i64);
}

/// An address as text, like `IpAddr`'s `Display`, without the formatting
/// machinery for IPv4 (every span formats one or two addresses).
fn ip_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            for (i, b) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if b >= 100 {
                    out.push(char::from(b'0' + b / 100));
                }
                if b >= 10 {
                    out.push(char::from(b'0' + (b / 10) % 10));
                }
                out.push(char::from(b'0' + b % 10));
            }
            out
        }
        std::net::IpAddr::V6(_) => ip.to_string(),
    }
}

/// `host[:port]` of a Host/:authority value.
fn split_authority(a: &str) -> (String, Option<u16>) {
    if let Some(rest) = a.strip_prefix('[') {
        // [v6]:port
        if let Some((h, p)) = rest.split_once(']') {
            return (
                h.to_owned(),
                p.strip_prefix(':').and_then(|p| p.parse().ok()),
            );
        }
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_owned(), p.parse().ok()),
        _ => (a.to_owned(), None),
    }
}

fn set_path_and_query(target: &str, attrs: &mut Attributes) {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    attrs.set("url.path", path.to_owned());
    if let Some(q) = query {
        attrs.set("url.query", q.to_owned());
    }
}

fn http(
    v: &ExchangeView<'_>,
    req: &HttpRequest,
    resp: Option<&HttpResponse>,
    attrs: &mut Attributes,
) -> (String, Status) {
    let method = req.method.as_deref().map(|m| known_method(m, req));
    if let Some(m) = &method {
        match m {
            Some(m) => attrs.set("http.request.method", m.clone()),
            None => {
                attrs.set("http.request.method", "_OTHER");
                if let Some(original) = &req.method {
                    attrs.set("http.request.method_original", original.clone());
                }
            }
        }
    }
    // Span names use `HTTP` for a method that is not a known one.
    let method: Option<Cow<'static, str>> = method.map(|m| m.unwrap_or(Cow::Borrowed("HTTP")));
    let target_invalid = req
        .invalid
        .iter()
        .any(|w| w == protocol_parsers::INVALID_TARGET);
    if !req.invalid.is_empty() {
        attrs.set("zt.http.invalid", req.invalid.join(","));
    }
    let scheme: Cow<'static, str> = match req.scheme.as_deref() {
        Some("https") => "https".into(),
        Some("http") => "http".into(),
        Some(other) => other.to_owned().into(),
        None if v.tls => "https".into(),
        None => "http".into(),
    };
    attrs.set("url.scheme", scheme.clone());
    if let Some(ver) = req.version {
        attrs.set("network.protocol.name", "http");
        attrs.set("network.protocol.version", ver.as_str());
    }
    if let Some(ua) = req.header("user-agent") {
        attrs.set("user_agent.original", ua.to_owned());
    }
    request_id(req, attrs);
    let authority = req.authority.as_deref().map(split_authority);
    // An invalid target is reported as received (escaped) in `url.path`,
    // never as a route: it names no route and would be unbounded.
    let route = req
        .target
        .as_deref()
        .filter(|_| !target_invalid)
        .map(route_template);
    if let Some(t) = &req.target {
        set_path_and_query(t, attrs);
    }
    match v.kind {
        SpanKind::Server => {
            if let Some((h, p)) = &authority {
                attrs.set("server.address", h.clone());
                if let Some(p) = p {
                    attrs.set("server.port", *p as i64);
                }
            }
            if let Some(r) = &route {
                attrs.set("http.route", r.clone());
            }
        }
        SpanKind::Client => {
            let host = authority
                .as_ref()
                .map(|(h, _)| h.clone())
                .unwrap_or_else(|| ip_text(v.tuple.remote.ip()));
            let port = authority
                .as_ref()
                .and_then(|(_, p)| *p)
                .unwrap_or(v.tuple.remote.port());
            attrs.set("server.address", host.clone());
            attrs.set("server.port", port as i64);
            if let Some(t) = &req.target {
                let default_port = if scheme == "https" { 443 } else { 80 };
                let hostport = if port == default_port {
                    host
                } else if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                };
                attrs.set("url.full", format!("{scheme}://{hostport}{t}"));
            }
            if let Some(r) = &route {
                attrs.set("url.template", r.clone());
            }
        }
    }
    set_undecoded(req, resp, attrs);
    let mut status = Status::UNSET;
    if let Some(reset) = resp.and_then(stream_reset) {
        attrs.set("error.type", "stream_reset");
        status = Status::error(format!("stream reset: {reset}"));
    }
    if let Some(r) = resp {
        if let Some(code) = r.status {
            attrs.set("http.response.status_code", code as i64);
            let is_err = code >= 500 || (v.kind == SpanKind::Client && code >= 400);
            if is_err {
                attrs.set("error.type", code.to_string());
                status = Status {
                    code: StatusCode::Error,
                    message: None,
                };
            }
        }
    }
    let name = match (&method, &route) {
        (Some(m), Some(r)) => format!("{m} {r}"),
        (Some(m), None) => m.to_string(),
        (None, Some(r)) => format!("HTTP {r}"),
        (None, None) => "HTTP".to_owned(),
    };
    (name, status)
}

/// A method the HTTP semantic conventions know (RFC 9110 and `PATCH`),
/// without an allocation; `None` for any other (reported as `_OTHER`, with
/// the method as sent in `http.request.method_original`), an invalid one
/// (escaped by the parser) included.
fn known_method(m: &str, req: &HttpRequest) -> Option<Cow<'static, str>> {
    const KNOWN: &[&str] = &[
        "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    if req
        .invalid
        .iter()
        .any(|w| w == protocol_parsers::INVALID_METHOD)
    {
        return None;
    }
    KNOWN.iter().find(|k| **k == m).map(|k| Cow::Borrowed(*k))
}

/// Fields of the request or response that could not be decoded (HTTP/2
/// joined mid-connection): listed, never guessed.
fn set_undecoded(req: &HttpRequest, resp: Option<&HttpResponse>, attrs: &mut Attributes) {
    let mut all: Vec<&str> = req.undecoded.iter().map(String::as_str).collect();
    if let Some(r) = resp {
        all.extend(r.undecoded.iter().map(String::as_str));
    }
    all.sort_unstable();
    all.dedup();
    if !all.is_empty() {
        attrs.set("zt.undecoded", all.join(","));
    }
}

/// `x-request-id`, the de-facto correlation header, as
/// `http.request.header.x-request-id` (semantic conventions: header values).
fn request_id(req: &HttpRequest, attrs: &mut Attributes) {
    if let Some(v) = req.header("x-request-id") {
        attrs.set("http.request.header.x-request-id", v.to_owned());
    }
}

/// The HTTP/2 parser marks a stream ended by RST_STREAM with a
/// pseudo-header no peer can send.
fn stream_reset(r: &HttpResponse) -> Option<&str> {
    r.headers
        .iter()
        .find(|(k, _)| k == ":rst-stream")
        .map(|(_, v)| v.as_str())
}

fn grpc(
    v: &ExchangeView<'_>,
    req: &HttpRequest,
    resp: Option<&HttpResponse>,
    attrs: &mut Attributes,
) -> (String, Status) {
    attrs.set("rpc.system", "grpc");
    let path = req.target.clone();
    if let Some(p) = &path {
        let trimmed = p.trim_start_matches('/');
        if let Some((svc, method)) = trimmed.split_once('/') {
            attrs.set("rpc.service", svc.to_owned());
            attrs.set("rpc.method", method.to_owned());
        }
    }
    if let Some((h, p)) = req.authority.as_deref().map(split_authority) {
        if v.kind == SpanKind::Client || !h.is_empty() {
            attrs.set("server.address", h);
        }
        if let Some(p) = p {
            attrs.set("server.port", p as i64);
        }
    }
    attrs.set("network.protocol.name", "http");
    attrs.set("network.protocol.version", "2");
    request_id(req, attrs);
    if let Some(n) = req.grpc_messages {
        attrs.set("rpc.message.sent_count", n as i64);
    }
    set_undecoded(req, resp, attrs);
    let mut status = Status::UNSET;
    if let Some(r) = resp {
        if let Some(n) = r.grpc_messages {
            attrs.set("rpc.message.received_count", n as i64);
        }
        if let Some(reset) = stream_reset(r) {
            attrs.set("error.type", "stream_reset");
            status = Status::error(format!("stream reset: {reset}"));
        }
        match r.grpc_status {
            Some(code) => {
                attrs.set("rpc.grpc.status_code", code as i64);
                let is_err = match v.kind {
                    SpanKind::Client => code != 0,
                    SpanKind::Server => GRPC_SERVER_ERRORS.contains(&code),
                };
                if is_err {
                    let name = GRPC_CODE_NAMES
                        .get(code as usize)
                        .copied()
                        .unwrap_or("UNKNOWN_CODE");
                    attrs.set("error.type", name);
                    status = Status {
                        code: StatusCode::Error,
                        message: r.grpc_message.clone(),
                    };
                }
            }
            None => {
                if let Some(code) = r.status.filter(|c| *c != 200) {
                    attrs.set("http.response.status_code", code as i64);
                    status = Status::error(format!("HTTP status {code}"));
                }
            }
        }
    }
    let name = path.unwrap_or_else(|| "grpc".to_owned());
    (name, status)
}

fn db(
    v: &ExchangeView<'_>,
    req: &DbRequest,
    resp: Option<&DbResponse>,
    attrs: &mut Attributes,
) -> (String, Status) {
    attrs.set("db.system", req.system.as_str());
    attrs.set("db.system.name", req.system.as_str());
    let mut operation = req.operation.clone();
    let mut target = req.target.clone();
    if let Some(q) = &req.query {
        let summary = sql::summarize(q);
        if operation.is_none() {
            operation = summary.operation;
        }
        if target.is_none() {
            target = summary.table;
        }
        let text = if v.raw_sql {
            q.clone()
        } else {
            sql::sanitize(q)
        };
        attrs.set("db.query.text", text);
    }
    if let Some(op) = &operation {
        attrs.set("db.operation.name", op.clone());
    }
    if req.system == protocol_parsers::DbSystem::Redis {
        // Command and key, never values (OTel: the name is the command).
        if let Some(op) = &operation {
            let text = match &target {
                Some(k) => format!("{op} {k}"),
                None => op.clone(),
            };
            attrs.set("db.query.text", text);
        }
        target = None;
    } else if let Some(t) = &target {
        attrs.set("db.collection.name", t.clone());
    }
    if let Some(ns) = &req.namespace {
        attrs.set("db.namespace", ns.clone());
    }
    if let Some(st) = &req.statement {
        attrs.set("zt.db.statement_id", st.clone());
    }
    let mut status = Status::UNSET;
    if let Some(r) = resp {
        if let Some(rows) = r.rows {
            attrs.set("db.response.returned_rows", rows as i64);
        }
        if let Some(e) = &r.error {
            if let Some(code) = &e.code {
                attrs.set("db.response.status_code", code.clone());
                attrs.set("error.type", code.clone());
            } else {
                attrs.set("error.type", "db_error");
            }
            status = Status::error(e.message.clone());
        }
    }
    // `{operation} {target}`, else operation, else the system.
    let name = match (&operation, &target) {
        (Some(op), Some(t)) => format!("{op} {t}"),
        (Some(op), None) => op.clone(),
        _ => req.system.as_str().to_owned(),
    };
    (name, status)
}

#[cfg(test)]
mod tests {
    use super::ip_text;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[test]
    fn ip_text_matches_display() {
        for a in [0u8, 1, 9, 10, 99, 100, 127, 200, 255] {
            for b in [0u8, 7, 10, 255] {
                let ip = IpAddr::V4(Ipv4Addr::new(a, b, b.wrapping_mul(3), 1));
                assert_eq!(ip_text(ip), ip.to_string());
            }
        }
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(ip_text(v6), "::1");
    }

    /// `http` and its helpers: unknown and invalid methods are `_OTHER`
    /// with the original kept; an invalid target is a path, never a route.
    #[test]
    fn http_other_methods_and_invalid_requests() {
        use super::{describe, ExchangeView};
        use crate::event::SockTuple;
        use crate::span::{AttrValue, SpanKind};
        use protocol_parsers::{HttpRequest, HttpResponse, MessageInfo, Protocol};
        let addr = "127.0.0.1:80".parse().unwrap();
        let run = |method: &str, target: &str, invalid: &[&str]| {
            let req = MessageInfo::HttpRequest(HttpRequest {
                method: Some(method.into()),
                target: Some(target.into()),
                invalid: invalid.iter().map(|w| w.to_string()).collect(),
                ..HttpRequest::default()
            });
            let resp = MessageInfo::HttpResponse(HttpResponse {
                status: Some(400),
                ..HttpResponse::default()
            });
            let (name, attrs, _) = describe(&ExchangeView {
                kind: SpanKind::Server,
                protocol: Protocol::Http1,
                tuple: SockTuple {
                    local: addr,
                    remote: addr,
                },
                tls: false,
                request: Some(&req),
                response: Some(&resp),
                raw_sql: false,
            });
            let get = |k: &str| match attrs.get(k) {
                Some(AttrValue::Str(s)) => Some(s.to_string()),
                Some(other) => Some(format!("{other:?}")),
                None => None,
            };
            (
                name,
                get("http.request.method"),
                get("http.request.method_original"),
                get("url.path"),
                get("http.route"),
                get("zt.http.invalid"),
            )
        };
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            run("GET", "/u/7", &[]),
            (
                "GET /u/{id}".into(),
                s("GET"),
                None,
                s("/u/7"),
                s("/u/{id}"),
                None
            )
        );
        assert_eq!(
            run("PURGE", "/x", &[]),
            (
                "HTTP /x".into(),
                s("_OTHER"),
                s("PURGE"),
                s("/x"),
                s("/x"),
                None
            )
        );
        assert_eq!(
            run("G\\x01T", "/x", &["method"]),
            (
                "HTTP /x".into(),
                s("_OTHER"),
                s("G\\x01T"),
                s("/x"),
                s("/x"),
                s("method")
            )
        );
        assert_eq!(
            run("GET", "/a\\x01b", &["target"]),
            (
                "GET".into(),
                s("GET"),
                None,
                s("/a\\x01b"),
                None,
                s("target")
            )
        );
        assert_eq!(
            run("G\\x01T", "/\\xff", &["method", "target", "header"]),
            (
                "HTTP".into(),
                s("_OTHER"),
                s("G\\x01T"),
                s("/\\xff"),
                None,
                s("method,target,header")
            )
        );
    }
}
