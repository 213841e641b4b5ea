//! Span names, OpenTelemetry semantic-convention attributes and the typed
//! [`SpanView`] from what the parsers reported.
//!
//! **Invariant:** a span's name, attributes, status and view come from one
//! pass over its exchange, here, so the view always agrees with the
//! attributes; attribute names are spelled only in [`attr`].

pub mod attr;
pub mod url;

use crate::event::SockTuple;
use crate::naming::route_template;
use crate::span::{Attributes, SpanKind, Status, StatusCode};
use crate::view::{AppProtocol, Authority, Operation, Peer, SpanView};
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
    /// Which query values are redacted (userinfo always is).
    pub redaction: &'a url::QueryRedaction,
}

/// Attributes reserved per span: HTTP spans carry 18-22. At 20 (960
/// bytes) the vector stays below glibc's large-chunk size (1 KiB), whose
/// allocations consolidate the free lists: see BENCHMARKS.md.
const ATTRIBUTES_CAPACITY: usize = 20;

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

/// Name, attributes and status of a span; fills `view` (in place: it is
/// large). The view's link reason, incomplete reason, peer resource and
/// error flag are the caller's to set.
pub(crate) fn describe(v: &ExchangeView<'_>, view: &mut SpanView) -> (String, Attributes, Status) {
    let mut attrs = Attributes(Vec::with_capacity(ATTRIBUTES_CAPACITY));
    let (name, status) = match (v.request, v.response) {
        (Some(MessageInfo::HttpRequest(req)), resp) => {
            let resp = match resp {
                Some(MessageInfo::HttpResponse(r)) => Some(r),
                _ => None,
            };
            if req.grpc || resp.is_some_and(|r| r.grpc_status.is_some()) {
                grpc(v, req, resp, &mut attrs, view)
            } else {
                http(v, req, resp, &mut attrs, view)
            }
        }
        (Some(MessageInfo::DbRequest(req)), resp) => {
            let resp = match resp {
                Some(MessageInfo::DbResponse(r)) => Some(r),
                _ => None,
            };
            db(v, req, resp, &mut attrs, view)
        }
        _ => (v.protocol.as_str().to_owned(), Status::UNSET),
    };
    peer_attrs(v, &mut attrs, view);
    (name, attrs, status)
}

fn peer_attrs(v: &ExchangeView<'_>, attrs: &mut Attributes, view: &mut SpanView) {
    let remote = v.tuple.remote;
    view.local = Some(v.tuple.local);
    view.peer = Some(Peer {
        ip: remote.ip(),
        port: remote.port(),
        resource: None,
    });
    attrs.push_new(attr::NETWORK_TRANSPORT, "tcp");
    attrs.push_new(
        attr::NETWORK_TYPE,
        if remote.is_ipv4() { "ipv4" } else { "ipv6" },
    );
    let peer = ip_text(remote.ip());
    match v.kind {
        SpanKind::Client => {
            if attrs.get(attr::SERVER_ADDRESS).is_none() {
                attrs.set(attr::SERVER_ADDRESS, peer.clone());
            }
            if attrs.get(attr::SERVER_PORT).is_none() {
                attrs.set(attr::SERVER_PORT, remote.port() as i64);
            }
        }
        SpanKind::Server => {
            attrs.push_new(attr::CLIENT_ADDRESS, peer.clone());
            attrs.push_new(attr::CLIENT_PORT, remote.port() as i64);
            if attrs.get(attr::SERVER_PORT).is_none() {
                attrs.set(attr::SERVER_PORT, v.tuple.local.port() as i64);
            }
        }
    }
    attrs.push_new(attr::NETWORK_PEER_ADDRESS, peer);
    attrs.push_new(attr::NETWORK_PEER_PORT, remote.port() as i64);
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

/// A port in decimal, written into `buf`.
fn u16_text(mut n: u16, buf: &mut [u8; 5]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

/// `host[:port]` of a Host/:authority value (userinfo, which a request
/// should not carry there, is dropped).
fn split_authority(a: &str) -> (String, Option<u16>) {
    let (a, _) = url::strip_userinfo(a);
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

fn http(
    v: &ExchangeView<'_>,
    req: &HttpRequest,
    resp: Option<&HttpResponse>,
    attrs: &mut Attributes,
    view: &mut SpanView,
) -> (String, Status) {
    view.protocol = Some(AppProtocol::Http);
    let method = req.method.as_deref().map(|m| known_method(m, req));
    // The view says what `http.request.method` says.
    view.method = method
        .as_ref()
        .map(|m| m.clone().unwrap_or(Cow::Borrowed("_OTHER")));
    if let Some(m) = &method {
        match m {
            Some(m) => attrs.push_new(attr::HTTP_REQUEST_METHOD, m.clone()),
            None => {
                attrs.push_new(attr::HTTP_REQUEST_METHOD, "_OTHER");
                if let Some(original) = &req.method {
                    attrs.push_new(attr::HTTP_REQUEST_METHOD_ORIGINAL, original.clone());
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
        attrs.push_new(attr::ZT_HTTP_INVALID, req.invalid.join(","));
    }
    let scheme: Cow<'static, str> = match req.scheme.as_deref() {
        Some("https") => "https".into(),
        Some("http") => "http".into(),
        Some(other) => other.to_owned().into(),
        None if v.tls => "https".into(),
        None => "http".into(),
    };
    attrs.push_new(attr::URL_SCHEME, scheme.clone());
    if let Some(ver) = req.version {
        attrs.push_new(attr::NETWORK_PROTOCOL_NAME, "http");
        attrs.push_new(attr::NETWORK_PROTOCOL_VERSION, ver.as_str());
    }
    if let Some(ua) = req.header("user-agent") {
        attrs.push_new(attr::USER_AGENT_ORIGINAL, ua.to_owned());
    }
    request_id(req, attrs);
    let authority = req.authority.as_deref().map(split_authority);
    // Path and query, credentials redacted: everything below (url.*,
    // the route, the name, the view) is made from this.
    let target = req
        .target
        .as_deref()
        .map(|t| url::split_target(t, v.redaction));
    // An invalid target is reported as received (escaped) in `url.path`,
    // never as a route: it names no route and would be unbounded.
    let route = target
        .as_ref()
        .filter(|_| !target_invalid)
        .map(|t| route_template(t.path));
    if let Some(t) = &target {
        attrs.push_new(attr::URL_PATH, t.path.to_owned());
        if let Some(q) = &t.query {
            attrs.push_new(attr::URL_QUERY, q.clone().into_owned());
        }
    }
    match v.kind {
        SpanKind::Server => {
            if let Some((h, p)) = &authority {
                attrs.push_new(attr::SERVER_ADDRESS, h.clone());
                if let Some(p) = p {
                    attrs.push_new(attr::SERVER_PORT, *p as i64);
                }
            }
            if let Some(r) = &route {
                attrs.push_new(attr::HTTP_ROUTE, r.clone());
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
            attrs.push_new(attr::SERVER_ADDRESS, host.clone());
            attrs.push_new(attr::SERVER_PORT, port as i64);
            if let Some(t) = &target {
                let [path, sep, query] = t.path_and_query_parts();
                let full = match &t.absolute {
                    // A request to a proxy names the whole URL itself.
                    Some(a) => [
                        a.scheme,
                        "://",
                        a.userinfo.map_or("", url::Userinfo::redacted),
                        a.authority,
                        path,
                        sep,
                        query,
                    ]
                    .concat(),
                    None => {
                        let default_port = if scheme == "https" { 443 } else { 80 };
                        let mut digits = [0u8; 5];
                        let port_text = if port == default_port {
                            ""
                        } else {
                            u16_text(port, &mut digits)
                        };
                        // An IPv6 address is bracketed, with or without
                        // a port (RFC 3986 section 3.2.2).
                        let v6 = host.contains(':');
                        [
                            &*scheme,
                            "://",
                            if v6 { "[" } else { "" },
                            &host,
                            if v6 { "]" } else { "" },
                            if port_text.is_empty() { "" } else { ":" },
                            port_text,
                            path,
                            sep,
                            query,
                        ]
                        .concat()
                    }
                };
                attrs.push_new(attr::URL_FULL, full);
            }
            if let Some(r) = &route {
                attrs.push_new(attr::URL_TEMPLATE, r.clone());
            }
        }
    }
    set_undecoded(req, resp, attrs);
    let mut status = Status::UNSET;
    if let Some(reset) = resp.and_then(stream_reset) {
        attrs.set(attr::ERROR_TYPE, "stream_reset");
        status = Status::error(format!("stream reset: {reset}"));
    }
    if let Some(r) = resp {
        if let Some(code) = r.status {
            attrs.push_new(attr::HTTP_RESPONSE_STATUS_CODE, code as i64);
            view.status.http = Some(code);
            let is_err = code >= 500 || (v.kind == SpanKind::Client && code >= 400);
            if is_err {
                attrs.set(attr::ERROR_TYPE, code.to_string());
                status = Status {
                    code: StatusCode::Error,
                    message: None,
                };
            }
        }
    }
    let name = match (&method, &route) {
        (Some(m), Some(r)) => [&**m, " ", r].concat(),
        (Some(m), None) => m.to_string(),
        (None, Some(r)) => ["HTTP ", r].concat(),
        (None, None) => "HTTP".to_owned(),
    };
    view.operation = route.map(Operation::HttpRoute);
    view.authority = authority.map(|(host, port)| Authority { host, port });
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
        attrs.set(attr::ZT_UNDECODED, all.join(","));
    }
}

/// `x-request-id`, the de-facto correlation header, as
/// `http.request.header.x-request-id` (semantic conventions: header values).
fn request_id(req: &HttpRequest, attrs: &mut Attributes) {
    if let Some(v) = req.header("x-request-id") {
        attrs.set(attr::HTTP_REQUEST_HEADER_X_REQUEST_ID, v.to_owned());
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
    view: &mut SpanView,
) -> (String, Status) {
    view.protocol = Some(AppProtocol::Grpc);
    attrs.set(attr::RPC_SYSTEM, "grpc");
    // A gRPC path has no query; should one be sent, it is not a name.
    let path = req
        .target
        .as_deref()
        .map(|p| p.split(['?', '#']).next().unwrap_or(p).to_owned());
    if let Some(p) = &path {
        let trimmed = p.trim_start_matches('/');
        if let Some((svc, method)) = trimmed.split_once('/') {
            attrs.set(attr::RPC_SERVICE, svc.to_owned());
            attrs.set(attr::RPC_METHOD, method.to_owned());
            view.operation = Some(Operation::Rpc {
                service: svc.to_owned(),
                method: method.to_owned(),
            });
        }
    }
    if let Some((h, p)) = req.authority.as_deref().map(split_authority) {
        if v.kind == SpanKind::Client || !h.is_empty() {
            attrs.set(attr::SERVER_ADDRESS, h.clone());
        }
        if let Some(p) = p {
            attrs.set(attr::SERVER_PORT, p as i64);
        }
        view.authority = Some(Authority { host: h, port: p });
    }
    attrs.set(attr::NETWORK_PROTOCOL_NAME, "http");
    attrs.set(attr::NETWORK_PROTOCOL_VERSION, "2");
    request_id(req, attrs);
    if let Some(n) = req.grpc_messages {
        attrs.set(attr::RPC_MESSAGE_SENT_COUNT, n as i64);
    }
    set_undecoded(req, resp, attrs);
    let mut status = Status::UNSET;
    if let Some(r) = resp {
        if let Some(n) = r.grpc_messages {
            attrs.set(attr::RPC_MESSAGE_RECEIVED_COUNT, n as i64);
        }
        if let Some(reset) = stream_reset(r) {
            attrs.set(attr::ERROR_TYPE, "stream_reset");
            status = Status::error(format!("stream reset: {reset}"));
        }
        match r.grpc_status {
            Some(code) => {
                attrs.set(attr::RPC_GRPC_STATUS_CODE, code as i64);
                view.status.grpc = Some(code);
                let is_err = match v.kind {
                    SpanKind::Client => code != 0,
                    SpanKind::Server => GRPC_SERVER_ERRORS.contains(&code),
                };
                if is_err {
                    let name = GRPC_CODE_NAMES
                        .get(code as usize)
                        .copied()
                        .unwrap_or("UNKNOWN_CODE");
                    attrs.set(attr::ERROR_TYPE, name);
                    status = Status {
                        code: StatusCode::Error,
                        message: r.grpc_message.clone(),
                    };
                }
            }
            None => {
                if let Some(code) = r.status.filter(|c| *c != 200) {
                    attrs.set(attr::HTTP_RESPONSE_STATUS_CODE, code as i64);
                    view.status.http = Some(code);
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
    view: &mut SpanView,
) -> (String, Status) {
    view.protocol = Some(match req.system {
        protocol_parsers::DbSystem::Mysql => AppProtocol::Mysql,
        protocol_parsers::DbSystem::Postgresql => AppProtocol::Postgres,
        protocol_parsers::DbSystem::Redis => AppProtocol::Redis,
    });
    attrs.set(attr::DB_SYSTEM, req.system.as_str());
    attrs.set(attr::DB_SYSTEM_NAME, req.system.as_str());
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
        attrs.set(attr::DB_QUERY_TEXT, text.clone());
        view.db_statement = Some(text);
    }
    if let Some(op) = &operation {
        attrs.set(attr::DB_OPERATION_NAME, op.clone());
    }
    if req.system == protocol_parsers::DbSystem::Redis {
        // Command and key, never values (OTel: the name is the command).
        if let Some(op) = &operation {
            let text = match &target {
                Some(k) => format!("{op} {k}"),
                None => op.clone(),
            };
            attrs.set(attr::DB_QUERY_TEXT, text.clone());
            view.db_statement = Some(text);
        }
        target = None;
    } else if let Some(t) = &target {
        attrs.set(attr::DB_COLLECTION_NAME, t.clone());
    }
    if let Some(ns) = &req.namespace {
        attrs.set(attr::DB_NAMESPACE, ns.clone());
    }
    if let Some(st) = &req.statement {
        attrs.set(attr::ZT_DB_STATEMENT_ID, st.clone());
    }
    let mut status = Status::UNSET;
    if let Some(r) = resp {
        if let Some(rows) = r.rows {
            attrs.set(attr::DB_RESPONSE_RETURNED_ROWS, rows as i64);
        }
        if let Some(e) = &r.error {
            if let Some(code) = &e.code {
                attrs.set(attr::DB_RESPONSE_STATUS_CODE, code.clone());
                view.status.db_error_code = Some(code.clone());
                attrs.set(attr::ERROR_TYPE, code.clone());
            } else {
                attrs.set(attr::ERROR_TYPE, "db_error");
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
    view.operation = match req.system {
        protocol_parsers::DbSystem::Redis => operation.map(|command| Operation::Redis { command }),
        _ if operation.is_none() && target.is_none() => None,
        _ => Some(Operation::Db {
            operation,
            collection: target,
        }),
    };
    (name, status)
}

#[cfg(test)]
mod tests {
    use super::ip_text;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[test]
    fn u16_text_matches_format() {
        use super::u16_text;
        for n in [0u16, 7, 10, 80, 443, 8080, 9999, 10000, 65535] {
            let mut buf = [0u8; 5];
            assert_eq!(u16_text(n, &mut buf), n.to_string());
        }
    }

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

    /// `describe` of one HTTP exchange seen by a `kind` span on
    /// `local` -> `remote`.
    fn describe_http(
        kind: crate::span::SpanKind,
        (local, remote): (&str, &str),
        tls: bool,
        req: &protocol_parsers::MessageInfo,
        resp: Option<&protocol_parsers::MessageInfo>,
    ) -> (String, crate::span::Attributes, crate::view::SpanView) {
        let mut view = crate::view::SpanView::default();
        let (name, attrs, _) = super::describe(
            &super::ExchangeView {
                kind,
                protocol: protocol_parsers::Protocol::Http1,
                tuple: crate::event::SockTuple {
                    local: local.parse().unwrap(),
                    remote: remote.parse().unwrap(),
                },
                tls,
                request: Some(req),
                response: resp,
                raw_sql: false,
                redaction: &Default::default(),
            },
            &mut view,
        );
        (name, attrs, view)
    }

    /// `url.full` and the name of a client span, in every form.
    #[test]
    fn client_url_full_forms() {
        use crate::span::{AttrValue, SpanKind};
        use protocol_parsers::{HttpRequest, MessageInfo};
        let run = |remote: &str, authority: Option<&str>, target: &str, tls: bool| {
            let req = MessageInfo::HttpRequest(HttpRequest {
                method: Some("GET".into()),
                target: Some(target.into()),
                authority: authority.map(Into::into),
                ..HttpRequest::default()
            });
            let (name, attrs, _) = describe_http(
                SpanKind::Client,
                ("127.0.0.1:40000", remote),
                tls,
                &req,
                None,
            );
            match attrs.get("url.full") {
                Some(AttrValue::Str(s)) => (name, s.to_string()),
                other => panic!("url.full is {other:?}"),
            }
        };
        let full = |r, a, t, tls| run(r, a, t, tls).1;
        assert_eq!(
            run("10.0.0.2:8080", None, "/u/7?x=1", false),
            ("GET /u/{id}".into(), "http://10.0.0.2:8080/u/7?x=1".into())
        );
        assert_eq!(full("10.0.0.2:80", None, "/", false), "http://10.0.0.2/");
        assert_eq!(full("10.0.0.2:443", None, "/", true), "https://10.0.0.2/");
        assert_eq!(full("10.0.0.2:80", None, "/", true), "https://10.0.0.2:80/");
        assert_eq!(full("[::1]:9000", None, "/p", false), "http://[::1]:9000/p");
        assert_eq!(full("[::1]:80", None, "/p", false), "http://[::1]/p");
        assert_eq!(
            full("10.0.0.2:9000", Some("api.local:9000"), "/p?q", false),
            "http://api.local:9000/p?q"
        );
        assert_eq!(
            full(
                "10.0.0.2:3128",
                None,
                "http://u:pw@example.com:81/a?b=1",
                false
            ),
            "http://REDACTED:REDACTED@example.com:81/a?b=1"
        );
    }

    /// `http` and its helpers: unknown and invalid methods are `_OTHER`
    /// with the original kept; an invalid target is a path, never a route.
    #[test]
    fn http_other_methods_and_invalid_requests() {
        use crate::span::{AttrValue, SpanKind};
        use protocol_parsers::{HttpRequest, HttpResponse, MessageInfo};
        let addr = "127.0.0.1:80";
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
            let (name, attrs, view) =
                describe_http(SpanKind::Server, (addr, addr), false, &req, Some(&resp));
            let get = |k: &str| match attrs.get(k) {
                Some(AttrValue::Str(s)) => Some(s.to_string()),
                Some(other) => Some(format!("{other:?}")),
                None => None,
            };
            // The view says what the attribute says (`_OTHER` included).
            assert_eq!(
                view.method.as_deref().map(str::to_owned),
                get("http.request.method")
            );
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
