//! Property tests: every encoder accepts any span (any strings, ids, times,
//! doubles incl. NaN) without panicking, and its output decodes back:
//! OTLP protobuf round-trips through prost, OTLP/JSON, Zipkin JSON and JSON
//! lines parse with the right ids, and each Jaeger Thrift batch is a
//! well-formed Thrift binary struct that a generic reader consumes exactly.

use exporters::jaeger::encode_batches;
use exporters::jsonl::encode_jsonl;
use exporters::otlp::{encode_json, encode_protobuf, to_request};
use exporters::span_to_json;
use exporters::zipkin::encode_zipkin_json;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use proptest::prelude::*;
use prost::Message;
use span_core::{
    AttrValue, Attributes, Resource, Span, SpanId, SpanKind, SpanLink, Status, StatusCode, TraceId,
};
use std::sync::Arc;

fn attr_value() -> impl Strategy<Value = AttrValue> {
    prop_oneof![
        ".{0,20}".prop_map(AttrValue::from),
        any::<i64>().prop_map(AttrValue::Int),
        any::<bool>().prop_map(AttrValue::Bool),
        prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY)].prop_map(AttrValue::Double),
    ]
}

fn attributes() -> impl Strategy<Value = Attributes> {
    prop::collection::vec((".{0,12}", attr_value()), 0..6).prop_map(|kvs| {
        let mut a = Attributes::new();
        for (k, v) in kvs {
            a.set(k, v);
        }
        a
    })
}

fn resource() -> impl Strategy<Value = Arc<Resource>> {
    (".{0,10}", attributes()).prop_map(|(service_name, attributes)| {
        Arc::new(Resource {
            service_name,
            attributes,
        })
    })
}

fn span(resources: Vec<Arc<Resource>>) -> impl Strategy<Value = Span> {
    (
        1u128..,
        1u64..,
        prop::option::of(1u64..),
        ".{0,30}",
        any::<bool>(),
        any::<u64>(),
        any::<u64>(),
        (0u8..3, prop::option::of(".{0,20}")),
        attributes(),
        prop::collection::vec((1u128.., 1u64.., attributes()), 0..3),
        0..resources.len(),
    )
        .prop_map(
            move |(t, s, p, name, server, start, end, (code, msg), attrs, links, r)| Span {
                trace_id: TraceId(t),
                span_id: SpanId(s),
                parent_span_id: p.map(SpanId),
                name,
                kind: if server {
                    SpanKind::Server
                } else {
                    SpanKind::Client
                },
                start_unix_nanos: start,
                end_unix_nanos: end,
                status: Status {
                    code: [StatusCode::Unset, StatusCode::Ok, StatusCode::Error][code as usize],
                    message: msg,
                },
                attributes: attrs,
                links: links
                    .into_iter()
                    .map(|(t, s, attributes)| SpanLink {
                        trace_id: TraceId(t),
                        span_id: SpanId(s),
                        attributes,
                    })
                    .collect(),
                resource: resources[r].clone(),
                view: Default::default(),
            },
        )
}

fn batch() -> impl Strategy<Value = Vec<Span>> {
    prop::collection::vec(resource(), 1..4)
        .prop_flat_map(|res| prop::collection::vec(span(res), 0..8))
}

/// A generic Thrift binary-protocol reader: skips one value of type `ty`.
fn skip(buf: &[u8], pos: &mut usize, ty: u8, depth: u32) -> Result<(), String> {
    fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], String> {
        let end = pos.checked_add(n).ok_or("overflow")?;
        let s = buf
            .get(*pos..end)
            .ok_or_else(|| format!("short read at {pos}"))?;
        *pos = end;
        Ok(s)
    }
    fn i32_at(buf: &[u8], pos: &mut usize) -> Result<i32, String> {
        Ok(i32::from_be_bytes(take(buf, pos, 4)?.try_into().unwrap()))
    }
    if depth > 16 {
        return Err("too deep".into());
    }
    match ty {
        2 | 3 => take(buf, pos, 1).map(|_| ()),
        4 | 10 => take(buf, pos, 8).map(|_| ()),
        6 => take(buf, pos, 2).map(|_| ()),
        8 => take(buf, pos, 4).map(|_| ()),
        11 => {
            let n = i32_at(buf, pos)?;
            let s = take(buf, pos, usize::try_from(n).map_err(|_| "negative length")?)?;
            std::str::from_utf8(s).map_err(|e| e.to_string())?;
            Ok(())
        }
        12 => loop {
            let t = take(buf, pos, 1)?[0];
            if t == 0 {
                return Ok(());
            }
            take(buf, pos, 2)?;
            skip(buf, pos, t, depth + 1)?;
        },
        14 | 15 => {
            let et = take(buf, pos, 1)?[0];
            let n = i32_at(buf, pos)?;
            for _ in 0..n {
                skip(buf, pos, et, depth + 1)?;
            }
            Ok(())
        }
        other => Err(format!("bad type {other}")),
    }
}

/// Number of spans in a Thrift `Batch` (field 2, list<struct>).
fn count_spans(buf: &[u8]) -> Result<usize, String> {
    let mut pos = 0;
    let mut spans = None;
    loop {
        let t = *buf.get(pos).ok_or("no stop")?;
        pos += 1;
        if t == 0 {
            break;
        }
        let id = i16::from_be_bytes(buf[pos..pos + 2].try_into().unwrap());
        pos += 2;
        if id == 2 && t == 15 {
            assert_eq!(buf[pos], 12);
            spans = Some(i32::from_be_bytes(buf[pos + 1..pos + 5].try_into().unwrap()) as usize);
        }
        skip(buf, &mut pos, t, 0)?;
    }
    if pos != buf.len() {
        return Err(format!("{} trailing bytes", buf.len() - pos));
    }
    spans.ok_or_else(|| "no spans field".into())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn otlp_protobuf_round_trips(batch in batch()) {
        let mut buf = Vec::new();
        encode_protobuf(&batch, &mut buf);
        let back = ExportTraceServiceRequest::decode(&buf[..]).unwrap();
        let n: usize = back.resource_spans.iter().map(|rs| rs.scope_spans[0].spans.len()).sum();
        prop_assert_eq!(n, batch.len());
        // The direct writer produces exactly prost's bytes.
        prop_assert!(buf == to_request(&batch).encode_to_vec(), "encodings differ");
        // Decoding and re-encoding gives the same bytes (NaN-safe equality).
        prop_assert!(back.encode_to_vec() == buf, "round trip differs");
    }

    #[test]
    fn otlp_json_parses_with_hex_ids(batch in batch()) {
        let mut buf = Vec::new();
        encode_json(&batch, &mut buf).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        let mut ids = Vec::new();
        for rs in v["resourceSpans"].as_array().unwrap() {
            for s in rs["scopeSpans"][0]["spans"].as_array().unwrap() {
                ids.push((
                    u128::from_str_radix(s["traceId"].as_str().unwrap(), 16).unwrap(),
                    u64::from_str_radix(s["spanId"].as_str().unwrap(), 16).unwrap(),
                ));
            }
        }
        let mut want: Vec<_> = batch.iter().map(|s| (s.trace_id.0, s.span_id.0)).collect();
        ids.sort_unstable();
        want.sort_unstable();
        prop_assert_eq!(ids, want);
    }

    #[test]
    fn zipkin_json_is_well_formed(batch in batch()) {
        let mut buf = Vec::new();
        encode_zipkin_json(&batch, &mut buf).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        let spans = v.as_array().unwrap();
        prop_assert_eq!(spans.len(), batch.len());
        for (z, s) in spans.iter().zip(&batch) {
            prop_assert_eq!(z["traceId"].as_str().unwrap(), s.trace_id.to_string());
            prop_assert_eq!(z["id"].as_str().unwrap(), s.span_id.to_string());
            prop_assert!(z["duration"].as_u64().unwrap() >= 1);
            prop_assert_eq!(z["timestamp"].as_u64().unwrap(), s.start_unix_nanos / 1000);
            for (_, tag) in z["tags"].as_object().unwrap() {
                prop_assert!(tag.is_string());
            }
            if let Some(port) = z["remoteEndpoint"].get("port") {
                prop_assert!(port.as_u64().unwrap() > 0);
            }
        }
    }

    #[test]
    fn jaeger_thrift_is_well_formed(batch in batch()) {
        let total: usize = encode_batches(&batch)
            .iter()
            .map(|b| count_spans(b).unwrap())
            .sum();
        prop_assert_eq!(total, batch.len());
    }

    #[test]
    fn jsonl_lines_parse(batch in batch()) {
        let mut out = Vec::new();
        encode_jsonl(&batch, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        prop_assert_eq!(lines.len(), batch.len());
        for (line, s) in lines.iter().zip(&batch) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            // The streaming encoder writes exactly span_to_json's object
            // (both parsed back the same way: serde_json's default float
            // parsing may be off by one ulp, identically for both).
            let reference: serde_json::Value =
                serde_json::from_str(&serde_json::to_string(&span_to_json(s)).unwrap()).unwrap();
            prop_assert_eq!(&v, &reference);
            prop_assert_eq!(v["span_id"].as_str().unwrap(), s.span_id.to_string());
            prop_assert_eq!(v["start_time_unix_nano"].as_u64().unwrap(), s.start_unix_nanos);
        }
    }
}
