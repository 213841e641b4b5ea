//! End to end, as root: the full test topology (HTTP services, a grpcio
//! service on MariaDB, PostgreSQL, a Redis pipeline) under concurrent load,
//! traced by the real zt-trace with `--metrics-listen`, scraped by a real
//! Prometheus server (Debian package `prometheus`) that this test starts
//! with a configuration of its own on free loopback ports and stops at the
//! end. Through Prometheus's HTTP API:
//! - every service-graph edge's request and error counts equal the ground
//!   truth of the load exactly (one count per request, both ends seen);
//! - `connection_type` is `database` for databases and caches;
//! - a p95 from `histogram_quantile` agrees with the graph's p95 (written
//!   with `--graph`) within one histogram bucket;
//! - `promtool check metrics` accepts the live exposition.
//!
//! Services are named with a suffix of this test's own, so other traffic on
//! the machine (other tests, other tracers) never mixes in.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const REQUESTS: usize = 300;
const CLIENTS: usize = 32;
/// The service-graph histogram bounds (seconds), as the agent exposes them.
const BOUNDS: &[f64] = &[
    0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4,
    2.0, 5.0, 10.0, 15.0,
];

/// `tests/topology/<script>` playing `role`, reporting as `service`.
fn spawn(script: &str, role: &str, service: &str, port: u16, down: &[(&str, u16)]) -> Proc {
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("tests/topology").join(script));
    if script == "service.py" {
        cmd.arg(role);
    }
    cmd.arg(port.to_string());
    for (n, p) in down {
        cmd.arg(format!("{n}={p}"));
    }
    let child = cmd
        .env("OTEL_SERVICE_NAME", service)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let p = Proc {
        name: service.into(),
        child,
    };
    wait_port(port, service);
    p
}

/// GET `path` from 127.0.0.1:`port`; the body.
fn http_get(port: u16, path: &str) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(c, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    match out.split_once("\r\n\r\n") {
        Some((head, body)) => {
            assert!(
                head.starts_with("HTTP/1.") && head.contains(" 200 "),
                "{head}"
            );
            body.to_owned()
        }
        None => panic!("no HTTP response: {out}"),
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query: (labels, value) per series.
fn query(prom: u16, q: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let body = http_get(prom, &format!("/api/v1/query?query={}", urlencode(q)));
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["status"], "success", "{q}: {body}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect();
            let value = r["value"][1].as_str().unwrap().parse::<f64>().unwrap();
            (labels, value)
        })
        .collect()
}

/// (client, server) -> value of a service-graph counter, our edges only.
fn edge_counts(prom: u16, metric: &str, suffix: &str) -> BTreeMap<(String, String), u64> {
    query(prom, &format!("{metric}{{client=~\".*{suffix}\"}}"))
        .into_iter()
        .map(|(l, v)| ((l["client"].clone(), l["server"].clone()), v as u64))
        .collect()
}

fn bucket_of(v: f64) -> usize {
    BOUNDS.partition_point(|b| *b < v)
}

fn start_prometheus(dir: &Path, target: u16) -> (Proc, u16) {
    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: zt-trace\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        ),
    )
    .unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .expect("prometheus (apt-get install prometheus; scripts/install-deps.sh)");
    let p = Proc {
        name: "prometheus".into(),
        child,
    };
    wait_port(port, "prometheus");
    (p, port)
}

#[test]
fn prometheus_scrapes_exact_service_graph_counts() {
    if !require_root("prometheus_scrapes_exact_service_graph_counts") {
        return;
    }
    require_servers();
    grpc_codegen();
    // Declared first, dropped last: removed (Prometheus's database
    // included) after every process below has stopped, also on failure.
    let dir = tempdir("e2e-metrics");
    let suffix = format!("-m{}", std::process::id());
    let name = |role: &str| format!("{role}{suffix}");
    let (gw, auth, users, profile, inv) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let _inventory = spawn("inventory.py", "inventory", &name("inventory"), inv, &[]);
    let _profile = spawn("service.py", "profile", &name("profile"), profile, &[]);
    let _users = spawn(
        "service.py",
        "users",
        &name("users"),
        users,
        &[("profile", profile), ("postgres", 5432), ("redis", 6379)],
    );
    let _auth = spawn("service.py", "auth", &name("auth"), auth, &[]);
    let _gateway = spawn(
        "service.py",
        "gateway",
        &name("gateway"),
        gw,
        &[("auth", auth), ("users", users), ("inventory", inv)],
    );

    let metrics_port = free_port();
    let graph_file = dir.join("graph.json");
    let tracer = Tracer::start(
        &dir,
        &[
            "run",
            "--output",
            "none",
            "--metrics-listen",
            &metrics_port.to_string(),
            "--graph",
            graph_file.to_str().unwrap(),
        ],
    );
    let (_prometheus, prom) = start_prometheus(&dir, metrics_port);

    let load = loadgen(
        gw,
        REQUESTS,
        CLIENTS,
        "met",
        &[("OTEL_SERVICE_NAME", &name("loadgen"))],
    );
    assert_eq!(load.len(), REQUESTS);

    // Ground truth (tests/topology/service.py, inventory.py; see
    // golden_graph.rs): requests and failures per edge.
    let mut want: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    let mut add = |c: &str, s: &str, failed: bool| {
        let e = want.entry((c.to_owned(), s.to_owned())).or_default();
        e.0 += 1;
        e.1 += failed as u64;
    };
    let (mysql, pg, redis) = (
        "mysql 127.0.0.1:3306",
        "postgresql 127.0.0.1:5432",
        "redis 127.0.0.1:6379",
    );
    for r in &load {
        let d = r["n"].as_u64().unwrap() % 10;
        let status = r["status"].as_u64().unwrap();
        let want_status = match d {
            3 => 401,
            5 => 500,
            7 | 9 => 502,
            _ => 200,
        };
        assert_eq!(status, want_status, "request {r}");
        add(&name("loadgen"), &name("gateway"), status >= 400);
        add(&name("gateway"), &name("auth"), d == 3);
        if d == 3 {
            continue;
        }
        add(&name("gateway"), &name("inventory"), matches!(d, 5 | 7));
        add(&name("inventory"), mysql, d == 5);
        add(&name("gateway"), &name("users"), matches!(d, 7 | 9));
        add(&name("users"), pg, d == 9);
        if d == 9 {
            continue;
        }
        add(&name("users"), redis, false);
        add(&name("users"), redis, d == 1);
        add(&name("users"), &name("profile"), d == 7);
    }
    let want_requests: BTreeMap<_, _> = want.iter().map(|(k, v)| (k.clone(), v.0)).collect();
    let want_errors: BTreeMap<_, _> = want.iter().map(|(k, v)| (k.clone(), v.1)).collect();

    // Scraped every second: wait until Prometheus has the final values
    // (traces linger 200 ms before the graph counts them), then compare.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut requests, mut errors);
    loop {
        requests = edge_counts(prom, "traces_service_graph_request_total", &suffix);
        errors = edge_counts(prom, "traces_service_graph_request_failed_total", &suffix);
        if (requests == want_requests && errors == want_errors) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // The live exposition passes promtool.
    let exposition = http_get(metrics_port, "/metrics");
    let (out, err) = tracer.stop();
    let _ = out;
    eprintln!("{}", summary(&err));
    assert_eq!(
        requests, want_requests,
        "request counts per edge (Prometheus vs ground truth)"
    );
    assert_eq!(errors, want_errors, "error counts per edge");

    let types: BTreeMap<String, String> = query(
        prom,
        &format!("traces_service_graph_request_total{{client=~\".*{suffix}\"}}"),
    )
    .into_iter()
    .map(|(l, _)| {
        let ct = l.get("connection_type").cloned().unwrap_or_default();
        (l["server"].clone(), ct)
    })
    .collect();
    for db in [mysql, pg, redis] {
        assert_eq!(
            types.get(db).map(String::as_str),
            Some("database"),
            "{types:?}"
        );
    }
    assert!(!types.contains_key(&name("auth")) || types[&name("auth")].is_empty());

    // p95 of gateway -> users: Prometheus's estimate from the client-side
    // buckets against the graph's (the caller's latency) within a bucket.
    let q = format!(
        "histogram_quantile(0.95, traces_service_graph_request_client_seconds_bucket{{client=\"{}\",server=\"{}\"}})",
        name("gateway"),
        name("users")
    );
    let prom_p95 = query(prom, &q)
        .first()
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no result for {q}"));
    let graph: Value =
        serde_json::from_str(&std::fs::read_to_string(&graph_file).unwrap()).unwrap();
    let edge = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["client"] == name("gateway").as_str() && e["server"] == name("users").as_str())
        .expect("gateway -> users in --graph");
    assert_eq!(
        edge["requests"].as_u64(),
        Some(want_requests[&(name("gateway"), name("users"))])
    );
    let graph_p95 = edge["latency_ms"]["p95"].as_f64().unwrap() / 1000.0;
    // The graph's quantile is within 3.2% of a real value; Prometheus
    // interpolates inside the bucket holding the 95th percentile.
    let (lo, hi) = (bucket_of(graph_p95 * 0.968), bucket_of(graph_p95 * 1.032));
    eprintln!("p95 gateway -> users: Prometheus {prom_p95:.4}s, graph {graph_p95:.4}s");
    assert!(
        (lo..=hi).contains(&bucket_of(prom_p95)),
        "p95 disagree: Prometheus {prom_p95}s (bucket {}), graph {graph_p95}s (buckets {lo}..={hi})",
        bucket_of(prom_p95)
    );

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let check = promtool.wait_with_output().unwrap();
    assert!(
        check.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(exposition.contains("http_server_request_duration_seconds_bucket{service_name=\""));
    assert!(exposition.contains("db_client_operation_duration_seconds_count{service_name=\""));
    assert!(exposition.contains("rpc_server_call_duration_seconds_count{service_name=\""));
    assert!(exposition.contains("zt_kernel_drops_total{reason=\""));
}
