//! Secrets in URLs never leave span-core: values of sensitive query
//! parameters become `REDACTED` (keys kept) and userinfo becomes
//! `REDACTED:REDACTED@`, in every carrier (HTTP/1 origin-form and
//! absolute-form targets, HTTP/2 `:path` and `:authority`, gRPC paths), on
//! both ends of the request. Each test serializes *whole* emitted spans
//! (name, attributes, resource, view: everything an exporter or renderer
//! reads) and looks for the secrets anywhere in them.

mod common;

use bytes::Bytes;
use span_core::*;
use std::net::SocketAddr;

const MS: u64 = 1_000_000;
const SECRETS: &[&str] = &["SECRET789", "SECRET000", "hunter2", "s3cr3t", "bob"];

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[allow(clippy::too_many_arguments)]
fn data(
    pid: u32,
    conn: u64,
    role: Role,
    dir: Direction,
    t: u64,
    seq: u32,
    payload: &[u8],
) -> Event {
    let (local, remote) = match role {
        Role::Server => ("127.0.0.1:8080", "127.0.0.1:40000"),
        _ => ("127.0.0.1:40000", "127.0.0.1:8080"),
    };
    Event::Data(DataEvent {
        pid,
        tid: pid,
        thread_start_ns: 1,
        comm: "svc".into(),
        fd: 3,
        conn_id: conn,
        role,
        tuple: SockTuple {
            local: addr(local),
            remote: addr(remote),
        },
        direction: dir,
        source: Source::Syscall,
        enter_ns: t,
        exit_ns: t + 1000,
        bytes: payload.len() as u64,
        seq,
        payload: Bytes::copy_from_slice(payload),
        ssl: 0,
        exec_ctx: 0,
        task: 0,
    })
}

/// One request seen from both ends: the client (pid 10, conn 1) writes
/// `req` and reads `resp`, the server (pid 20, conn 2) reads and answers.
fn both_ends(req: &[u8], resp: &[u8], cfg: Config) -> Vec<Span> {
    let events = vec![
        data(10, 1, Role::Client, Direction::Egress, MS, 100, req),
        data(20, 2, Role::Server, Direction::Ingress, 2 * MS, 100, req),
        data(20, 2, Role::Server, Direction::Egress, 3 * MS, 900, resp),
        data(10, 1, Role::Client, Direction::Ingress, 4 * MS, 900, resp),
    ];
    let mut asm = Assembler::new(cfg);
    for e in events {
        asm.handle_event(e);
    }
    asm.flush();
    let mut spans = Vec::new();
    while let Some(Output::Trace(t)) = asm.poll() {
        spans.extend(t.spans);
    }
    assert_eq!(spans.len(), 2, "{spans:#?}");
    spans
}

/// Every emitted byte of every span: no secret anywhere.
fn assert_clean(spans: &[Span]) {
    for s in spans {
        let all = serde_json::to_string(s).unwrap();
        for secret in SECRETS {
            assert!(!all.contains(secret), "{secret} leaked in {all}");
        }
    }
}

fn get(spans: &[Span], kind: SpanKind) -> &Span {
    spans.iter().find(|s| s.kind == kind).unwrap()
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

#[test]
fn http1_query_values_are_redacted_on_both_ends() {
    let req = b"GET /login?user=ann&password=SECRET789&token=SECRET000&Sig=s3cr3t HTTP/1.1\r\nHost: api:8080\r\n\r\n";
    let spans = both_ends(req, OK, Config::default());
    assert_clean(&spans);
    let want = "user=ann&password=REDACTED&token=REDACTED&Sig=REDACTED";
    for s in &spans {
        assert_eq!(
            s.attributes.get_str("url.query"),
            Some(want),
            "{:?}",
            s.kind
        );
        assert_eq!(s.attributes.get_str("url.path"), Some("/login"));
        assert_eq!(s.name, "GET /login");
    }
    assert_eq!(
        get(&spans, SpanKind::Client).attributes.get_str("url.full"),
        Some(&*format!("http://api:8080/login?{want}"))
    );
}

#[test]
fn http1_absolute_form_userinfo_is_redacted() {
    // A request to a forward proxy names the whole URL, userinfo included.
    let req = b"GET http://bob:hunter2@example.com:8080/a/b?key=s3cr3t&x=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n";
    let spans = both_ends(req, OK, Config::default());
    assert_clean(&spans);
    let c = get(&spans, SpanKind::Client);
    assert_eq!(
        c.attributes.get_str("url.full"),
        Some("http://REDACTED:REDACTED@example.com:8080/a/b?key=REDACTED&x=1")
    );
    for s in &spans {
        assert_eq!(s.attributes.get_str("url.path"), Some("/a/b"));
        assert_eq!(s.attributes.get_str("url.query"), Some("key=REDACTED&x=1"));
        assert_eq!(s.name, "GET /a/b");
    }
    // A Host header carrying userinfo (invalid, but sent) is no better.
    let req = b"GET /p?x=1 HTTP/1.1\r\nHost: bob:hunter2@example.com\r\n\r\n";
    let spans = both_ends(req, OK, Config::default());
    assert_clean(&spans);
    assert_eq!(
        get(&spans, SpanKind::Server)
            .attributes
            .get_str("server.address"),
        Some("example.com")
    );
}

#[test]
fn invalid_targets_are_redacted_too() {
    // A control byte makes the target invalid (escaped, no route): its
    // query is still redacted.
    let req = b"GET /a\x01b?password=SECRET789 HTTP/1.1\r\nHost: h\r\n\r\n";
    let resp = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    let spans = both_ends(req, resp, Config::default());
    assert_clean(&spans);
    let s = get(&spans, SpanKind::Server);
    assert_eq!(s.attributes.get_str("url.query"), Some("password=REDACTED"));
    assert_eq!(s.attributes.get_str("zt.http.invalid"), Some("target"));
}

#[test]
fn extra_names_and_keep_query() {
    let req = b"GET /x?sessionid=s3cr3t&token=SECRET000 HTTP/1.1\r\nHost: h\r\n\r\n";
    let mut cfg = Config::default();
    cfg.query_redaction.extra = vec!["SessionId".into()];
    let spans = both_ends(req, OK, cfg);
    assert_clean(&spans);
    assert_eq!(
        get(&spans, SpanKind::Server)
            .attributes
            .get_str("url.query"),
        Some("sessionid=REDACTED&token=REDACTED")
    );
    // --keep-query: values as sent (userinfo would still be redacted).
    let mut cfg = Config::default();
    cfg.query_redaction.keep = true;
    let spans = both_ends(req, OK, cfg);
    assert_eq!(
        get(&spans, SpanKind::Client).attributes.get_str("url.full"),
        Some("http://h:8080/x?sessionid=s3cr3t&token=SECRET000")
    );
}

// ----------------------------------------------------------------- HTTP/2

use common::h2;

#[test]
fn http2_path_and_authority() {
    let (req, resp) = h2::exchange(
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "bob:hunter2@api.example"),
            (
                ":path",
                "/v1/items?X-Goog-Signature=s3cr3t&api_key=SECRET789&page=2",
            ),
        ],
        &[(":status", "200")],
        true,
    );
    let spans = both_ends(&req, &resp, Config::default());
    assert_clean(&spans);
    let c = get(&spans, SpanKind::Client);
    assert_eq!(
        c.attributes.get_str("url.full"),
        Some("https://api.example:8080/v1/items?X-Goog-Signature=REDACTED&api_key=REDACTED&page=2")
    );
    assert_eq!(c.attributes.get_str("server.address"), Some("api.example"));
    assert_eq!(c.view.authority.as_ref().unwrap().host, "api.example");
    for s in &spans {
        assert_eq!(s.name, "GET /v1/items");
        assert_eq!(
            s.attributes.get_str("url.query"),
            Some("X-Goog-Signature=REDACTED&api_key=REDACTED&page=2")
        );
    }
}

#[test]
fn grpc_path_with_a_query_names_no_secret() {
    let (req, resp) = h2::exchange(
        &[
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", "inventory"),
            (":path", "/inv.Inventory/Get?token=SECRET000"),
            ("content-type", "application/grpc"),
        ],
        &[
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "0"),
        ],
        true,
    );
    let spans = both_ends(&req, &resp, Config::default());
    assert_clean(&spans);
    for s in &spans {
        assert_eq!(s.name, "/inv.Inventory/Get");
        assert_eq!(s.attributes.get_str("rpc.method"), Some("Get"));
    }
}
