//! Jaeger's legacy collector endpoint: `POST /api/traces` with a
//! `jaeger.thrift` `Batch` in the Thrift binary protocol
//! (`application/x-thrift`). (Current Jaeger ingests OTLP; `--exporter
//! jaeger` uses [`crate::otlp::OtlpGrpcExporter`] for that.)
//!
//! Mapping (as Jaeger's own OTLP translator does):
//! - one `Batch` (one HTTP request) per resource; `Process.serviceName` is
//!   the service name, `Process.tags` the other resource attributes plus
//!   `telemetry.sdk.*` and `host.name`;
//! - `traceIdHigh`/`traceIdLow` the two halves of the trace id,
//!   `parentSpanId` 0 for a root; links become `FOLLOWS_FROM` references
//!   (their attributes are lost);
//! - `startTime`/`duration` in microseconds; `flags` 1 (sampled);
//! - tags: span attributes with their types (string, long, bool, double),
//!   `span.kind` (`server`/`client`), `otel.status_code` when set,
//!   `otel.status_description` with the message, `error=true` on ERROR,
//!   `otel.scope.name`/`otel.scope.version`.
//!
//! A batch with several resources is several requests; when a later one
//! fails, a retry sends the earlier ones again (Jaeger stores duplicates).

pub mod thrift;

use crate::common::{
    duration_micros, group_by_resource, nanos_to_micros, resource_attributes, SCOPE_NAME,
    SCOPE_VERSION,
};
use crate::http::HttpSender;
use crate::{ConfigError, ExportError, SpanExporter};
use span_core::{AttrValue, Resource, Span, SpanKind, StatusCode};
use std::time::Duration;
use thrift::{TType, Writer};

const TAG_STRING: i32 = 0;
const TAG_DOUBLE: i32 = 1;
const TAG_BOOL: i32 = 2;
const TAG_LONG: i32 = 3;
const REF_FOLLOWS_FROM: i32 = 1;

fn write_tag(w: &mut Writer<'_>, key: &str, v: &AttrValue) {
    w.field_string(1, key);
    match v {
        AttrValue::Str(s) => {
            w.field_i32(2, TAG_STRING);
            w.field_string(3, s);
        }
        AttrValue::Double(d) => {
            w.field_i32(2, TAG_DOUBLE);
            w.field(TType::Double, 4);
            w.double(*d);
        }
        AttrValue::Bool(b) => {
            w.field_i32(2, TAG_BOOL);
            w.field(TType::Bool, 5);
            w.bool(*b);
        }
        AttrValue::Int(i) => {
            w.field_i32(2, TAG_LONG);
            w.field_i64(6, *i);
        }
    }
    w.stop();
}

fn write_tags(w: &mut Writer<'_>, id: i16, tags: &[(&str, AttrValue)]) {
    w.field(TType::List, id);
    w.list(TType::Struct, tags.len());
    for (k, v) in tags {
        write_tag(w, k, v);
    }
}

/// Tags zt-trace adds to every span, after its attributes.
fn extra_tags(span: &Span) -> Vec<(&'static str, AttrValue)> {
    let kind = match span.kind {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
    };
    let mut tags = Vec::with_capacity(6);
    tags.push(("span.kind", AttrValue::Str(kind.into())));
    match span.status.code {
        StatusCode::Unset => {}
        StatusCode::Ok => tags.push(("otel.status_code", AttrValue::Str("OK".into()))),
        StatusCode::Error => {
            tags.push(("otel.status_code", AttrValue::Str("ERROR".into())));
            tags.push(("error", AttrValue::Bool(true)));
            if let Some(msg) = &span.status.message {
                tags.push((
                    "otel.status_description",
                    AttrValue::Str(msg.clone().into()),
                ));
            }
        }
    }
    tags.push(("otel.scope.name", AttrValue::Str(SCOPE_NAME.into())));
    tags.push(("otel.scope.version", AttrValue::Str(SCOPE_VERSION.into())));
    tags
}

fn write_span(w: &mut Writer<'_>, span: &Span) {
    let tid = span.trace_id.0;
    w.field_i64(1, tid as u64 as i64); // traceIdLow
    w.field_i64(2, (tid >> 64) as u64 as i64); // traceIdHigh
    w.field_i64(3, span.span_id.0 as i64);
    w.field_i64(4, span.parent_span_id.map_or(0, |p| p.0 as i64));
    w.field_string(5, &span.name);
    if !span.links.is_empty() {
        w.field(TType::List, 6);
        w.list(TType::Struct, span.links.len());
        for l in &span.links {
            w.field_i32(1, REF_FOLLOWS_FROM);
            w.field_i64(2, l.trace_id.0 as u64 as i64);
            w.field_i64(3, (l.trace_id.0 >> 64) as u64 as i64);
            w.field_i64(4, l.span_id.0 as i64);
            w.stop();
        }
    }
    w.field_i32(7, 1); // flags: sampled
    w.field_i64(8, nanos_to_micros(span.start_unix_nanos) as i64);
    w.field_i64(9, duration_micros(span) as i64);
    let extra = extra_tags(span);
    w.field(TType::List, 10);
    w.list(TType::Struct, span.attributes.len() + extra.len());
    for kv in span.attributes.iter() {
        write_tag(w, &kv.key, &kv.value);
    }
    for (k, v) in &extra {
        write_tag(w, k, v);
    }
    w.stop();
}

/// Encode one `jaeger.thrift` `Batch` (Thrift binary protocol) for spans
/// sharing `resource`, appending to `out`.
pub fn encode_batch(resource: &Resource, spans: &[&Span], out: &mut Vec<u8>) {
    let mut w = Writer::new(out);
    // 1: Process process
    w.field(TType::Struct, 1);
    w.field_string(1, &resource.service_name);
    let tags: Vec<(&str, AttrValue)> = resource_attributes(resource)
        .into_iter()
        .filter(|(k, _)| *k != "service.name")
        .collect();
    write_tags(&mut w, 2, &tags);
    w.stop();
    // 2: list<Span> spans
    w.field(TType::List, 2);
    w.list(TType::Struct, spans.len());
    for span in spans {
        write_span(&mut w, span);
    }
    w.stop();
}

/// Encode a whole batch: one Thrift `Batch` per resource.
pub fn encode_batches(batch: &[Span]) -> Vec<Vec<u8>> {
    group_by_resource(batch)
        .into_iter()
        .map(|(res, spans)| {
            let mut out = Vec::with_capacity(256 * spans.len());
            encode_batch(res, &spans, &mut out);
            out
        })
        .collect()
}

/// Sends batches to a Jaeger collector's `/api/traces` Thrift endpoint.
pub struct JaegerThriftExporter {
    sender: HttpSender,
    buf: Vec<u8>,
    shut_down: bool,
}

impl JaegerThriftExporter {
    /// `endpoint` is the full URL, e.g. `http://localhost:14268/api/traces`.
    pub fn new(
        endpoint: &str,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        Ok(JaegerThriftExporter {
            sender: HttpSender::new(endpoint, headers, timeout)?,
            buf: Vec::new(),
            shut_down: false,
        })
    }

    /// The URL spans are posted to.
    pub fn endpoint(&self) -> &str {
        self.sender.url()
    }
}

impl SpanExporter for JaegerThriftExporter {
    fn export(&mut self, batch: &[Span]) -> Result<(), ExportError> {
        if self.shut_down {
            return Err(ExportError::Shutdown);
        }
        for (res, spans) in group_by_resource(batch) {
            self.buf.clear();
            encode_batch(res, &spans, &mut self.buf);
            self.sender.post("application/x-thrift", false, &self.buf)?;
        }
        Ok(())
    }

    fn force_flush(&mut self) -> Result<(), ExportError> {
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), ExportError> {
        self.shut_down = true;
        Ok(())
    }

    fn name(&self) -> &str {
        "jaeger-thrift"
    }
}
