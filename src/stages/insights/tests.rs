use super::tests_support::TraceBuilder;
use super::*;
use span_core::AppProtocol::{Mysql, Postgres, Redis};

fn stage() -> InsightsStage {
    InsightsStage::default()
}

fn of_kind(s: &InsightsStage, k: FindingKind) -> Vec<Finding> {
    s.findings().into_iter().filter(|f| f.kind == k).collect()
}

/// A users request running `stmts` one after another, 100 us each.
fn sequential(trace: u128, stmts: &[&str]) -> Trace {
    let mut b = TraceBuilder::new(trace);
    b.server(1, None, "users", "GET /users/{id}", 0, 10_000);
    for (i, q) in stmts.iter().enumerate() {
        b.db(
            i as u64 + 2,
            1,
            "users",
            Postgres,
            q,
            100 + i as u64 * 200,
            100,
        );
    }
    b.build()
}

#[test]
fn n_plus_one_found_with_service_statement_and_calls_per_request() {
    let mut s = stage();
    let stmts: Vec<String> = (0..6)
        .map(|i| format!("SELECT /* rid=r{i:05} */ name FROM items WHERE id = {i}"))
        .collect();
    let stmts: Vec<&str> = stmts.iter().map(String::as_str).collect();
    s.record(&sequential(1, &stmts));
    s.record(&sequential(2, &stmts[..5]));
    let f = of_kind(&s, FindingKind::NPlusOne);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].service, "users");
    assert_eq!(f[0].subject, "SELECT name FROM items WHERE id = ?");
    assert_eq!(f[0].evidence.count, 2, "two requests");
    assert_eq!(f[0].evidence.per_request, Some(5.5));
    assert_eq!(f[0].evidence.example, Some(TraceId(2)), "the latest");
    assert!(
        f[0].text.contains(
            "users runs `SELECT name FROM items WHERE id = ?` (postgresql) 5.5 times per request"
        ),
        "{}",
        f[0].text
    );
}

#[test]
fn five_different_statements_are_not_n_plus_one() {
    let mut s = stage();
    s.record(&sequential(
        1,
        &[
            "SELECT a FROM t WHERE id = 1",
            "SELECT b FROM t WHERE id = 1",
            "SELECT a FROM u WHERE id = 1",
            "UPDATE t SET a = 1",
            "SELECT a FROM t WHERE k = 1",
        ],
    ));
    assert!(of_kind(&s, FindingKind::NPlusOne).is_empty());
}

#[test]
fn four_repeats_are_not_n_plus_one_at_the_default_threshold() {
    let q = ["SELECT a FROM t WHERE id = 1"; 4];
    let mut s = stage();
    s.record(&sequential(1, &q));
    assert!(of_kind(&s, FindingKind::NPlusOne).is_empty());
    // ... but are with a threshold of 4.
    let mut s = InsightsStage::new(InsightsConfig {
        n_plus_one_min_calls: 4,
        ..InsightsConfig::default()
    });
    s.record(&sequential(1, &q));
    assert_eq!(of_kind(&s, FindingKind::NPlusOne).len(), 1);
}

#[test]
fn overlapping_parallel_calls_are_not_sequential() {
    // Five identical queries started together (a fan-out): one round trip,
    // not N.
    let mut b = TraceBuilder::new(1);
    b.server(1, None, "users", "GET /users", 0, 10_000);
    for i in 0..5u64 {
        b.db(
            i + 2,
            1,
            "users",
            Postgres,
            "SELECT a FROM t WHERE id = 1",
            100 + i * 10,
            500,
        );
    }
    let mut s = stage();
    s.record(&b.build());
    assert!(of_kind(&s, FindingKind::NPlusOne).is_empty());
    // Three in parallel then four one after another: 5 sequential (one of
    // the parallel three, and the four).
    let mut b = TraceBuilder::new(2);
    b.server(1, None, "users", "GET /users", 0, 10_000);
    for i in 0..3u64 {
        b.db(
            i + 2,
            1,
            "users",
            Postgres,
            "SELECT a FROM t WHERE id = 1",
            100,
            500,
        );
    }
    for i in 0..4u64 {
        b.db(
            i + 10,
            1,
            "users",
            Postgres,
            "SELECT a FROM t WHERE id = 1",
            1000 + i * 200,
            100,
        );
    }
    s.record(&b.build());
    let f = of_kind(&s, FindingKind::NPlusOne);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].evidence.per_request, Some(5.0));
}

#[test]
fn n_plus_one_is_per_request_and_per_service() {
    // Three queries in each of two requests of the same trace: not five in
    // one request.
    let mut b = TraceBuilder::new(1);
    b.server(1, None, "gateway", "GET /a", 0, 20_000);
    for r in 0..2u64 {
        let srv = 10 + r * 10;
        b.server(srv, Some(1), "users", "GET /users", r * 5000, 4000);
        for i in 0..3u64 {
            b.db(
                srv + 1 + i,
                srv,
                "users",
                Mysql,
                "SELECT a FROM t WHERE id = 1",
                r * 5000 + 100 + i * 200,
                100,
            );
        }
    }
    let mut s = stage();
    s.record(&b.build());
    assert!(of_kind(&s, FindingKind::NPlusOne).is_empty());
}

#[test]
fn n_plus_one_on_redis_commands_and_total_time_floor() {
    let mut b = TraceBuilder::new(7);
    b.server(1, None, "cart", "GET /cart", 0, 10_000);
    for i in 0..5u64 {
        b.db(
            i + 2,
            1,
            "cart",
            Redis,
            &format!("GET item:{}", 100 + i),
            100 + i * 200,
            100,
        );
    }
    let t = b.build();
    let mut s = stage();
    s.record(&t);
    let f = of_kind(&s, FindingKind::NPlusOne);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].subject, "GET item:?");
    // 5 x 100 us is below a 1 ms floor.
    let mut s = InsightsStage::new(InsightsConfig {
        n_plus_one_min_total_ns: 1_000_000,
        ..InsightsConfig::default()
    });
    s.record(&t);
    assert!(of_kind(&s, FindingKind::NPlusOne).is_empty());
}

#[test]
fn repeated_identical_reads_are_cache_candidates() {
    let mut b = TraceBuilder::new(3);
    b.server(1, None, "gateway", "GET /api", 0, 10_000);
    b.get(
        2,
        1,
        "gateway",
        "http://127.0.0.1:8081/config?v=1",
        Some("config"),
        100,
        100,
    );
    b.get(
        3,
        1,
        "gateway",
        "http://127.0.0.1:8081/config?v=1",
        Some("config"),
        300,
        100,
    );
    b.get(
        4,
        1,
        "gateway",
        "http://127.0.0.1:8081/config?v=2",
        Some("config"),
        500,
        100,
    );
    b.db(5, 1, "gateway", Redis, "GET session:abc", 700, 50);
    b.db(6, 1, "gateway", Redis, "GET session:abc", 800, 50);
    b.db(7, 1, "gateway", Redis, "GET session:abc", 900, 50);
    // Writes of one key and reads of different keys are not.
    b.db(8, 1, "gateway", Redis, "SET lock:1", 1000, 50);
    b.db(9, 1, "gateway", Redis, "SET lock:1", 1100, 50);
    b.db(10, 1, "gateway", Redis, "GET a", 1200, 50);
    b.db(11, 1, "gateway", Redis, "GET b", 1300, 50);
    let mut s = stage();
    s.record(&b.build());
    let mut f = of_kind(&s, FindingKind::CacheCandidate);
    f.sort_by(|a, b| a.subject.cmp(&b.subject));
    let subjects: Vec<&str> = f.iter().map(|f| f.subject.as_str()).collect();
    assert_eq!(
        subjects,
        ["GET http://127.0.0.1:8081/config?v=1", "GET session:abc"],
        "{f:#?}"
    );
    assert_eq!(f[1].evidence.per_request, Some(3.0));
    assert_eq!(f[1].evidence.example, Some(TraceId(3)));
    assert!(
        f[1].text
            .contains("gateway reads `GET session:abc` (redis) 3.0 times per request"),
        "{}",
        f[1].text
    );
}

#[test]
fn one_read_per_request_is_not_a_cache_candidate() {
    let mut s = stage();
    for t in 0..5u128 {
        let mut b = TraceBuilder::new(t + 1);
        b.server(1, None, "gateway", "GET /api", 0, 10_000);
        b.get(
            2,
            1,
            "gateway",
            "http://127.0.0.1:8081/config",
            None,
            100,
            100,
        );
        s.record(&b.build());
    }
    assert!(of_kind(&s, FindingKind::CacheCandidate).is_empty());
}

fn gateway_request(t: u128, calls_auth: bool, auth_fails: bool) -> Trace {
    let mut b = TraceBuilder::new(t);
    b.server(1, None, "api-gateway", "GET /users", 0, 10_000);
    if calls_auth {
        b.get(
            2,
            1,
            "api-gateway",
            "http://127.0.0.1:9000/validate",
            Some("auth-service"),
            100,
            1000,
        );
        b.server(3, Some(2), "auth-service", "GET /validate", 150, 900);
        if auth_fails {
            b.fail(2, "HTTP status 503", Some(503))
                .fail(3, "HTTP status 503", Some(503));
        }
    }
    b.build()
}

#[test]
fn dependency_called_on_nearly_every_request() {
    let mut s = stage();
    for t in 0..50u128 {
        s.record(&gateway_request(t + 1, t != 7, false));
    }
    let f = of_kind(&s, FindingKind::EveryRequest);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(
        f[0].text,
        "auth-service called on 98% of api-gateway requests (49 of 50; 49 calls)"
    );
    // 85%: not "every request"; and too few requests are not judged.
    let mut s = stage();
    for t in 0..20u128 {
        s.record(&gateway_request(t + 1, t % 7 != 0, false));
    }
    assert!(of_kind(&s, FindingKind::EveryRequest).is_empty());
    let mut s = stage();
    for t in 0..19u128 {
        s.record(&gateway_request(t + 1, true, false));
    }
    assert!(
        of_kind(&s, FindingKind::EveryRequest).is_empty(),
        "19 < min_requests"
    );
}

#[test]
fn slow_statements_over_the_p95_threshold() {
    let mut s = stage();
    for t in 0..20u128 {
        let mut b = TraceBuilder::new(t + 1);
        b.server(1, None, "inventory", "GET /items", 0, 400_000);
        // 2 of 20 fast, 18 at 250 ms.
        let dur = if t < 2 { 1000 } else { 250_000 };
        b.db(
            2,
            1,
            "inventory",
            Postgres,
            "SELECT * FROM items WHERE name LIKE 'x%'",
            100,
            dur,
        );
        b.db(
            3,
            1,
            "inventory",
            Postgres,
            "SELECT * FROM stock WHERE id = 3",
            300_000,
            500,
        );
        s.record(&b.build());
    }
    let f = of_kind(&s, FindingKind::SlowStatement);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].subject, "SELECT * FROM items WHERE name LIKE ?");
    assert_eq!(f[0].hint, "consider an index (EXPLAIN it), or fetch less");
    let p95 = f[0].evidence.latency_ns.unwrap();
    assert!((240_000_000..260_000_000).contains(&p95), "{p95}");
    // Four slow calls are not enough to judge.
    let mut s = stage();
    for t in 0..4u128 {
        let mut b = TraceBuilder::new(t + 1);
        b.server(1, None, "inventory", "GET /items", 0, 400_000);
        b.db(2, 1, "inventory", Postgres, "SELECT 1", 100, 250_000);
        s.record(&b.build());
    }
    assert!(of_kind(&s, FindingKind::SlowStatement).is_empty());
}

#[test]
fn error_hot_spots_above_five_percent() {
    // 2 failures in 20 (10%) on the edge and both endpoints.
    let mut s = stage();
    for t in 0..20u128 {
        s.record(&gateway_request(t + 1, true, t < 2));
    }
    let f = of_kind(&s, FindingKind::ErrorHotSpot);
    let subjects: Vec<&str> = f.iter().map(|f| f.subject.as_str()).collect();
    assert!(
        subjects.contains(&"api-gateway → auth-service"),
        "{subjects:?}"
    );
    assert!(
        subjects.contains(&"auth-service GET /validate"),
        "{subjects:?}"
    );
    assert!(
        !subjects.contains(&"api-gateway GET /users"),
        "the gateway's own spans did not fail"
    );
    let edge = f
        .iter()
        .find(|f| f.subject == "api-gateway → auth-service")
        .unwrap();
    assert_eq!((edge.evidence.count, edge.evidence.of), (2, Some(20)));
    assert!(edge.evidence.example.is_some());
    // 1 in 20 is 5%: not above it.
    let mut s = stage();
    for t in 0..20u128 {
        s.record(&gateway_request(t + 1, true, t < 1));
    }
    assert!(of_kind(&s, FindingKind::ErrorHotSpot).is_empty());
}

/// api-gateway GET /users -> inventory GET /items -> postgresql (fails).
fn failing_chain(t: u128) -> Trace {
    let mut b = TraceBuilder::new(t);
    b.server(1, None, "api-gateway", "GET /users", 0, 10_000);
    b.get(
        2,
        1,
        "api-gateway",
        "http://127.0.0.1:9100/items",
        Some("inventory"),
        100,
        5000,
    );
    b.server(3, Some(2), "inventory", "GET /items", 150, 4800);
    b.db(4, 3, "inventory", Postgres, "SELECT * FROM items", 200, 300);
    b.db(5, 3, "inventory", Postgres, "SELECT * FROM stock", 600, 300);
    b.fail(1, "HTTP status 502", Some(502))
        .fail(2, "HTTP status 500", Some(500))
        .fail(3, "HTTP status 500", Some(500))
        .fail(4, "relation \"items\" does not exist", None);
    b.build()
}

#[test]
fn root_cause_is_the_deepest_error_whose_children_succeeded() {
    let mut s = stage();
    for t in 0..41u128 {
        s.record(&failing_chain(t + 1));
    }
    // A trace without errors adds no cause.
    s.record(&gateway_request(100, true, false));
    let f = of_kind(&s, FindingKind::RootCause);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(
        f[0].text,
        "502s at api-gateway GET /users originate in inventory → postgresql: relation \"items\" does not exist (41 traces)"
    );
    assert_eq!(f[0].service, "inventory");
    assert_eq!(f[0].evidence.example, Some(TraceId(41)));
    assert_eq!(s.traces(), (42, 41));
}

#[test]
fn root_cause_of_a_refused_call_is_the_server_that_refused() {
    // gateway -> profile answered 404: the client span failed, the server
    // span did not (a 4xx is not a server error): the origin is profile.
    let mut b = TraceBuilder::new(9);
    b.server(1, None, "users", "GET /users/{id}", 0, 10_000);
    b.get(
        2,
        1,
        "users",
        "http://127.0.0.1:9200/profile/7",
        Some("profile"),
        100,
        500,
    );
    b.server(3, Some(2), "profile", "GET /profile/{id}", 150, 400);
    b.http_status(3, 404);
    b.fail(2, "HTTP status 404", Some(404));
    b.fail(1, "HTTP status 502", Some(502));
    let mut s = stage();
    s.record(&b.build());
    let f = of_kind(&s, FindingKind::RootCause);
    assert_eq!(
        f[0].text,
        "502s at users GET /users/{id} originate in profile GET /profile/{id}: HTTP status 404 (1 trace)"
    );
}

#[test]
fn critical_path_and_self_time() {
    // root [0,100]; A [5,40] and B [10,80] overlap; C [85,95] after them.
    let mut b = TraceBuilder::new(1);
    b.server(1, None, "gw", "GET /", 0, 100);
    b.get(2, 1, "gw", "http://a/", None, 5, 35);
    b.get(3, 1, "gw", "http://b/", None, 10, 70);
    b.get(4, 1, "gw", "http://c/", None, 85, 10);
    b.server(5, Some(3), "b", "GET /", 12, 60);
    let t = b.build();
    let p = Profile::of(&t);
    assert_eq!(
        p.critical,
        [true, false, true, true, true],
        "root, B and its server, C; not A"
    );
    // Self time: root 100 - ([5,80] + [85,95]) = 15 us; B 70 - 60 = 10 us.
    assert_eq!(p.self_ns[0], 15_000);
    assert_eq!(p.self_ns[2], 10_000);
    assert_eq!(p.self_ns[4], 60_000);
    // A sequential chain is all critical.
    let mut b = TraceBuilder::new(2);
    b.server(1, None, "gw", "GET /", 0, 100);
    b.get(2, 1, "gw", "http://a/", None, 0, 30);
    b.get(3, 1, "gw", "http://b/", None, 30, 30);
    b.get(4, 1, "gw", "http://c/", None, 60, 30);
    let p = Profile::of(&b.build());
    assert!(p.critical.iter().all(|c| *c));
    assert_eq!(p.self_ns[0], 10_000);
}

#[test]
fn tables_are_bounded_and_overflow_is_counted() {
    let mut s = InsightsStage::new(InsightsConfig {
        max_keys: 3,
        ..InsightsConfig::default()
    });
    for t in 0..10u128 {
        let mut b = TraceBuilder::new(t + 1);
        b.server(1, None, "svc", &format!("GET /e{t}"), 0, 100);
        s.record(&b.build());
    }
    assert_eq!(s.endpoints().len(), 3);
    let over: Vec<_> = s.overflow().into_iter().filter(|(_, n)| *n > 0).collect();
    assert_eq!(over, [("endpoints", 7)]);
}

#[test]
fn malformed_traces_do_not_panic() {
    let mut b = TraceBuilder::new(1);
    b.server(1, Some(2), "a", "GET /", 0, 10);
    b.server(2, Some(1), "b", "GET /", 0, 10); // a parent cycle
    b.server(3, Some(3), "c", "GET /", 50, 0); // its own parent
    b.server(3, None, "d", "GET /", 20, 5); // a duplicate id
    let mut t = b.build();
    t.spans[1].end_unix_nanos = 0; // ends before it starts
    b.fail(1, "x", None);
    let mut s = stage();
    s.record(&t);
    s.record(&b.build());
    s.record(&Trace {
        trace_id: TraceId(5),
        spans: vec![],
    });
    let _ = s.findings();
    let _ = Profile::of(&t);
    let _ = TraceSummary::of(&t);
}

#[test]
fn endpoints_sorted_by_p95_and_slow_traces_listed() {
    let mut s = stage();
    for (t, (name, dur)) in [
        ("GET /fast", 1_000u64),
        ("GET /slow", 300_000),
        ("GET /mid", 50_000),
    ]
    .into_iter()
    .enumerate()
    {
        let mut b = TraceBuilder::new(t as u128 + 1);
        b.server(1, None, "svc", name, 0, dur);
        s.record(&b.build());
    }
    let names: Vec<String> = s.endpoints().into_iter().map(|e| e.operation).collect();
    assert_eq!(names, ["GET /slow", "GET /mid", "GET /fast"]);
    let slow = s.slow_traces();
    assert_eq!(slow.len(), 1, "only the one over 100 ms");
    assert_eq!(slow[0].operation, "GET /slow");
    assert_eq!(slow[0].trace_id, TraceId(2));
}
