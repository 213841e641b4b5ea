//! RED aggregates (rate, errors, duration) per service and operation, the
//! OpenTelemetry semantic-convention duration metrics: one explicit-bounds
//! histogram per label set, bounded in number.

use super::hist::{FixedHist, SEMCONV_BOUNDS};
use hashbrown::HashMap;
use span_core::{AppProtocol, Operation, Span, SpanKind};

/// Which semantic-convention metric a series belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RedMetric {
    /// `http.server.request.duration`
    HttpServer,
    /// `http.client.request.duration`
    HttpClient,
    /// `rpc.server.call.duration`
    RpcServer,
    /// `rpc.client.call.duration`
    RpcClient,
    /// `db.client.operation.duration`
    DbClient,
}

impl RedMetric {
    pub const ALL: [RedMetric; 5] = [
        RedMetric::HttpServer,
        RedMetric::HttpClient,
        RedMetric::RpcServer,
        RedMetric::RpcClient,
        RedMetric::DbClient,
    ];

    /// The OpenTelemetry metric name.
    pub fn otel_name(self) -> &'static str {
        match self {
            RedMetric::HttpServer => "http.server.request.duration",
            RedMetric::HttpClient => "http.client.request.duration",
            RedMetric::RpcServer => "rpc.server.call.duration",
            RedMetric::RpcClient => "rpc.client.call.duration",
            RedMetric::DbClient => "db.client.operation.duration",
        }
    }

    /// The attribute keys of [`RedKey::labels`], in order (after
    /// `service.name`).
    pub fn label_keys(self) -> [&'static str; 3] {
        match self {
            RedMetric::HttpServer | RedMetric::HttpClient => [
                "http.request.method",
                "http.route",
                "http.response.status_code",
            ],
            RedMetric::RpcServer | RedMetric::RpcClient => {
                ["rpc.system.name", "rpc.method", "rpc.response.status_code"]
            }
            RedMetric::DbClient => ["db.system.name", "db.operation.name", ""],
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            RedMetric::HttpServer => "Duration of HTTP server requests (SERVER spans), by service, method, route and status.",
            RedMetric::HttpClient => "Duration of HTTP client requests (CLIENT spans), by service, method, URL template and status.",
            RedMetric::RpcServer => "Duration of gRPC calls served (SERVER spans), by service, method and status.",
            RedMetric::RpcClient => "Duration of gRPC calls made (CLIENT spans), by service, method and status.",
            RedMetric::DbClient => "Duration of database and cache operations (CLIENT spans), by service, system and operation.",
        }
    }
}

/// One label set of one metric, stored as the span gives it (label
/// values are spelled out only when exported, see [`RedKey::labels`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RedKey {
    pub metric: RedMetric,
    pub service: String,
    /// HTTP: the method; gRPC: `rpc.service`; databases: `db.system.name`.
    pub op1: String,
    /// HTTP: the route; gRPC: the method; databases: the operation.
    pub op2: String,
    /// HTTP or gRPC status code.
    pub code: Option<u32>,
}

/// A [`RedKey`] borrowed from a span: looked up without allocating (same
/// fields, same order, so the same hash).
#[derive(Hash)]
struct RedKeyRef<'a> {
    metric: RedMetric,
    service: &'a str,
    op1: &'a str,
    op2: &'a str,
    code: Option<u32>,
}

impl hashbrown::Equivalent<RedKey> for RedKeyRef<'_> {
    fn equivalent(&self, k: &RedKey) -> bool {
        self.metric == k.metric
            && self.code == k.code
            && self.service == k.service
            && self.op1 == k.op1
            && self.op2 == k.op2
    }
}

impl RedKeyRef<'_> {
    fn to_owned(&self) -> RedKey {
        RedKey {
            metric: self.metric,
            service: self.service.to_owned(),
            op1: self.op1.to_owned(),
            op2: self.op2.to_owned(),
            code: self.code,
        }
    }
}

impl RedKey {
    /// Values of [`RedMetric::label_keys`] ("" when unknown or unused).
    pub fn labels(&self) -> [String; 3] {
        let code = || self.code.map(|c| c.to_string()).unwrap_or_default();
        match self.metric {
            RedMetric::HttpServer | RedMetric::HttpClient => {
                [self.op1.clone(), self.op2.clone(), code()]
            }
            RedMetric::RpcServer | RedMetric::RpcClient => [
                "grpc".to_owned(),
                if self.op1.is_empty() && self.op2.is_empty() {
                    String::new()
                } else {
                    format!("{}/{}", self.op1, self.op2)
                },
                self.code
                    .map(|c| {
                        GRPC_CODES
                            .get(c as usize)
                            .map_or_else(|| c.to_string(), |s| (*s).to_owned())
                    })
                    .unwrap_or_default(),
            ],
            RedMetric::DbClient => [self.op1.clone(), self.op2.clone(), String::new()],
        }
    }
}

/// gRPC status code names (`rpc.response.status_code`).
const GRPC_CODES: &[&str] = &[
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

/// The series a span falls in, if it is of a protocol the conventions
/// cover.
fn key_of(span: &Span) -> Option<RedKeyRef<'_>> {
    let v = &span.view;
    let server = span.kind == SpanKind::Server;
    let service = span.resource.service_name.as_str();
    Some(match v.protocol? {
        AppProtocol::Http => RedKeyRef {
            metric: if server {
                RedMetric::HttpServer
            } else {
                RedMetric::HttpClient
            },
            service,
            op1: v.method.as_deref().unwrap_or(""),
            op2: match &v.operation {
                Some(Operation::HttpRoute(r)) => r,
                _ => "",
            },
            code: v.status.http.map(u32::from),
        },
        AppProtocol::Grpc => {
            let (op1, op2) = match &v.operation {
                Some(Operation::Rpc { service, method }) => (service.as_str(), method.as_str()),
                _ => ("", ""),
            };
            RedKeyRef {
                metric: if server {
                    RedMetric::RpcServer
                } else {
                    RedMetric::RpcClient
                },
                service,
                op1,
                op2,
                code: v.status.grpc,
            }
        }
        p @ (AppProtocol::Mysql | AppProtocol::Postgres | AppProtocol::Redis) => {
            if server {
                return None; // databases get no server spans; nothing to say
            }
            RedKeyRef {
                metric: RedMetric::DbClient,
                service,
                op1: p.db_system().unwrap_or(""),
                op2: match &v.operation {
                    Some(Operation::Db { operation, .. }) => operation.as_deref().unwrap_or(""),
                    Some(Operation::Redis { command }) => command,
                    _ => "",
                },
                code: None,
            }
        }
    })
}

/// The series, at most `max_series` of them; observations of new label
/// sets past the cap go to one overflow series per metric (exported with
/// `otel.metric.overflow=true`, the OpenTelemetry SDKs' convention) and are
/// counted.
#[derive(Clone, Debug)]
pub struct Red {
    max_series: usize,
    series: HashMap<RedKey, FixedHist>,
    overflow: HashMap<RedMetric, FixedHist>,
    overflowed: u64,
}

impl Red {
    pub fn new(max_series: usize) -> Self {
        Red {
            max_series,
            series: HashMap::new(),
            overflow: HashMap::new(),
            overflowed: 0,
        }
    }

    pub fn record(&mut self, span: &Span) {
        let Some(key) = key_of(span) else { return };
        let ns = span.duration_nanos();
        if let Some(h) = self.series.get_mut(&key) {
            h.record_ns(ns);
        } else if self.series.len() < self.max_series {
            let mut h = FixedHist::new(SEMCONV_BOUNDS);
            h.record_ns(ns);
            self.series.insert(key.to_owned(), h);
        } else {
            self.overflowed += 1;
            self.overflow
                .entry(key.metric)
                .or_insert_with(|| FixedHist::new(SEMCONV_BOUNDS))
                .record_ns(ns);
        }
    }

    /// Every series, sorted by key.
    pub fn series(&self) -> Vec<(&RedKey, &FixedHist)> {
        let mut v: Vec<_> = self.series.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// The overflow series, by metric.
    pub fn overflow(&self) -> Vec<(RedMetric, &FixedHist)> {
        let mut v: Vec<_> = self.overflow.iter().map(|(m, h)| (*m, h)).collect();
        v.sort_by_key(|x| x.0);
        v
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Observations that went to an overflow series.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }
}
