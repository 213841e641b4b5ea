//! Realistic example spans for tests, benchmarks and demos: an HTTP server
//! span, its outgoing gRPC call and a database query, as span-core builds
//! them.

use span_core::{
    AppProtocol, AttrValue, Attributes, Authority, KeyValue, LinkReason, Operation, Peer, Resource,
    Span, SpanId, SpanKind, SpanLink, SpanView, Status, TraceId, ViewStatus,
};
use std::net::SocketAddr;
use std::sync::Arc;

/// A resource like the one span-core gives a traced process.
pub fn resource(service: &str, pid: i64) -> Arc<Resource> {
    Arc::new(Resource {
        service_name: service.to_owned(),
        attributes: Attributes(vec![
            KeyValue::new("process.pid", pid),
            KeyValue::new("process.executable.name", service.to_owned()),
            KeyValue::new("host.name", "zt-test-host"),
        ]),
    })
}

/// A minimal CLIENT span with the given ids and one attribute.
pub fn span(trace: u128, id: u64, parent: Option<u64>) -> Span {
    Span {
        trace_id: TraceId(trace),
        span_id: SpanId(id),
        parent_span_id: parent.map(SpanId),
        name: "GET".into(),
        kind: SpanKind::Client,
        start_unix_nanos: 1_700_000_000_123_456_789,
        end_unix_nanos: 1_700_000_000_125_456_789,
        status: Status::UNSET,
        attributes: Attributes(vec![KeyValue::new("db.system", "redis")]),
        links: Vec::new(),
        resource: resource("cache-client", 7),
        view: Box::new(SpanView {
            protocol: Some(AppProtocol::Redis),
            ..Default::default()
        }),
    }
}

/// A three-span trace: `frontend` SERVER `GET /users/{id}` (root, status
/// unset) -> CLIENT gRPC call `/users.Users/Get` (error) -> `users` SERVER
/// span with a MySQL CLIENT child. Times are in Unix nanoseconds.
pub fn trace(trace_id: u128, base_span_id: u64) -> Vec<Span> {
    let frontend = resource("frontend", 4242);
    let users = resource("users", 4343);
    let t0: u64 = 1_700_000_000_000_000_000;
    let mut server_attrs = Attributes::new();
    server_attrs.set("http.request.method", "GET");
    server_attrs.set("url.path", "/users/42");
    server_attrs.set("http.route", "/users/{id}");
    server_attrs.set("http.response.status_code", 200i64);
    server_attrs.set("server.address", "127.0.0.1");
    server_attrs.set("server.port", 8080i64);
    server_attrs.set("client.address", "10.1.2.3");
    server_attrs.set("client.port", 51234i64);
    server_attrs.set("network.protocol.version", "1.1");
    let root = Span {
        trace_id: TraceId(trace_id),
        span_id: SpanId(base_span_id),
        parent_span_id: None,
        name: "GET /users/{id}".into(),
        kind: SpanKind::Server,
        start_unix_nanos: t0,
        end_unix_nanos: t0 + 12_345_678,
        status: Status::UNSET,
        attributes: server_attrs,
        links: Vec::new(),
        resource: frontend.clone(),
        view: Box::new(SpanView {
            protocol: Some(AppProtocol::Http),
            local: Some(addr("127.0.0.1:8080")),
            peer: Some(peer("10.1.2.3:51234", None)),
            authority: Some(Authority {
                host: "127.0.0.1".into(),
                port: Some(8080),
            }),
            operation: Some(Operation::HttpRoute("/users/{id}".into())),
            method: Some("GET".into()),
            status: ViewStatus {
                http: Some(200),
                ..Default::default()
            },
            link_reason: Some(LinkReason::Root),
            ..Default::default()
        }),
    };
    let mut grpc_attrs = Attributes::new();
    grpc_attrs.set("rpc.system", "grpc");
    grpc_attrs.set("rpc.service", "users.Users");
    grpc_attrs.set("rpc.method", "Get");
    grpc_attrs.set("rpc.grpc.status_code", 14i64);
    grpc_attrs.set("server.address", "::1");
    grpc_attrs.set("server.port", 50051i64);
    grpc_attrs.set("zt.sample_ratio", AttrValue::Double(0.25));
    grpc_attrs.set("zt.tls", false);
    let call = Span {
        trace_id: TraceId(trace_id),
        span_id: SpanId(base_span_id + 1),
        parent_span_id: Some(SpanId(base_span_id)),
        name: "/users.Users/Get".into(),
        kind: SpanKind::Client,
        start_unix_nanos: t0 + 1_000_000,
        end_unix_nanos: t0 + 9_000_500,
        status: Status::error("UNAVAILABLE: upstream reset"),
        attributes: grpc_attrs,
        links: vec![SpanLink {
            trace_id: TraceId(trace_id ^ 0xffff),
            span_id: SpanId(0xabcdef),
            attributes: Attributes(vec![KeyValue::new("zt.link", "inferred")]),
        }],
        resource: frontend.clone(),
        view: Box::new(SpanView {
            protocol: Some(AppProtocol::Grpc),
            peer: Some(peer("[::1]:50051", Some(users.clone()))),
            authority: Some(Authority {
                host: "::1".into(),
                port: Some(50051),
            }),
            operation: Some(rpc_get()),
            status: ViewStatus {
                grpc: Some(14),
                error: true,
                ..Default::default()
            },
            link_reason: Some(LinkReason::RootNoOpenRequest),
            ..Default::default()
        }),
    };
    let mut srv2 = Attributes::new();
    srv2.set("rpc.system", "grpc");
    srv2.set("rpc.service", "users.Users");
    srv2.set("rpc.method", "Get");
    srv2.set("network.peer.address", "127.0.0.1");
    srv2.set("network.peer.port", 40000i64);
    let users_server = Span {
        trace_id: TraceId(trace_id),
        span_id: SpanId(base_span_id + 2),
        parent_span_id: Some(SpanId(base_span_id + 1)),
        name: "/users.Users/Get".into(),
        kind: SpanKind::Server,
        start_unix_nanos: t0 + 1_500_000,
        end_unix_nanos: t0 + 8_000_000,
        status: Status::UNSET,
        attributes: srv2,
        links: Vec::new(),
        resource: users.clone(),
        view: Box::new(SpanView {
            protocol: Some(AppProtocol::Grpc),
            peer: Some(peer("127.0.0.1:40000", Some(frontend.clone()))),
            operation: Some(rpc_get()),
            link_reason: Some(LinkReason::TcpSeq),
            ..Default::default()
        }),
    };
    let mut db = Attributes::new();
    db.set("db.system", "mysql");
    db.set("db.operation.name", "SELECT");
    db.set("db.query.text", "SELECT * FROM users WHERE id = ?");
    db.set("server.address", "db.internal");
    db.set("server.port", 3306i64);
    let query = Span {
        trace_id: TraceId(trace_id),
        span_id: SpanId(base_span_id + 3),
        parent_span_id: Some(SpanId(base_span_id + 2)),
        name: "SELECT users".into(),
        kind: SpanKind::Client,
        start_unix_nanos: t0 + 2_000_000,
        end_unix_nanos: t0 + 2_000_400,
        status: Status {
            code: span_core::StatusCode::Ok,
            message: None,
        },
        attributes: db,
        links: Vec::new(),
        resource: users,
        view: Box::new(SpanView {
            protocol: Some(AppProtocol::Mysql),
            // A leaf seen only from its client: its name is what the client
            // called it.
            authority: Some(Authority {
                host: "db.internal".into(),
                port: Some(3306),
            }),
            operation: Some(Operation::Db {
                operation: Some("SELECT".into()),
                collection: None,
            }),
            db_statement: Some("SELECT * FROM users WHERE id = ?".into()),
            link_reason: Some(LinkReason::Thread),
            ..Default::default()
        }),
    };
    vec![root, call, users_server, query]
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("sample address")
}

fn peer(s: &str, service: Option<Arc<Resource>>) -> Peer {
    let a = addr(s);
    Peer {
        ip: a.ip(),
        port: a.port(),
        resource: service,
    }
}

fn rpc_get() -> Operation {
    Operation::Rpc {
        service: "users.Users".into(),
        method: "Get".into(),
    }
}

/// `n` spans made of repeated [`trace`]s with distinct ids.
pub fn spans(n: usize) -> Vec<Span> {
    let mut out = Vec::with_capacity(n + 4);
    let mut i = 0u64;
    while out.len() < n {
        out.extend(trace(
            0x5af7_183f_b1d4_cf5f_0000_0000_0000_0000 | u128::from(i + 1),
            (i + 1) * 16,
        ));
        i += 1;
    }
    out.truncate(n);
    out
}
