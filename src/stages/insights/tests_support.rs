//! Traces built by hand for the unit tests of the insights stage, the
//! recent-trace ring and their consumers.

use span_core::{
    AppProtocol, Attributes, Authority, Operation, Peer, Resource, Span, SpanId, SpanKind,
    SpanView, Status, Trace, TraceId, ViewStatus,
};
use std::sync::Arc;

/// Builds one trace; times in microseconds from 1_000_000_000 s.
pub struct TraceBuilder {
    trace_id: TraceId,
    spans: Vec<Span>,
}

const T0: u64 = 1_700_000_000_000_000_000;

#[allow(clippy::too_many_arguments)]
fn base(
    trace: TraceId,
    id: u64,
    parent: Option<u64>,
    kind: SpanKind,
    svc: &str,
    name: &str,
    start_us: u64,
    dur_us: u64,
) -> Span {
    Span {
        trace_id: trace,
        span_id: SpanId(id),
        parent_span_id: parent.map(SpanId),
        name: name.to_owned(),
        kind,
        start_unix_nanos: T0 + start_us * 1000,
        end_unix_nanos: T0 + (start_us + dur_us) * 1000,
        status: Status::UNSET,
        attributes: Attributes::new(),
        links: vec![],
        resource: Arc::new(Resource {
            service_name: svc.to_owned(),
            attributes: Attributes::new(),
        }),
        view: Box::new(SpanView::default()),
    }
}

impl TraceBuilder {
    pub fn new(trace: u128) -> Self {
        TraceBuilder {
            trace_id: TraceId(trace),
            spans: Vec::new(),
        }
    }

    /// A server span of `svc` (HTTP, status 200).
    pub fn server(
        &mut self,
        id: u64,
        parent: Option<u64>,
        svc: &str,
        name: &str,
        start_us: u64,
        dur_us: u64,
    ) -> &mut Self {
        let mut s = base(
            self.trace_id,
            id,
            parent,
            SpanKind::Server,
            svc,
            name,
            start_us,
            dur_us,
        );
        s.view.protocol = Some(AppProtocol::Http);
        s.view.status.http = Some(200);
        s.view.operation = name
            .split_once(' ')
            .map(|(_, r)| Operation::HttpRoute(r.to_owned()));
        self.spans.push(s);
        self
    }

    /// A database client span of `svc` running `stmt`.
    #[allow(clippy::too_many_arguments)]
    pub fn db(
        &mut self,
        id: u64,
        parent: u64,
        svc: &str,
        protocol: AppProtocol,
        stmt: &str,
        start_us: u64,
        dur_us: u64,
    ) -> &mut Self {
        let name = stmt.split(' ').next().unwrap_or("").to_owned();
        let mut s = base(
            self.trace_id,
            id,
            Some(parent),
            SpanKind::Client,
            svc,
            &name,
            start_us,
            dur_us,
        );
        s.view.protocol = Some(protocol);
        s.view.db_statement = Some(stmt.to_owned());
        s.view.peer = Some(Peer {
            ip: [127, 0, 0, 1].into(),
            port: match protocol {
                AppProtocol::Redis => 6379,
                AppProtocol::Mysql => 3306,
                _ => 5432,
            },
            resource: None,
        });
        s.view.operation = Some(match protocol {
            AppProtocol::Redis => Operation::Redis { command: name },
            _ => Operation::Db {
                operation: Some(name),
                collection: None,
            },
        });
        self.spans.push(s);
        self
    }

    /// An HTTP GET client span of `svc` to `url` (served by `peer_service`
    /// when the other end was linked).
    #[allow(clippy::too_many_arguments)]
    pub fn get(
        &mut self,
        id: u64,
        parent: u64,
        svc: &str,
        url: &str,
        peer_service: Option<&str>,
        start_us: u64,
        dur_us: u64,
    ) -> &mut Self {
        let mut s = base(
            self.trace_id,
            id,
            Some(parent),
            SpanKind::Client,
            svc,
            "GET",
            start_us,
            dur_us,
        );
        s.view.protocol = Some(AppProtocol::Http);
        s.view.method = Some("GET".into());
        s.view.status.http = Some(200);
        let hostport = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("");
        let (host, port) = hostport.split_once(':').unwrap_or((hostport, "80"));
        s.view.authority = Some(Authority {
            host: host.to_owned(),
            port: port.parse().ok(),
        });
        s.view.peer = Some(Peer {
            ip: [127, 0, 0, 1].into(),
            port: port.parse().unwrap_or(80),
            resource: peer_service.map(|svc| {
                Arc::new(Resource {
                    service_name: svc.to_owned(),
                    attributes: Attributes::new(),
                })
            }),
        });
        s.attributes
            .set(span_core::semconv::attr::URL_FULL, url.to_owned());
        self.spans.push(s);
        self
    }

    /// Marks span `id` failed with `message` (and HTTP `code`, if given).
    pub fn fail(&mut self, id: u64, message: &str, code: Option<u16>) -> &mut Self {
        let s = self
            .spans
            .iter_mut()
            .find(|s| s.span_id.0 == id)
            .expect("span");
        s.status = Status::error(message);
        s.view.status = ViewStatus {
            http: code.or(s.view.status.http.filter(|_| code.is_some())),
            error: true,
            ..ViewStatus::default()
        };
        if code.is_none() && s.view.protocol == Some(AppProtocol::Http) {
            s.view.status.http = None;
        }
        self
    }

    /// Sets span `id`'s HTTP status without making it an error.
    pub fn http_status(&mut self, id: u64, code: u16) -> &mut Self {
        let s = self
            .spans
            .iter_mut()
            .find(|s| s.span_id.0 == id)
            .expect("span");
        s.view.status.http = Some(code);
        self
    }

    pub fn build(&self) -> Trace {
        Trace {
            trace_id: self.trace_id,
            spans: self.spans.clone(),
        }
    }
}

/// Traces of the given sizes (a root server span and client children).
pub fn trace_of_sizes(sizes: &[usize]) -> Vec<Trace> {
    sizes
        .iter()
        .enumerate()
        .map(|(t, &n)| {
            let mut b = TraceBuilder::new(t as u128 + 1);
            b.server(1, None, "svc", "GET /x", 0, 1000);
            for i in 1..n as u64 {
                b.db(
                    i + 1,
                    1,
                    "svc",
                    AppProtocol::Postgres,
                    "SELECT 1",
                    i * 10,
                    5,
                );
            }
            b.build()
        })
        .collect()
}
