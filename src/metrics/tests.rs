use super::*;
use crate::stages::graph::{GraphConfig, GraphStage};
use crate::stats::{defs, StatsWriter};
use crate::testutil::*;
use crate::Stage;
use span_core::{AppProtocol, LinkReason, Operation, SpanKind};
use std::io::Write;
use std::process::{Command, Stdio};

/// A graph with an HTTP hop, a parentless server span, a database call,
/// a gRPC call to an external peer, and a RED overflow.
fn sample_graph() -> GraphStage {
    let mut g = GraphStage::new(GraphConfig {
        max_red_series: 4,
        ..Default::default()
    });
    for (c, s) in [(12, 10), (30, 28), (3, 2)] {
        let mut t = hop(c, s);
        t.spans[0] = B {
            span: t.spans[0].clone(),
        }
        .http("GET", "/validate", 200)
        .span;
        t.spans[1] = B {
            span: t.spans[1].clone(),
        }
        .http("GET", "/validate", 200)
        .span;
        g.record(&t, 0);
    }
    g.record(
        &trace(vec![
            B::new(1, SpanKind::Server, "users", AppProtocol::Http)
                .http("GET", "/users/{id}", 500)
                .error()
                .local("127.0.0.1:8082")
                .ms(9),
            B::new(2, SpanKind::Client, "users", AppProtocol::Postgres)
                .parent(1, LinkReason::Thread)
                .peer("127.0.0.1:5432", None)
                .op(Operation::Db {
                    operation: Some("SELECT".into()),
                    collection: Some("profiles".into()),
                })
                .ms(1),
            B::new(3, SpanKind::Client, "users", AppProtocol::Grpc)
                .parent(1, LinkReason::Thread)
                .peer("192.0.2.7:443", None)
                .op(Operation::Rpc {
                    service: "pkg.Inventory".into(),
                    method: "GetItem".into(),
                })
                .ms(5),
            B::new(4, SpanKind::Client, "users", AppProtocol::Http)
                .parent(1, LinkReason::Thread)
                .peer("192.0.2.8:80", None)
                .http("POST", "/x/{id}", 201),
        ]),
        0,
    );
    g
}

fn snapshot(g: &GraphStage) -> StatsSnapshot {
    let mut w = StatsWriter::new();
    g.report(&mut w);
    w.set_labelled(&defs::KERNEL_DROPS, "ringbuf_full_data", 3.0);
    w.set(&defs::EVENTS, 100.0);
    w.set(&defs::RSS, 1e6);
    w.finish()
}

#[test]
fn exposition_has_the_servicegraph_red_and_agent_families() {
    let g = sample_graph();
    let text = encode_prometheus(families(Some(&g), &snapshot(&g)));
    for line in [
        "# TYPE traces_service_graph_request_total counter",
        r#"traces_service_graph_request_total{client="gateway",server="auth",connection_type=""} 3"#,
        r#"traces_service_graph_request_failed_total{client="user",server="users",connection_type="virtual_node"} 1"#,
        r#"traces_service_graph_request_total{client="users",server="postgresql 127.0.0.1:5432",connection_type="database"} 1"#,
        r#"traces_service_graph_request_total{client="users",server="192.0.2.7:443",connection_type="virtual_node"} 1"#,
        "# TYPE traces_service_graph_request_server_seconds histogram",
        r#"traces_service_graph_request_server_seconds_bucket{client="gateway",server="auth",connection_type="",le="0.01"} 2"#,
        r#"traces_service_graph_request_client_seconds_bucket{client="gateway",server="auth",connection_type="",le="0.015"} 2"#,
        r#"traces_service_graph_request_client_seconds_count{client="gateway",server="auth",connection_type=""} 3"#,
        r#"http_server_request_duration_seconds_count{service_name="auth",http_request_method="GET",http_route="/validate",http_response_status_code="200"} 3"#,
        r#"http_server_request_duration_seconds_count{service_name="users",http_request_method="GET",http_route="/users/{id}",http_response_status_code="500"} 1"#,
        r#"db_client_operation_duration_seconds_count{service_name="users",db_system_name="postgresql",db_operation_name="SELECT"} 1"#,
        r#"rpc_client_call_duration_seconds_count{otel_metric_overflow="true"} 1"#,
        r#"http_client_request_duration_seconds_count{otel_metric_overflow="true"} 1"#,
        "# TYPE zt_events_total counter",
        "zt_events_total 100",
        r#"zt_kernel_drops_total{reason="ringbuf_full_data"} 3"#,
        r#"zt_graph_spans_total{outcome="client_paired"} 3"#,
        r#"zt_graph_overflow_total{table="red_series"} 2"#,
        "# TYPE zt_agent_resident_memory_bytes gauge",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line}\nin:\n{text}"
        );
    }
    // Server-side histogram only where server spans were seen.
    assert!(!text.contains(r#"traces_service_graph_request_client_seconds_count{client="user""#));
}

/// `promtool check metrics` (Debian package `prometheus`) accepts the
/// exposition. Fails, rather than skips, when promtool is missing:
/// scripts/install-deps.sh installs it.
#[test]
fn promtool_accepts_the_exposition() {
    let g = sample_graph();
    let text = encode_prometheus(families(Some(&g), &snapshot(&g)));
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus; scripts/install-deps.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool refused:\n{said}\n---\n{text}"
    );
    // Lint warnings (naming) are printed but do not fail; we want none.
    assert!(said.trim().is_empty(), "promtool lint:\n{said}");
}

#[test]
fn stats_families_follow_the_registry() {
    let g = sample_graph();
    let f = stats_families(&snapshot(&g));
    let events = f.iter().find(|f| f.otel_name == "zt_events_total").unwrap();
    assert_eq!(events.prom_name, "zt_events");
    assert_eq!(events.kind, MetricKind::Counter);
    let spans = f
        .iter()
        .find(|f| f.otel_name == "zt_graph_spans_total")
        .unwrap();
    assert_eq!(spans.points.len(), 6);
    assert_eq!(
        spans.points[0].labels,
        vec![("outcome", "server".to_owned())]
    );
}
