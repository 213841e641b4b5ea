//! OTLP metrics conformance: the golden full-topology log replayed with a
//! graph and an OTLP metrics exporter (HTTP, then gRPC); a local receiver
//! decodes what was sent with the official opentelemetry-proto Python
//! classes (crates/exporters/tests/receivers/receiver.py), and the decoded
//! metrics must say what the graph says: every edge's request and error
//! counts as cumulative monotonic sums in the agent's resource, the
//! per-service duration histograms in each service's own resource.

#[path = "../crates/exporters/tests/common/pyreceiver.rs"]
mod pyreceiver;

use pyreceiver::PyReceiver;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use zt_trace::exporters::{config::build_metrics_with_env, ExporterKind, ExporterSpec};
use zt_trace::{GraphConfig, Tracer};

fn no_env(_: &str) -> Option<String> {
    None
}

fn golden() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/full_topology.zrec")
}

/// The metric named `name` in the resource of `service`.
fn metric<'a>(req: &'a Value, service: &str, name: &str) -> &'a Value {
    let rm = req["resource_metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"]["service.name"][1] == service)
        .unwrap_or_else(|| panic!("no resource {service}"));
    assert_eq!(rm["resource"]["telemetry.sdk.name"][1], "zt-trace");
    let sm = &rm["scope_metrics"][0];
    assert_eq!(sm["scope"]["name"], "zt-trace");
    sm["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no metric {name} in {service}"))
}

fn check(kind: ExporterKind, endpoint: impl Fn(u16) -> String, mode: &str) {
    let Some(rx) = PyReceiver::start(mode) else {
        return;
    };
    let mut spec = ExporterSpec::new(kind);
    spec.endpoint = Some(endpoint(rx.port));
    let exporter = build_metrics_with_env(&spec, &no_env).unwrap();
    let tracer = Tracer::builder()
        .graph(GraphConfig::default())
        .metrics_exporter(exporter)
        .metrics_interval(Duration::from_secs(3600))
        .replay(golden())
        .unwrap();
    let graph = tracer.graph().unwrap();
    tracer.wait().unwrap();
    let req = rx.next_request();
    assert!(req.get("decode_error").is_none(), "{req}");
    let want = graph.lock().totals();

    // Service graph: the agent's resource, one point per edge.
    let total = metric(&req, "zt-trace", "traces_service_graph_request_total");
    assert_eq!(total["kind"], "sum");
    assert_eq!(total["monotonic"], true);
    assert_eq!(total["temporality"], "AGGREGATION_TEMPORALITY_CUMULATIVE");
    let failed = metric(
        &req,
        "zt-trace",
        "traces_service_graph_request_failed_total",
    );
    let points = |m: &Value| -> BTreeMap<(String, String), (i64, String)> {
        m["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let a = &p["attributes"];
                (
                    (
                        a["client"][1].as_str().unwrap().to_owned(),
                        a["server"][1].as_str().unwrap().to_owned(),
                    ),
                    (
                        p["value"][1].as_i64().unwrap(),
                        a["connection_type"][1].as_str().unwrap().to_owned(),
                    ),
                )
            })
            .collect()
    };
    let (got_total, got_failed) = (points(total), points(failed));
    assert_eq!(got_total.len(), want.edges.len());
    for e in &want.edges {
        let key = (e.client.clone(), e.server.clone());
        assert_eq!(got_total[&key].0, e.requests as i64, "{key:?}");
        assert_eq!(got_failed[&key].0, e.errors as i64, "{key:?}");
        let db = matches!(e.protocol.as_str(), "mysql" | "postgresql" | "redis");
        assert_eq!(
            got_total[&key].1,
            if db { "database" } else { "" },
            "{key:?}"
        );
    }
    let client = metric(
        &req,
        "zt-trace",
        "traces_service_graph_request_client_seconds",
    );
    assert_eq!(client["kind"], "histogram");
    assert_eq!(client["unit"], "s");
    for p in client["points"].as_array().unwrap() {
        let counts: Vec<u64> = p["bucket_counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .collect();
        assert_eq!(counts.iter().sum::<u64>(), p["count"].as_u64().unwrap());
        assert_eq!(
            counts.len(),
            p["explicit_bounds"].as_array().unwrap().len() + 1
        );
    }

    // RED: in each service's resource, semantic-convention names.
    let http = metric(&req, "users", "http.server.request.duration");
    assert_eq!(http["unit"], "s");
    let served: u64 = http["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["count"].as_u64().unwrap())
        .sum();
    let into_users: u64 = want
        .edges
        .iter()
        .filter(|e| e.server == "users")
        .map(|e| e.requests)
        .sum();
    assert_eq!(served, into_users);
    let db = metric(&req, "users", "db.client.operation.duration");
    let systems: Vec<&str> = db["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["attributes"]["db.system.name"][1].as_str().unwrap())
        .collect();
    assert!(
        systems.contains(&"postgresql") && systems.contains(&"redis"),
        "{systems:?}"
    );
    let rpc = metric(&req, "inventory", "rpc.server.call.duration");
    assert!(rpc["points"][0]["attributes"]["rpc.method"][1]
        .as_str()
        .unwrap()
        .ends_with("/GetItem"));
    // Agent health from the stats registry.
    let spans = metric(&req, "zt-trace", "zt_spans_emitted_total");
    assert_eq!(spans["kind"], "sum");
}

#[test]
fn otlp_http_metrics_decode_with_the_official_classes() {
    check(
        ExporterKind::OtlpHttp,
        |port| format!("http://127.0.0.1:{port}/v1/traces"),
        "otlp-http",
    );
}

#[test]
fn otlp_grpc_metrics_decode_with_the_official_classes() {
    check(
        ExporterKind::OtlpGrpc,
        |port| format!("http://127.0.0.1:{port}"),
        "otlp-grpc",
    );
}
