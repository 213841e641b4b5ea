//! A small metrics model shared by the Prometheus exposition (in the
//! `zt-trace` runtime) and the OTLP metrics exporter ([`crate::otlp`]):
//! the same families, one encoding each.
//!
//! Names: every family has its OpenTelemetry name (`otel_name`, e.g.
//! `http.server.request.duration`, or the servicegraph connector's
//! `traces_service_graph_request_total`) and its Prometheus name
//! (`prom_name`, without the `_total` a counter gets when encoded, e.g.
//! `http_server_request_duration_seconds`). Label keys are OpenTelemetry
//! attribute keys (`http.request.method`); Prometheus spells them with
//! underscores ([`prom_label`]).

use std::borrow::Cow;

/// How a family's points behave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic cumulative sum.
    Counter,
    /// A current value.
    Gauge,
    /// Explicit-bounds cumulative histogram.
    Histogram,
}

/// One metric and all its points.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricFamily {
    /// OpenTelemetry name.
    pub otel_name: Cow<'static, str>,
    /// Prometheus name (a counter's without `_total`).
    pub prom_name: Cow<'static, str>,
    /// Description.
    pub help: Cow<'static, str>,
    /// UCUM unit for OTLP (`s`, `By`, `1`).
    pub unit: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// One point per label set.
    pub points: Vec<MetricPoint>,
}

/// One label set's value.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricPoint {
    /// (OpenTelemetry attribute key, value).
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: PointValue,
}

/// A number (counter, gauge) or a histogram.
#[derive(Clone, Debug, PartialEq)]
pub enum PointValue {
    /// Counter or gauge value.
    Number(f64),
    /// Histogram buckets.
    Histogram(HistogramPoint),
}

/// An explicit-bounds histogram: `counts[i]` values in
/// `(bounds[i-1], bounds[i]]`, `counts[bounds.len()]` above the last bound
/// (OTLP's layout; Prometheus gets them cumulated).
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramPoint {
    /// Upper bounds, increasing.
    pub bounds: &'static [f64],
    /// `bounds.len() + 1` counts.
    pub counts: Vec<u64>,
    /// Sum of the values.
    pub sum: f64,
    /// Number of values.
    pub count: u64,
}

/// The Prometheus spelling of an OpenTelemetry attribute key
/// (`service.name` -> `service_name`).
pub fn prom_label(key: &str) -> Cow<'_, str> {
    if key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(
            key.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect(),
        )
    }
}

/// Sends metric families somewhere (OTLP). Called from one thread at a
/// time, never from the capture path.
pub trait MetricsExporter: Send {
    /// Export every family; `start_unix_nanos` is when the cumulative
    /// values started, `now_unix_nanos` when they were read.
    fn export_metrics(
        &mut self,
        families: &[MetricFamily],
        start_unix_nanos: u64,
        now_unix_nanos: u64,
    ) -> Result<(), crate::ExportError>;
    /// A short name for logs.
    fn name(&self) -> &str;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_in_prometheus_spelling() {
        assert_eq!(prom_label("service.name"), "service_name");
        assert_eq!(prom_label("client"), "client");
        assert_eq!(
            prom_label("http.response.status_code"),
            "http_response_status_code"
        );
    }
}
