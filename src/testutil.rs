//! Spans for unit tests, built the way the assembler fills them.
#![allow(dead_code)]

use span_core::{
    AppProtocol, Attributes, LinkReason, Operation, Peer, Resource, Span, SpanId, SpanKind,
    SpanView, Status, Trace, TraceId, ViewStatus,
};
use std::net::SocketAddr;
use std::sync::Arc;

pub const MS: u64 = 1_000_000;

pub fn res(name: &str) -> Arc<Resource> {
    Arc::new(Resource {
        service_name: name.into(),
        attributes: Attributes::new(),
    })
}

pub struct B {
    pub span: Span,
}

impl B {
    pub fn new(id: u64, kind: SpanKind, service: &str, protocol: AppProtocol) -> B {
        B {
            span: Span {
                trace_id: TraceId(1),
                span_id: SpanId(id),
                parent_span_id: None,
                name: "x".into(),
                kind,
                start_unix_nanos: 1_000 * MS,
                end_unix_nanos: 1_010 * MS,
                status: Status::UNSET,
                attributes: Attributes::new(),
                links: Vec::new(),
                resource: res(service),
                view: Box::new(SpanView {
                    protocol: Some(protocol),
                    link_reason: Some(LinkReason::RootNoOpenRequest),
                    ..Default::default()
                }),
            },
        }
    }
    pub fn parent(mut self, p: u64, reason: LinkReason) -> B {
        self.span.parent_span_id = Some(SpanId(p));
        self.span.view.link_reason = Some(reason);
        self
    }
    pub fn peer(mut self, addr: &str, service: Option<&str>) -> B {
        let a: SocketAddr = addr.parse().unwrap();
        self.span.view.peer = Some(Peer {
            ip: a.ip(),
            port: a.port(),
            resource: service.map(res),
        });
        self
    }
    pub fn local(mut self, addr: &str) -> B {
        self.span.view.local = Some(addr.parse().unwrap());
        self
    }
    pub fn ms(mut self, d: u64) -> B {
        self.span.end_unix_nanos = self.span.start_unix_nanos + d * MS;
        self
    }
    pub fn error(mut self) -> B {
        self.span.status = Status::error("boom");
        self.span.view.status.error = true;
        self
    }
    pub fn http(mut self, method: &'static str, route: &str, code: u16) -> B {
        self.span.view.method = Some(method.into());
        self.span.view.operation = Some(Operation::HttpRoute(route.into()));
        self.span.view.status = ViewStatus {
            http: Some(code),
            error: self.span.view.status.error,
            ..Default::default()
        };
        self
    }
    pub fn op(mut self, op: Operation) -> B {
        self.span.view.operation = Some(op);
        self
    }
}

pub fn trace(spans: Vec<B>) -> Trace {
    Trace {
        trace_id: TraceId(1),
        spans: spans.into_iter().map(|b| b.span).collect(),
    }
}

/// gateway -> auth over HTTP, both ends seen and linked by tcp_seq.
pub fn hop(client_ms: u64, server_ms: u64) -> Trace {
    trace(vec![
        B::new(1, SpanKind::Client, "gateway", AppProtocol::Http)
            .peer("127.0.0.1:8081", Some("auth"))
            .local("127.0.0.1:40000")
            .ms(client_ms),
        B::new(2, SpanKind::Server, "auth", AppProtocol::Http)
            .parent(1, LinkReason::TcpSeq)
            .peer("127.0.0.1:40000", Some("gateway"))
            .local("127.0.0.1:8081")
            .ms(server_ms),
    ])
}
