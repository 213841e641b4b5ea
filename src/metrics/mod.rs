//! Metrics: the service graph, RED per service and operation, and the
//! agent's own health, as one list of [`MetricFamily`]s that two encoders
//! share: the Prometheus text exposition served at `/metrics`
//! ([`encode_prometheus`], [`MetricsServer`]) and OTLP metrics
//! ([`exporters::otlp`]).
//!
//! Families:
//! - the service graph with the names and labels of Tempo, Beyla/OBI and
//!   the OpenTelemetry servicegraph connector:
//!   `traces_service_graph_request_total` and `..._failed_total`
//!   `{client, server, connection_type}`, histograms
//!   `traces_service_graph_request_server_seconds` and `..._client_seconds`
//!   (edges of several protocols between the same two nodes are summed:
//!   these label sets carry no protocol);
//! - RED per service and operation, OpenTelemetry semantic conventions:
//!   `http.server.request.duration` / `http.client.request.duration`
//!   (`http_server_request_duration_seconds{service_name,
//!   http_request_method, http_route, http_response_status_code}`),
//!   `rpc.server.call.duration` / `rpc.client.call.duration`
//!   (`{service_name, rpc_system_name, rpc_method,
//!   rpc_response_status_code}`), `db.client.operation.duration`
//!   (`{service_name, db_system_name, db_operation_name}`); label sets past
//!   the cap go to one series per metric labelled
//!   `otel_metric_overflow="true"`;
//! - every counter and gauge of the stats registry ([`crate::stats::defs`]),
//!   with its own name, help and label.

pub(crate) mod export;
mod http;
mod prom;

pub use http::{parse_listen_addr, MetricsServer};
pub use prom::{encode_prometheus, CONTENT_TYPE};

use crate::stages::graph::hist::FixedHist;
use crate::stages::graph::red::RedMetric;
use crate::stages::graph::{connection_type, GraphStage};
use crate::stats::{MetricKind as StatKind, StatsSnapshot};
use exporters::metrics::{HistogramPoint, MetricFamily, MetricKind, MetricPoint, PointValue};
use std::borrow::Cow;
use std::collections::BTreeMap;

fn hist_point(labels: Vec<(&'static str, String)>, h: &FixedHist) -> MetricPoint {
    MetricPoint {
        labels,
        value: PointValue::Histogram(HistogramPoint {
            bounds: h.bounds,
            counts: h.counts.to_vec(),
            sum: h.sum_s,
            count: h.count,
        }),
    }
}

fn family(
    otel: &'static str,
    prom: &'static str,
    help: &'static str,
    unit: &'static str,
    kind: MetricKind,
) -> MetricFamily {
    MetricFamily {
        otel_name: Cow::Borrowed(otel),
        prom_name: Cow::Borrowed(prom),
        help: Cow::Borrowed(help),
        unit,
        kind,
        points: Vec::new(),
    }
}

/// Add `b` into `a` (same bounds).
fn merge_hist(a: &mut FixedHist, b: &FixedHist) {
    for (x, y) in a.counts.iter_mut().zip(b.counts.iter()) {
        *x += y;
    }
    a.sum_s += b.sum_s;
    a.count += b.count;
}

/// The service graph and RED families of `graph`.
pub fn graph_families(graph: &GraphStage) -> Vec<MetricFamily> {
    // (client, server, connection_type) -> totals over protocols.
    struct Agg {
        requests: u64,
        errors: u64,
        server: FixedHist,
        client: FixedHist,
    }
    let mut edges: BTreeMap<(&str, &str, &'static str), Agg> = BTreeMap::new();
    for e in graph.edge_metrics() {
        let key = (
            e.client,
            e.server,
            connection_type(e.client_kind, e.server_kind),
        );
        match edges.get_mut(&key) {
            Some(a) => {
                a.requests += e.requests;
                a.errors += e.errors;
                merge_hist(&mut a.server, e.server_seconds);
                merge_hist(&mut a.client, e.client_seconds);
            }
            None => {
                edges.insert(
                    key,
                    Agg {
                        requests: e.requests,
                        errors: e.errors,
                        server: e.server_seconds.clone(),
                        client: e.client_seconds.clone(),
                    },
                );
            }
        }
    }
    let mut total = family(
        "traces_service_graph_request_total",
        "traces_service_graph_request",
        "Requests between two nodes of the service graph (one per request: a client span whose server span was seen counts once).",
        "1",
        MetricKind::Counter,
    );
    let mut failed = family(
        "traces_service_graph_request_failed_total",
        "traces_service_graph_request_failed",
        "Requests between two nodes that failed (either end's span has status ERROR).",
        "1",
        MetricKind::Counter,
    );
    let mut server = family(
        "traces_service_graph_request_server_seconds",
        "traces_service_graph_request_server_seconds",
        "Request duration as the server saw it (server spans).",
        "s",
        MetricKind::Histogram,
    );
    let mut client = family(
        "traces_service_graph_request_client_seconds",
        "traces_service_graph_request_client_seconds",
        "Request duration as the client saw it (client spans).",
        "s",
        MetricKind::Histogram,
    );
    for ((c, s, ct), a) in &edges {
        let labels = || {
            vec![
                ("client", (*c).to_owned()),
                ("server", (*s).to_owned()),
                ("connection_type", (*ct).to_owned()),
            ]
        };
        total.points.push(MetricPoint {
            labels: labels(),
            value: PointValue::Number(a.requests as f64),
        });
        failed.points.push(MetricPoint {
            labels: labels(),
            value: PointValue::Number(a.errors as f64),
        });
        if a.server.count > 0 {
            server.points.push(hist_point(labels(), &a.server));
        }
        if a.client.count > 0 {
            client.points.push(hist_point(labels(), &a.client));
        }
    }
    let mut out = vec![total, failed, server, client];
    let red = graph.red();
    for metric in RedMetric::ALL {
        let prom = match metric {
            RedMetric::HttpServer => "http_server_request_duration_seconds",
            RedMetric::HttpClient => "http_client_request_duration_seconds",
            RedMetric::RpcServer => "rpc_server_call_duration_seconds",
            RedMetric::RpcClient => "rpc_client_call_duration_seconds",
            RedMetric::DbClient => "db_client_operation_duration_seconds",
        };
        let mut f = family(
            metric.otel_name(),
            prom,
            metric.help(),
            "s",
            MetricKind::Histogram,
        );
        let keys = metric.label_keys();
        for (k, h) in red.series().into_iter().filter(|(k, _)| k.metric == metric) {
            let mut labels = vec![("service.name", k.service.clone())];
            for (key, v) in keys.iter().zip(k.labels()) {
                if !key.is_empty() {
                    labels.push((key, v));
                }
            }
            f.points.push(hist_point(labels, h));
        }
        for (m, h) in red.overflow() {
            if m == metric {
                f.points
                    .push(hist_point(vec![("otel.metric.overflow", "true".into())], h));
            }
        }
        out.push(f);
    }
    out
}

/// The stats registry's counters and gauges.
pub fn stats_families(stats: &StatsSnapshot) -> Vec<MetricFamily> {
    let mut out: Vec<MetricFamily> = Vec::new();
    for s in &stats.samples {
        let d = s.def;
        if out.last().is_none_or(|f| f.otel_name != d.name) {
            let (kind, prom) = match d.kind {
                StatKind::Counter => (
                    MetricKind::Counter,
                    d.name.strip_suffix("_total").unwrap_or(d.name),
                ),
                StatKind::Gauge => (MetricKind::Gauge, d.name),
            };
            let unit = if d.name.ends_with("_seconds") || d.name.ends_with("_seconds_total") {
                "s"
            } else if d.name.ends_with("_bytes") || d.name.ends_with("_bytes_total") {
                "By"
            } else {
                "1"
            };
            out.push(family(d.name, prom, d.help, unit, kind));
        }
        let labels = match (d.label, &s.label) {
            (Some(key), Some(v)) => vec![(key, v.to_string())],
            _ => Vec::new(),
        };
        if let Some(f) = out.last_mut() {
            // A label value reported twice (never expected) keeps the last.
            if let Some(p) = f.points.iter_mut().find(|p| p.labels == labels) {
                p.value = PointValue::Number(s.value);
            } else {
                f.points.push(MetricPoint {
                    labels,
                    value: PointValue::Number(s.value),
                });
            }
        }
    }
    out
}

/// Every family: the graph's (when there is one), then the agent's.
pub fn families(graph: Option<&GraphStage>, stats: &StatsSnapshot) -> Vec<MetricFamily> {
    let mut out = graph.map(graph_families).unwrap_or_default();
    out.extend(stats_families(stats));
    out
}

#[cfg(test)]
mod tests;
