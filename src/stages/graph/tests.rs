use super::*;
use crate::testutil::*;
use span_core::Operation;

fn edge<'a>(g: &'a GraphSnapshot, client: &str, server: &str) -> &'a GraphEdge {
    g.edges
        .iter()
        .find(|e| e.client == client && e.server == server)
        .unwrap_or_else(|| panic!("no edge {client} -> {server} in {g:#?}"))
}

#[test]
fn both_ends_seen_count_once_with_the_callers_latency() {
    let mut g = GraphStage::new(GraphConfig::default());
    g.record(&hop(12, 10), 0);
    g.record(&hop(30, 28), 0);
    let t = g.totals();
    assert_eq!(t.edges.len(), 1, "{t:#?}");
    let e = edge(&t, "gateway", "auth");
    assert_eq!((e.requests, e.errors, e.protocol.as_str()), (2, 0, "http"));
    assert_eq!(e.latency_ms.avg, 21.0);
    assert_eq!(e.latency_ms.p99, 30.0);
    assert_eq!(g.outcome(SpanOutcome::Server), 2);
    assert_eq!(g.outcome(SpanOutcome::ClientPaired), 2);
    assert_eq!(g.outcome(SpanOutcome::Client), 0);
    let m: Vec<_> = g.edge_metrics().collect();
    assert_eq!(m[0].server_seconds.count, 2);
    assert_eq!(m[0].client_seconds.count, 2);
    assert_eq!(connection_type(m[0].client_kind, m[0].server_kind), "");
    assert_eq!(
        t.nodes,
        vec![
            GraphNode {
                id: "auth".into(),
                kind: NodeKind::Service
            },
            GraphNode {
                id: "gateway".into(),
                kind: NodeKind::Service
            }
        ]
    );
}

#[test]
fn a_parentless_server_span_is_called_by_user() {
    let mut g = GraphStage::new(GraphConfig::default());
    g.record(
        &trace(vec![B::new(
            1,
            SpanKind::Server,
            "gateway",
            AppProtocol::Http,
        )
        .peer("10.1.2.3:51000", None)
        .local("127.0.0.1:8080")
        .error()
        .ms(7)]),
        0,
    );
    let t = g.totals();
    let e = edge(&t, USER, "gateway");
    assert_eq!((e.requests, e.errors), (1, 1));
    assert_eq!(t.kind_of(USER), Some(NodeKind::External));
    let m = g.edge_metrics().next().unwrap();
    assert_eq!(
        connection_type(m.client_kind, m.server_kind),
        "virtual_node"
    );
    assert_eq!((m.server_seconds.count, m.client_seconds.count), (1, 0));
}

#[test]
fn databases_caches_and_external_peers_are_their_own_nodes() {
    let mut g = GraphStage::new(GraphConfig::default());
    g.record(
        &trace(vec![
            B::new(1, SpanKind::Server, "users", AppProtocol::Http).local("127.0.0.1:8082"),
            B::new(2, SpanKind::Client, "users", AppProtocol::Postgres)
                .parent(1, LinkReason::Thread)
                .peer("127.0.0.1:5432", None),
            B::new(3, SpanKind::Client, "users", AppProtocol::Redis)
                .parent(1, LinkReason::Thread)
                .peer("127.0.0.1:6379", None)
                .error(),
            B::new(4, SpanKind::Client, "users", AppProtocol::Mysql)
                .parent(1, LinkReason::Thread)
                .peer("127.0.0.1:3306", None),
            B::new(5, SpanKind::Client, "users", AppProtocol::Grpc)
                .parent(1, LinkReason::Thread)
                .peer("192.0.2.7:443", None),
        ]),
        0,
    );
    let t = g.totals();
    assert_eq!(
        t.kind_of("postgresql 127.0.0.1:5432"),
        Some(NodeKind::Database)
    );
    assert_eq!(t.kind_of("mysql 127.0.0.1:3306"), Some(NodeKind::Database));
    assert_eq!(t.kind_of("redis 127.0.0.1:6379"), Some(NodeKind::Cache));
    assert_eq!(t.kind_of("192.0.2.7:443"), Some(NodeKind::External));
    assert_eq!(edge(&t, "users", "redis 127.0.0.1:6379").errors, 1);
    assert_eq!(edge(&t, "users", "192.0.2.7:443").protocol, "grpc");
    assert_eq!(
        edge(&t, "users", "postgresql 127.0.0.1:5432").protocol,
        "postgresql"
    );
    assert_eq!(edge(&t, USER, "users").requests, 1);
    assert_eq!(g.outcome(SpanOutcome::Client), 4);
    for m in g.edge_metrics() {
        let want = match m.server_kind {
            NodeKind::Database | NodeKind::Cache => "database",
            NodeKind::External => "virtual_node",
            NodeKind::Service => "virtual_node", // user -> users
        };
        assert_eq!(connection_type(m.client_kind, m.server_kind), want, "{m:?}");
    }
}

#[test]
fn an_unlinked_call_to_a_traced_server_is_counted_by_the_server_only() {
    let mut g = GraphStage::new(GraphConfig::default());
    // The server was seen serving 127.0.0.1:8081.
    g.record(&hop(2, 1), 0);
    // A call to it whose server span was not linked (an L4 proxy, a
    // traceparent from an instrumented caller): two traces.
    g.record(
        &trace(vec![B::new(
            7,
            SpanKind::Client,
            "gateway",
            AppProtocol::Http,
        )
        .peer("127.0.0.1:8081", None)]),
        0,
    );
    g.record(
        &trace(vec![B::new(8, SpanKind::Server, "auth", AppProtocol::Http)
            .parent(99, LinkReason::Traceparent)
            .local("127.0.0.1:8081")]),
        0,
    );
    let t = g.totals();
    assert_eq!(edge(&t, "gateway", "auth").requests, 1);
    assert_eq!(edge(&t, USER, "auth").requests, 1);
    assert_eq!(
        t.edges.len(),
        2,
        "no external node for a served address: {t:#?}"
    );
    assert_eq!(g.outcome(SpanOutcome::ClientServedHere), 1);
}

#[test]
fn an_edge_fails_when_either_end_failed() {
    let mut g = GraphStage::new(GraphConfig::default());
    // A 404: an error for the caller, not for the server.
    let mut t = hop(3, 2);
    t.spans[0].view.status.error = true;
    g.record(&t, 0);
    // A 500: both.
    let mut t = hop(3, 2);
    t.spans[0].view.status.error = true;
    t.spans[1].view.status.error = true;
    g.record(&t, 0);
    g.record(&hop(3, 2), 0);
    let e = edge(&g.totals(), "gateway", "auth").clone();
    assert_eq!((e.requests, e.errors), (3, 2));
}

#[test]
fn red_series_per_service_and_operation() {
    let mut g = GraphStage::new(GraphConfig::default());
    for code in [200, 200, 404] {
        g.record(
            &trace(vec![B::new(
                1,
                SpanKind::Server,
                "users",
                AppProtocol::Http,
            )
            .http("GET", "/users/{id}", code)
            .ms(4)]),
            0,
        );
    }
    g.record(
        &trace(vec![B::new(
            1,
            SpanKind::Client,
            "users",
            AppProtocol::Redis,
        )
        .peer("127.0.0.1:6379", None)
        .op(Operation::Redis {
            command: "INCRBY".into(),
        })]),
        0,
    );
    let s = g.red().series();
    assert_eq!(s.len(), 3, "{s:#?}");
    let (k, h) = s[0];
    assert_eq!(k.metric, red::RedMetric::HttpServer);
    assert_eq!(
        k.labels(),
        ["GET".to_owned(), "/users/{id}".into(), "200".into()]
    );
    assert_eq!(h.count, 2);
    assert_eq!(s[2].0.metric, red::RedMetric::DbClient);
    assert_eq!(s[2].0.labels()[..2], ["redis".to_owned(), "INCRBY".into()]);
}

#[test]
fn window_keeps_the_last_minutes_totals_keep_everything() {
    let mut g = GraphStage::new(GraphConfig {
        window_minutes: 5,
        ..Default::default()
    });
    let min = SLOT_NS;
    g.record(&hop(2, 1), 0);
    g.record(&hop(2, 1), 3 * min);
    assert_eq!(edge(&g.window(), "gateway", "auth").requests, 2);
    assert_eq!(g.poll_timeout(), Some(5 * min));
    g.handle_timeout(5 * min);
    assert_eq!(edge(&g.window(), "gateway", "auth").requests, 1);
    g.record(&hop(2, 1), 20 * min);
    assert_eq!(edge(&g.window(), "gateway", "auth").requests, 1);
    assert_eq!(edge(&g.totals(), "gateway", "auth").requests, 3);
    g.handle_timeout(30 * min);
    assert!(g.window().edges.is_empty());
    assert!(g.window().nodes.is_empty());
    assert_eq!(g.poll_timeout(), None, "nothing left to expire");
}

#[test]
fn caps_bound_the_tables_and_count_what_does_not_fit() {
    let mut g = GraphStage::new(GraphConfig {
        max_nodes: 10,
        max_edges: 5,
        max_red_series: 3,
        ..Default::default()
    });
    for i in 0..100u16 {
        g.record(
            &trace(vec![B::new(1, SpanKind::Client, "app", AppProtocol::Http)
                .peer(&format!("192.0.2.1:{}", 1000 + i), None)
                .http("GET", &format!("/r{i}"), 200)]),
            0,
        );
    }
    assert_eq!(g.edge_count(), 5);
    assert!(g.node_count() <= 10);
    assert_eq!(g.outcome(SpanOutcome::Client), 5);
    assert_eq!(g.outcome(SpanOutcome::Overflow), 95);
    let (nodes, edges, _, red) = g.overflow();
    assert_eq!(nodes + edges, 95);
    assert_eq!(g.red().len(), 3);
    assert_eq!(red, 97);
    assert_eq!(g.red().overflow()[0].1.count, 97);
}

#[test]
fn json_is_exactly_the_documented_shape() {
    let mut g = GraphStage::new(GraphConfig::default());
    g.record(&hop(12, 10), 0);
    assert_eq!(
        g.totals().to_json(),
        r#"{"nodes":[{"id":"auth","kind":"service"},{"id":"gateway","kind":"service"}],"edges":[{"client":"gateway","server":"auth","protocol":"http","requests":1,"errors":0,"latency_ms":{"avg":12.0,"p50":12.0,"p95":12.0,"p99":12.0}}]}"#
    );
}

#[test]
fn stats_account_for_every_span() {
    let mut g = GraphStage::new(GraphConfig::default());
    g.record(&hop(2, 1), 0);
    let mut w = StatsWriter::new();
    g.report(&mut w);
    let s = w.finish();
    assert_eq!(s.total("zt_graph_spans_total"), 2.0);
    assert_eq!(s.get("zt_graph_edges", None), Some(1.0));
    assert_eq!(s.get("zt_graph_overflow_total", Some("nodes")), Some(0.0));
}
