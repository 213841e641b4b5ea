//! Span -> OTLP protobuf messages.

use crate::common::{group_by_resource, resource_attributes, SCOPE_NAME, SCOPE_VERSION};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use span_core::{AttrValue, Attributes, SpanKind, StatusCode};

fn any_value(v: &AttrValue) -> AnyValue {
    AnyValue {
        value: Some(match v {
            AttrValue::Str(s) => any_value::Value::StringValue(s.to_string()),
            AttrValue::Int(i) => any_value::Value::IntValue(*i),
            AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
            AttrValue::Double(d) => any_value::Value::DoubleValue(*d),
        }),
    }
}

fn kv(key: &str, v: &AttrValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(any_value(v)),
        ..Default::default()
    }
}

fn attributes(attrs: &Attributes) -> Vec<KeyValue> {
    attrs.iter().map(|a| kv(&a.key, &a.value)).collect()
}

/// OTLP span kind number.
pub(crate) fn kind_number(kind: SpanKind) -> i32 {
    match kind {
        SpanKind::Server => span::SpanKind::Server as i32,
        SpanKind::Client => span::SpanKind::Client as i32,
    }
}

/// OTLP status code number.
pub(crate) fn status_number(code: StatusCode) -> i32 {
    match code {
        StatusCode::Unset => 0,
        StatusCode::Ok => 1,
        StatusCode::Error => 2,
    }
}

fn convert_span(s: &span_core::Span) -> Span {
    Span {
        trace_id: s.trace_id.to_bytes().to_vec(),
        span_id: s.span_id.to_bytes().to_vec(),
        parent_span_id: s
            .parent_span_id
            .map(|p| p.to_bytes().to_vec())
            .unwrap_or_default(),
        flags: super::SPAN_FLAGS,
        name: s.name.clone(),
        kind: kind_number(s.kind),
        start_time_unix_nano: s.start_unix_nanos,
        end_time_unix_nano: s.end_unix_nanos,
        attributes: attributes(&s.attributes),
        links: s
            .links
            .iter()
            .map(|l| span::Link {
                trace_id: l.trace_id.to_bytes().to_vec(),
                span_id: l.span_id.to_bytes().to_vec(),
                attributes: attributes(&l.attributes),
                flags: super::SPAN_FLAGS,
                ..Default::default()
            })
            .collect(),
        status: Some(Status {
            code: status_number(s.status.code),
            message: s.status.message.clone().unwrap_or_default(),
        }),
        ..Default::default()
    }
}

/// Build the OTLP `ExportTraceServiceRequest` for a batch: one
/// `ResourceSpans` per distinct resource, in order of first appearance.
pub fn to_request(batch: &[span_core::Span]) -> ExportTraceServiceRequest {
    let resource_spans = group_by_resource(batch)
        .into_iter()
        .map(|(res, spans)| ResourceSpans {
            resource: Some(Resource {
                attributes: resource_attributes(res)
                    .iter()
                    .map(|(k, v)| kv(k, v))
                    .collect(),
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.to_owned(),
                    version: SCOPE_VERSION.to_owned(),
                    ..Default::default()
                }),
                spans: spans.into_iter().map(convert_span).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// Encode a batch as a binary OTLP `ExportTraceServiceRequest`, appending to
/// `out`.
///
/// Writes the bytes directly (see `wire.rs`); they are identical to
/// prost's encoding of [`to_request`].
pub fn encode_protobuf(batch: &[span_core::Span], out: &mut Vec<u8>) {
    super::wire::encode(batch, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;
    use prost::Message;

    #[test]
    fn groups_resources_and_maps_fields() {
        let spans = samples::trace(0xfeed, 0x100);
        let req = to_request(&spans);
        assert_eq!(req.resource_spans.len(), 2);
        let rs = &req.resource_spans[0];
        let res_attrs = &rs.resource.as_ref().unwrap().attributes;
        assert_eq!(res_attrs[0].key, "service.name");
        assert_eq!(
            res_attrs[0].value.as_ref().unwrap().value,
            Some(any_value::Value::StringValue("frontend".into()))
        );
        assert!(res_attrs.iter().any(|k| k.key == "telemetry.sdk.name"));
        let ss = &rs.scope_spans[0];
        assert_eq!(ss.scope.as_ref().unwrap().name, "zt-trace");
        assert_eq!(ss.spans.len(), 2);
        let root = &ss.spans[0];
        assert_eq!(root.kind, 2);
        assert!(root.parent_span_id.is_empty());
        assert_eq!(root.trace_id.len(), 16);
        assert_eq!(root.trace_id[15], 0xed);
        assert_eq!(root.span_id, 0x100u64.to_be_bytes());
        let call = &ss.spans[1];
        assert_eq!(call.kind, 3);
        assert_eq!(call.parent_span_id, 0x100u64.to_be_bytes());
        assert_eq!(call.status.as_ref().unwrap().code, 2);
        assert_eq!(call.links.len(), 1);
        assert_eq!(call.start_time_unix_nano, spans[1].start_unix_nanos);

        let mut buf = Vec::new();
        encode_protobuf(&spans, &mut buf);
        let back = ExportTraceServiceRequest::decode(&buf[..]).unwrap();
        assert_eq!(back, req);
    }
}
