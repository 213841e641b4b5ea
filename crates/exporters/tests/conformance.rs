//! Conformance: a local receiver decodes what the exporters really send,
//! with the official definitions (opentelemetry-proto's Python types, the
//! Zipkin v2 API definition, Jaeger's Thrift IDL types from jaeger-client),
//! and each test asserts ids, parent ids, kinds, timestamp units,
//! attributes and the resource.

mod common;

use common::PyReceiver;
use exporters::{build_with_env, samples, Compression, ExporterKind, ExporterSpec, OtlpProtocol};
use exporters::{Pipeline, PipelineConfig, SpanExporter};
use serde_json::{json, Value};
use span_core::{AttrValue, Span, SpanKind, StatusCode};
use std::collections::HashMap;
use std::time::Duration;

const TRACE: u128 = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736;
const BASE: u64 = 0x00f0_67aa_0ba9_0200;

fn no_env(_: &str) -> Option<String> {
    None
}

fn exporter(
    kind: ExporterKind,
    endpoint: String,
    protocol: Option<OtlpProtocol>,
    gzip: bool,
) -> Box<dyn SpanExporter> {
    let mut spec = ExporterSpec::new(kind);
    spec.endpoint = Some(endpoint);
    spec.protocol = protocol;
    spec.compression = Some(if gzip {
        Compression::Gzip
    } else {
        Compression::None
    });
    spec.headers = vec![("x-zt-test".into(), "conformance".into())];
    spec.timeout = Some(Duration::from_secs(20));
    build_with_env(&spec, &no_env).expect("build exporter")
}

fn by_id(spans: &[Span]) -> HashMap<String, &Span> {
    spans.iter().map(|s| (s.span_id.to_string(), s)).collect()
}

fn otlp_attr(v: &AttrValue) -> Value {
    match v {
        AttrValue::Str(s) => json!(["string_value", s]),
        AttrValue::Int(i) => json!(["int_value", i]),
        AttrValue::Bool(b) => json!(["bool_value", b]),
        AttrValue::Double(d) => json!(["double_value", d]),
    }
}

/// Check a normalised OTLP request (see receiver.py) against `expected`.
fn assert_otlp(req: &Value, expected: &[Span]) {
    let want = by_id(expected);
    let mut seen = 0;
    let rss = req["resource_spans"].as_array().expect("resource_spans");
    assert_eq!(rss.len(), 2, "one ResourceSpans per service");
    for rs in rss {
        let res = &rs["resource"];
        assert!(
            res.get("__duplicates__").is_none(),
            "duplicate resource keys: {res}"
        );
        let service = res["service.name"][1].as_str().expect("service.name");
        assert_eq!(res["service.name"][0], "string_value");
        assert_eq!(res["process.pid"][0], "int_value");
        assert_eq!(res["host.name"], json!(["string_value", "zt-test-host"]));
        assert_eq!(
            res["telemetry.sdk.name"],
            json!(["string_value", "zt-trace"])
        );
        assert_eq!(
            res["telemetry.sdk.language"],
            json!(["string_value", "rust"])
        );
        assert_eq!(
            res["telemetry.sdk.version"],
            json!(["string_value", env!("CARGO_PKG_VERSION")])
        );
        let scopes = rs["scope_spans"].as_array().unwrap();
        assert_eq!(scopes.len(), 1);
        assert_eq!(scopes[0]["scope"]["name"], "zt-trace");
        assert_eq!(scopes[0]["scope"]["version"], env!("CARGO_PKG_VERSION"));
        for s in scopes[0]["spans"].as_array().unwrap() {
            let id = s["span_id"].as_str().unwrap();
            let e = want
                .get(id)
                .unwrap_or_else(|| panic!("unexpected span {id}"));
            seen += 1;
            assert_eq!(service, e.resource.service_name);
            assert_eq!(
                res["process.pid"][1],
                json!(e.resource.attributes.get_int("process.pid").unwrap())
            );
            assert_eq!(s["trace_id"], format!("{TRACE:032x}"));
            assert_eq!(s["trace_id"], e.trace_id.to_string());
            assert_eq!(
                s["parent_span_id"],
                e.parent_span_id.map(|p| p.to_string()).unwrap_or_default()
            );
            assert_eq!(s["name"], e.name.as_str());
            let kind = match e.kind {
                SpanKind::Server => "SPAN_KIND_SERVER",
                SpanKind::Client => "SPAN_KIND_CLIENT",
            };
            assert_eq!(s["kind"], kind);
            // Nanoseconds since the Unix epoch, unchanged.
            assert_eq!(s["start_time_unix_nano"], json!(e.start_unix_nanos));
            assert_eq!(s["end_time_unix_nano"], json!(e.end_unix_nanos));
            assert_eq!(s["flags"], 1);
            let attrs = s["attributes"].as_object().unwrap();
            assert!(attrs.get("__duplicates__").is_none());
            assert_eq!(attrs.len(), e.attributes.len(), "{attrs:?}");
            for kv in e.attributes.iter() {
                assert_eq!(attrs[kv.key.as_ref()], otlp_attr(&kv.value), "{}", kv.key);
            }
            let code = match e.status.code {
                StatusCode::Unset => "STATUS_CODE_UNSET",
                StatusCode::Ok => "STATUS_CODE_OK",
                StatusCode::Error => "STATUS_CODE_ERROR",
            };
            assert_eq!(s["status"]["code"], code);
            assert_eq!(
                s["status"]["message"],
                e.status.message.clone().unwrap_or_default()
            );
            let links = s["links"].as_array().unwrap();
            assert_eq!(links.len(), e.links.len());
            for (l, el) in links.iter().zip(&e.links) {
                assert_eq!(l["trace_id"], el.trace_id.to_string());
                assert_eq!(l["span_id"], el.span_id.to_string());
                assert_eq!(
                    l["attributes"]["zt.link"],
                    json!(["string_value", "inferred"])
                );
            }
        }
    }
    assert_eq!(seen, expected.len(), "every span arrived once");
}

fn otlp_http(protocol: OtlpProtocol, gzip: bool) {
    let Some(rx) = PyReceiver::start("otlp-http") else {
        return;
    };
    let spans = samples::trace(TRACE, BASE);
    let mut exp = exporter(
        ExporterKind::OtlpHttp,
        format!("http://127.0.0.1:{}", rx.port),
        Some(protocol),
        gzip,
    );
    exp.export(&spans).expect("export");
    let req = rx.next_request();
    assert!(req.get("decode_error").is_none(), "{req}");
    assert_eq!(req["path"], "/v1/traces", "default path appended");
    let ctype = match protocol {
        OtlpProtocol::HttpJson => "application/json",
        _ => "application/x-protobuf",
    };
    assert_eq!(req["content_type"], ctype);
    assert_eq!(req["content_encoding"], if gzip { "gzip" } else { "" });
    assert_eq!(req["headers"]["x-zt-test"], "conformance");
    assert!(req["user_agent"].as_str().unwrap().starts_with("zt-trace/"));
    assert_otlp(&req, &spans);
}

#[test]
fn otlp_http_protobuf() {
    otlp_http(OtlpProtocol::HttpProtobuf, false);
}

#[test]
fn otlp_http_protobuf_gzip() {
    otlp_http(OtlpProtocol::HttpProtobuf, true);
}

#[test]
fn otlp_http_json() {
    otlp_http(OtlpProtocol::HttpJson, false);
}

#[test]
fn otlp_http_json_gzip() {
    otlp_http(OtlpProtocol::HttpJson, true);
}

fn otlp_grpc(kind: ExporterKind, gzip: bool) {
    let Some(rx) = PyReceiver::start("otlp-grpc") else {
        return;
    };
    let spans = samples::trace(TRACE, BASE);
    let mut exp = exporter(kind, format!("127.0.0.1:{}", rx.port), None, gzip);
    exp.export(&spans).expect("export");
    let req = rx.next_request();
    assert_eq!(req["headers"]["x-zt-test"], "conformance");
    assert_otlp(&req, &spans);
}

#[test]
fn otlp_grpc_plain() {
    otlp_grpc(ExporterKind::OtlpGrpc, false);
}

#[test]
fn otlp_grpc_gzip() {
    otlp_grpc(ExporterKind::Otlp, true);
}

#[test]
fn jaeger_sends_otlp_grpc() {
    otlp_grpc(ExporterKind::Jaeger, false);
}

#[test]
fn otlp_http_through_pipeline_delivers_every_span_once() {
    let Some(rx) = PyReceiver::start("otlp-http") else {
        return;
    };
    let exp = exporter(
        ExporterKind::OtlpHttp,
        format!("http://127.0.0.1:{}/v1/traces", rx.port),
        None,
        true,
    );
    let mut pipeline = Pipeline::new(
        vec![exp],
        PipelineConfig {
            max_batch_size: 64,
            batch_timeout: Duration::from_millis(50),
            ..Default::default()
        },
    );
    let spans = samples::spans(1000);
    for s in spans.iter().cloned() {
        assert!(pipeline.try_send(s));
    }
    let stats = pipeline.shutdown(Duration::from_secs(60));
    assert_eq!(stats.exported, 1000, "{stats:?}");
    assert!(stats.balanced());
    let mut ids = std::collections::HashSet::new();
    let mut requests = 0;
    while ids.len() < 1000 {
        let req = rx.next_request();
        requests += 1;
        for rs in req["resource_spans"].as_array().unwrap() {
            for s in rs["scope_spans"][0]["spans"].as_array().unwrap() {
                assert!(
                    ids.insert(s["span_id"].as_str().unwrap().to_owned()),
                    "duplicate"
                );
            }
        }
    }
    assert_eq!(requests as u64, stats.batches_exported);
    assert!(rx.drain().is_empty());
}

#[test]
fn zipkin_v2_json_matches_api_definition() {
    let Some(rx) = PyReceiver::start("zipkin") else {
        return;
    };
    let spans = samples::trace(TRACE, BASE);
    let mut exp = exporter(
        ExporterKind::Zipkin,
        format!("http://127.0.0.1:{}", rx.port),
        None,
        false,
    );
    exp.export(&spans)
        .expect("export (receiver answers 400 on schema errors)");
    let req = rx.next_request();
    assert_eq!(req["path"], "/api/v2/spans");
    assert_eq!(req["content_type"], "application/json");
    assert_eq!(req["schema_errors"], json!([]), "valid against ListOfSpans");
    let got = req["spans"].as_array().unwrap();
    assert_eq!(got.len(), spans.len());
    let want = by_id(&spans);
    for z in got {
        let e = want[z["id"].as_str().unwrap()];
        assert_eq!(z["traceId"], e.trace_id.to_string());
        match e.parent_span_id {
            Some(p) => assert_eq!(z["parentId"], p.to_string()),
            None => assert!(z.get("parentId").is_none()),
        }
        assert_eq!(z["kind"], e.kind.as_str());
        assert!(z.get("shared").is_none(), "zt-trace spans never share ids");
        // Microseconds.
        assert_eq!(z["timestamp"], json!(e.start_unix_nanos / 1000));
        let dur = z["duration"].as_u64().unwrap();
        assert!(dur >= 1);
        assert_eq!(dur, ((e.duration_nanos() + 500) / 1000).max(1));
        assert_eq!(z["name"], e.name.to_lowercase());
        assert_eq!(z["localEndpoint"]["serviceName"], e.resource.service_name);
        let tags = z["tags"].as_object().unwrap();
        for kv in e.attributes.iter() {
            assert_eq!(tags[kv.key.as_ref()], kv.value.to_string(), "{}", kv.key);
        }
        if e.status.code == StatusCode::Error {
            assert_eq!(tags["error"], e.status.message.clone().unwrap());
        }
        match e.kind {
            SpanKind::Client => {
                let port = e.attributes.get_int("server.port").unwrap();
                assert_eq!(z["remoteEndpoint"]["port"], port);
            }
            SpanKind::Server => {
                assert!(z["remoteEndpoint"]["port"].as_u64().unwrap() > 0);
            }
        }
    }
}

#[test]
fn jaeger_thrift_batch_decodes_with_jaeger_idl() {
    let Some(rx) = PyReceiver::start("jaeger-thrift") else {
        return;
    };
    let spans = samples::trace(TRACE, BASE);
    let mut exp = exporter(
        ExporterKind::JaegerThrift,
        format!("http://127.0.0.1:{}", rx.port),
        None,
        false,
    );
    exp.export(&spans).expect("export");
    let want = by_id(&spans);
    let mut seen = 0;
    for _ in 0..2 {
        // One Batch per service.
        let req = rx.next_request();
        assert!(req.get("decode_error").is_none(), "{req}");
        assert_eq!(req["path"], "/api/traces");
        assert_eq!(req["content_type"], "application/x-thrift");
        let batch = &req["batch"];
        assert_eq!(batch["leftover_bytes"], 0);
        let ptags = &batch["process"]["tags"];
        assert_eq!(ptags["telemetry.sdk.name"], json!(["STRING", "zt-trace"]));
        assert_eq!(ptags["process.pid"][0], "LONG");
        assert_eq!(ptags["host.name"], json!(["STRING", "zt-test-host"]));
        let service = batch["process"]["serviceName"].as_str().unwrap();
        for s in batch["spans"].as_array().unwrap() {
            let id = format!("{:016x}", s["spanId"].as_i64().unwrap() as u64);
            let e = want[&id];
            seen += 1;
            assert_eq!(service, e.resource.service_name);
            assert_eq!(
                ptags["process.pid"][1],
                json!(e.resource.attributes.get_int("process.pid").unwrap())
            );
            let high = s["traceIdHigh"].as_i64().unwrap() as u64 as u128;
            let low = s["traceIdLow"].as_i64().unwrap() as u64 as u128;
            assert_eq!((high << 64) | low, e.trace_id.0);
            assert_eq!(
                s["parentSpanId"].as_i64().unwrap() as u64,
                e.parent_span_id.map_or(0, |p| p.0)
            );
            assert_eq!(s["operationName"], e.name.as_str());
            assert_eq!(
                s["startTime"],
                json!(e.start_unix_nanos / 1000),
                "microseconds"
            );
            assert_eq!(
                s["duration"],
                json!(((e.duration_nanos() + 500) / 1000).max(1))
            );
            assert_eq!(s["flags"], 1);
            let tags = &s["tags"];
            let kind = match e.kind {
                SpanKind::Server => "server",
                SpanKind::Client => "client",
            };
            assert_eq!(tags["span.kind"], json!(["STRING", kind]));
            for kv in e.attributes.iter() {
                let want = match &kv.value {
                    AttrValue::Str(v) => json!(["STRING", v]),
                    AttrValue::Int(v) => json!(["LONG", v]),
                    AttrValue::Bool(v) => json!(["BOOL", v]),
                    AttrValue::Double(v) => json!(["DOUBLE", v]),
                };
                assert_eq!(tags[kv.key.as_ref()], want, "{}", kv.key);
            }
            if e.status.code == StatusCode::Error {
                assert_eq!(tags["error"], json!(["BOOL", true]));
                assert_eq!(tags["otel.status_code"], json!(["STRING", "ERROR"]));
            }
            let refs = s["references"].as_array().unwrap();
            assert_eq!(refs.len(), e.links.len());
            for (r, l) in refs.iter().zip(&e.links) {
                assert_eq!(r["refType"], "FOLLOWS_FROM");
                assert_eq!(r["spanId"].as_i64().unwrap() as u64, l.span_id.0);
            }
        }
    }
    assert_eq!(seen, spans.len());
}
