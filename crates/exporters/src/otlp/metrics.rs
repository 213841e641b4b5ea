//! OTLP metrics: [`MetricFamily`]s -> `ExportMetricsServiceRequest`, sent
//! over gRPC (`MetricsService/Export`) or HTTP (`POST /v1/metrics`,
//! protobuf).
//!
//! Mapping: counters are cumulative monotonic `Sum`s, gauges `Gauge`s,
//! histograms cumulative explicit-bounds `Histogram`s; integral values go
//! as `as_int`. Points labelled `service.name` (the per-service RED
//! metrics) go in a `ResourceMetrics` of that service, the label becoming
//! the resource attribute, as an instrumented service would report them;
//! every other point (service graph, agent health) goes in the agent's own
//! resource, `service.name=zt-trace`. One scope, `zt-trace`.

use super::grpc::{OtlpGrpcConfig, OtlpGrpcExporter};
use crate::common::{hostname, SCOPE_NAME, SCOPE_VERSION, SDK_LANGUAGE, SDK_NAME, SDK_VERSION};
use crate::http::HttpSender;
use crate::metrics::{MetricFamily, MetricKind, MetricsExporter, PointValue};
use crate::{ConfigError, ExportError};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use std::collections::BTreeMap;
use std::time::Duration;

/// `service.name` of the agent's own metrics.
pub const AGENT_SERVICE: &str = "zt-trace";

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

fn resource(service: &str) -> Resource {
    let mut attributes = vec![
        kv("service.name", service),
        kv("telemetry.sdk.name", SDK_NAME),
        kv("telemetry.sdk.language", SDK_LANGUAGE),
        kv("telemetry.sdk.version", SDK_VERSION),
    ];
    if let Some(h) = hostname() {
        attributes.push(kv("host.name", h));
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

fn number(v: f64) -> number_data_point::Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        number_data_point::Value::AsInt(v as i64)
    } else {
        number_data_point::Value::AsDouble(v)
    }
}

/// The request for `families`, cumulative since `start` as of `now` (Unix
/// nanoseconds).
pub fn metrics_request(
    families: &[MetricFamily],
    start: u64,
    now: u64,
) -> ExportMetricsServiceRequest {
    // service -> metric index -> Metric
    let mut by_service: BTreeMap<&str, Vec<Metric>> = BTreeMap::new();
    for f in families {
        for p in &f.points {
            let service = p
                .labels
                .iter()
                .find(|(k, _)| *k == "service.name")
                .map_or(AGENT_SERVICE, |(_, v)| v.as_str());
            let attributes: Vec<KeyValue> = p
                .labels
                .iter()
                .filter(|(k, _)| *k != "service.name")
                .map(|(k, v)| kv(k, v))
                .collect();
            let metrics = by_service.entry(service).or_default();
            if metrics.last().is_none_or(|m| m.name != f.otel_name) {
                let data = match f.kind {
                    MetricKind::Counter => metric::Data::Sum(Sum {
                        data_points: Vec::new(),
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    }),
                    MetricKind::Gauge => metric::Data::Gauge(Gauge {
                        data_points: Vec::new(),
                    }),
                    MetricKind::Histogram => metric::Data::Histogram(Histogram {
                        data_points: Vec::new(),
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    }),
                };
                metrics.push(Metric {
                    name: f.otel_name.to_string(),
                    description: f.help.to_string(),
                    unit: f.unit.to_owned(),
                    data: Some(data),
                    ..Default::default()
                });
            }
            let Some(m) = metrics.last_mut() else {
                continue;
            };
            match (&mut m.data, &p.value) {
                (
                    Some(metric::Data::Sum(Sum { data_points, .. }))
                    | Some(metric::Data::Gauge(Gauge { data_points })),
                    PointValue::Number(v),
                ) => data_points.push(NumberDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: now,
                    value: Some(number(*v)),
                    ..Default::default()
                }),
                (Some(metric::Data::Histogram(h)), PointValue::Histogram(x)) => {
                    h.data_points.push(HistogramDataPoint {
                        attributes,
                        start_time_unix_nano: start,
                        time_unix_nano: now,
                        count: x.count,
                        sum: Some(x.sum),
                        bucket_counts: x.counts.clone(),
                        explicit_bounds: x.bounds.to_vec(),
                        ..Default::default()
                    })
                }
                _ => {} // a point of another kind than its family: skipped
            }
        }
    }
    ExportMetricsServiceRequest {
        resource_metrics: by_service
            .into_iter()
            .map(|(service, metrics)| ResourceMetrics {
                resource: Some(resource(service)),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: SCOPE_NAME.to_owned(),
                        version: SCOPE_VERSION.to_owned(),
                        ..Default::default()
                    }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

enum Transport {
    Grpc(Box<OtlpGrpcExporter>),
    Http { sender: HttpSender, gzip: bool },
}

/// Sends metric families as OTLP metrics.
pub struct OtlpMetricsExporter {
    name: String,
    transport: Transport,
}

impl OtlpMetricsExporter {
    /// Over gRPC, to the same endpoint as the traces.
    pub fn grpc(config: OtlpGrpcConfig) -> Result<Self, ConfigError> {
        Ok(OtlpMetricsExporter {
            name: "otlp-grpc metrics".into(),
            transport: Transport::Grpc(Box::new(OtlpGrpcExporter::new(config)?)),
        })
    }

    /// Over HTTP (protobuf), POSTed to `endpoint` (`.../v1/metrics`).
    pub fn http(
        endpoint: &str,
        headers: &[(String, String)],
        gzip: bool,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        Ok(OtlpMetricsExporter {
            name: "otlp-http metrics".into(),
            transport: Transport::Http {
                sender: HttpSender::new(endpoint, headers, timeout)?,
                gzip,
            },
        })
    }

    /// Where metrics go.
    pub fn endpoint(&self) -> &str {
        match &self.transport {
            Transport::Grpc(g) => g.endpoint(),
            Transport::Http { sender, .. } => sender.url(),
        }
    }
}

impl MetricsExporter for OtlpMetricsExporter {
    fn export_metrics(
        &mut self,
        families: &[MetricFamily],
        start_unix_nanos: u64,
        now_unix_nanos: u64,
    ) -> Result<(), ExportError> {
        let body = metrics_request(families, start_unix_nanos, now_unix_nanos).encode_to_vec();
        let (rejected, message) = match &mut self.transport {
            Transport::Grpc(g) => g.call(EXPORT_PATH, body)?,
            Transport::Http { sender, gzip } => {
                let resp = sender.post("application/x-protobuf", *gzip, &body)?;
                opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse::decode(
                    resp.body.as_slice(),
                )
                .ok()
                .and_then(|r| r.partial_success)
                .map(|p| (p.rejected_data_points, p.error_message))
                .unwrap_or_default()
            }
        };
        if rejected > 0 {
            return Err(ExportError::PartialSuccess {
                rejected: rejected as u64,
                message,
            });
        }
        Ok(())
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{HistogramPoint, MetricPoint};
    use std::borrow::Cow;

    #[test]
    fn services_become_resources_and_kinds_map() {
        let fam = |name: &'static str, kind, points| MetricFamily {
            otel_name: Cow::Borrowed(name),
            prom_name: Cow::Borrowed(name),
            help: Cow::Borrowed("h"),
            unit: "s",
            kind,
            points,
        };
        let families = vec![
            fam(
                "traces_service_graph_request_total",
                MetricKind::Counter,
                vec![MetricPoint {
                    labels: vec![("client", "a".into()), ("server", "b".into())],
                    value: PointValue::Number(3.0),
                }],
            ),
            fam(
                "http.server.request.duration",
                MetricKind::Histogram,
                vec![MetricPoint {
                    labels: vec![("service.name", "b".into()), ("http.route", "/x".into())],
                    value: PointValue::Histogram(HistogramPoint {
                        bounds: &[0.1, 1.0],
                        counts: vec![1, 2, 0],
                        sum: 1.5,
                        count: 3,
                    }),
                }],
            ),
            fam(
                "zt_uptime_seconds",
                MetricKind::Gauge,
                vec![MetricPoint {
                    labels: vec![],
                    value: PointValue::Number(2.5),
                }],
            ),
        ];
        let req = metrics_request(&families, 10, 20);
        assert_eq!(req.resource_metrics.len(), 2);
        let svc = |r: &ResourceMetrics| {
            r.resource.as_ref().unwrap().attributes[0]
                .value
                .as_ref()
                .unwrap()
                .value
                .clone()
        };
        assert_eq!(
            svc(&req.resource_metrics[0]),
            Some(any_value::Value::StringValue("b".into()))
        );
        let b = &req.resource_metrics[0].scope_metrics[0].metrics[0];
        let Some(metric::Data::Histogram(h)) = &b.data else {
            panic!("{b:?}")
        };
        assert_eq!(h.data_points[0].bucket_counts, vec![1, 2, 0]);
        assert_eq!(
            h.data_points[0].attributes.len(),
            1,
            "service.name is the resource"
        );
        let agent = &req.resource_metrics[1].scope_metrics[0].metrics;
        let Some(metric::Data::Sum(s)) = &agent[0].data else {
            panic!()
        };
        assert!(s.is_monotonic);
        assert_eq!(
            s.data_points[0].value,
            Some(number_data_point::Value::AsInt(3))
        );
        assert_eq!(s.data_points[0].start_time_unix_nano, 10);
        let Some(metric::Data::Gauge(g)) = &agent[1].data else {
            panic!()
        };
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsDouble(2.5))
        );
    }
}
