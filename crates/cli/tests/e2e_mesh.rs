//! As root: two "pods", each a network namespace made by the test, holding
//! a Python application and a sidecar proxy for its inbound and outbound
//! traffic (nginx in pod A, HAProxy in pod B), joined by a veth pair; the
//! load comes from a third namespace. The tracer runs in this process (the
//! library API that `check`, the dashboard and the graph read):
//! - the mesh is detected: both pods, which sidecar, which application;
//! - every trace keeps every hop, 0 wrong edges;
//! - collapsed, the hops are app -> app edges via the sidecars
//!   (`span_core::hops`), and the service graph stage draws app -> app
//!   edges through the sidecars (`--no-collapse-proxies`: every hop);
//! - `zt-trace check` names both pods' sidecars while they run, and the
//!   binary's graph (text, DOT, JSON) and dashboard report, replaying the
//!   run's recorded log, say the mesh and the edges through the sidecars.
//!
//! ```text
//! client ns                pod A (10.201.1.2 | 10.201.2.1)            pod B (10.201.2.2)
//! proxyload -> nginx :8080 -> users :9000 -> nginx :15001 -> haproxy :8080 -> profile :9000
//! ```

mod common;

use common::*;
use serde_json::Value;
use span_core::hops::hops;
use span_core::Trace;
use std::sync::{Arc, Mutex};
use zt_trace::stages::graph::{GraphConfig, GraphStage, SpanOutcome};

const REQUESTS: usize = 200;
const CLIENTS: usize = 16;

#[test]
fn two_pods_with_sidecars_are_a_mesh_and_collapse_into_app_to_app() {
    if !require_root("two_pods_with_sidecars_are_a_mesh_and_collapse_into_app_to_app") {
        return;
    }
    let dir = tempdir("mesh");
    // Namespaces first: dropped last, after every process in them.
    let client = NetNs::new("mc");
    let pod_a = NetNs::new("ma");
    let pod_b = NetNs::new("mb");
    let tag = std::process::id() % 100_000;
    let _v1 = Veth::new(
        &client,
        "10.201.1.1/24",
        &pod_a,
        "10.201.1.2/24",
        &format!("1{tag}"),
    );
    let _v2 = Veth::new(
        &pod_a,
        "10.201.2.1/24",
        &pod_b,
        "10.201.2.2/24",
        &format!("2{tag}"),
    );

    let _profile = service_in(&pod_b, "profile", 9000, &[]);
    let _haproxy = haproxy_gateway(
        &dir.join("b"),
        &[Route {
            listen: "10.201.2.2:8080".into(),
            upstream: "127.0.0.1:9000".into(),
            new_request_id: false,
        }],
        Some(&pod_b),
    );
    // users calls "profile" at its sidecar's outbound port.
    let _users = service_in(&pod_a, "users", 9000, &[("profile", 15001)]);
    let _nginx = nginx_gateway(
        &dir.join("a"),
        1,
        &[
            Route {
                listen: "10.201.1.2:8080".into(),
                upstream: "127.0.0.1:9000".into(),
                new_request_id: false,
            },
            Route {
                listen: "127.0.0.1:15001".into(),
                upstream: "10.201.2.2:8080".into(),
                new_request_id: false,
            },
        ],
        Some(&pod_a),
    );

    // `check`, while the pods run: a proxy beside an application in each.
    let check = check_pods();
    for (ns, proxy, app) in [(&pod_a, "nginx", "users"), (&pod_b, "haproxy", "profile")] {
        let pod = check
            .iter()
            .find(|p| p["net_ns"].as_u64() == Some(ns.inode()))
            .unwrap_or_else(|| panic!("check names no pod for {}: {check:#?}", ns.name));
        let names = |k: &str| -> Vec<&str> {
            pod[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["service"].as_str().unwrap())
                .collect()
        };
        assert_eq!(names("sidecars"), [proxy], "{pod:#}");
        assert_eq!(pod["sidecars"][0]["proxy"], proxy, "{pod:#}");
        assert_eq!(names("apps"), [app], "{pod:#}");
    }
    assert!(
        check
            .iter()
            .all(|p| p["net_ns"].as_u64() != Some(client.inode())),
        "the client namespace holds no proxy: {check:#?}"
    );

    let traces: Arc<Mutex<Vec<Trace>>> = Arc::default();
    let sink = traces.clone();
    let log = dir.join("mesh.zrec");
    let tracer = zt_trace::Tracer::builder()
        .on_trace(move |t| sink.lock().unwrap().push(t.clone()))
        .record_to(&log)
        .start()
        .expect("tracer");
    let load = proxyload_at(
        Some(&client),
        "10.201.1.2:8080",
        REQUESTS,
        CLIENTS,
        "mesh",
        "users",
    );
    let stats = tracer.shutdown().expect("tracer shutdown");
    for l in stats.summary_lines() {
        eprintln!("zt-trace: {l}");
    }
    assert_eq!(load.len(), REQUESTS);
    let traces = traces.lock().unwrap();

    // Every hop kept: the whole chain per request, 0 wrong edges.
    let spans: Vec<Value> = traces
        .iter()
        .flat_map(|t| t.spans.iter().map(exporters::jsonl::span_to_json))
        .collect();
    let wrong = wrong_edges(&spans);
    assert!(wrong.is_empty(), "wrong edges:\n{}", wrong.join("\n"));
    let mut failures = Vec::new();
    for req in &load {
        let rid = req["rid"].as_str().unwrap();
        let n = req["n"].as_u64().unwrap();
        let (profile, users): (u16, u16) = if n % 10 == 7 { (404, 502) } else { (200, 200) };
        if req["status"].as_u64() != Some(users.into()) {
            failures.push(format!("{rid}: status {}", req["status"]));
            continue;
        }
        let hop = |caller: &str, callee: &str, name: &str, st: u16, below: Vec<Shape>| {
            Shape::new(
                format!("{caller} CLIENT {name} {st}"),
                vec![Shape::new(format!("{callee} SERVER {name} {st}"), below)],
            )
        };
        let (u, p) = ("GET /users/{id}", "GET /profile/{id}");
        let want = hop(
            "proxyload",
            "nginx",
            u,
            users,
            vec![hop(
                "nginx",
                "users",
                u,
                users,
                vec![hop(
                    "users",
                    "nginx",
                    p,
                    profile,
                    vec![hop(
                        "nginx",
                        "haproxy",
                        p,
                        profile,
                        vec![hop("haproxy", "profile", p, profile, vec![])],
                    )],
                )],
            )],
        );
        let of: Vec<&Value> = spans.iter().filter(|s| rid_of(s) == Some(rid)).collect();
        match shape_of(&of) {
            Ok(got) if got == vec![want.clone()] => {}
            Ok(got) => failures.push(format!("{rid}: {got:#?}")),
            Err(e) => failures.push(format!("{rid}: {e}")),
        }
    }
    assert_no_failures(&failures, REQUESTS);

    // Collapsed: app -> app through the sidecars; not collapsed: each hop.
    let mut graph = GraphStage::new(GraphConfig::default());
    let mut every_hop = GraphStage::new(GraphConfig {
        collapse_proxies: false,
        ..GraphConfig::default()
    });
    let mut checked = 0;
    for t in traces.iter() {
        if !t.spans.iter().any(|s| {
            s.attributes
                .get_str("url.query")
                .is_some_and(|q| q.contains("rid=mesh"))
        }) {
            continue; // other traffic on the host
        }
        let edges: Vec<(String, String, Vec<&str>)> = hops(t, true)
            .iter()
            .map(|h| {
                (
                    h.client
                        .map_or("-".into(), |c| c.resource.service_name.clone()),
                    h.server
                        .map_or("-".into(), |s| s.resource.service_name.clone()),
                    h.via_services(),
                )
            })
            .collect();
        assert_eq!(
            edges,
            vec![
                ("proxyload".into(), "users".into(), vec!["nginx"]),
                ("users".into(), "profile".into(), vec!["nginx", "haproxy"]),
            ],
            "collapsed hops"
        );
        let plain = hops(t, false);
        assert_eq!(plain.len(), 5, "every hop when not collapsed");
        graph.record(t, 0);
        every_hop.record(t, 0);
        checked += 1;
    }
    assert_eq!(checked, REQUESTS);
    let edges = |g: &GraphStage| {
        let mut e: Vec<(String, String, Vec<String>, u64)> = g
            .totals()
            .edges
            .into_iter()
            .map(|e| (e.client, e.server, e.via, e.requests))
            .collect();
        e.sort();
        e
    };
    let n = REQUESTS as u64;
    let s = |x: &str| x.to_owned();
    assert_eq!(
        edges(&graph),
        vec![
            (s("proxyload"), s("users"), vec![s("nginx")], n),
            (s("users"), s("profile"), vec![s("nginx"), s("haproxy")], n),
        ],
        "the graph: app -> app through the sidecars"
    );
    assert_eq!(graph.outcome(SpanOutcome::ProxyPassed), 3 * n);
    assert_eq!(
        edges(&every_hop),
        vec![
            (s("haproxy"), s("profile"), vec![], n),
            (s("nginx"), s("haproxy"), vec![], n),
            (s("nginx"), s("users"), vec![], n),
            (s("proxyload"), s("nginx"), vec![], n),
            (s("users"), s("nginx"), vec![], n),
        ],
        "the graph with --no-collapse-proxies"
    );

    // The mesh, as the library's snapshot reports it.
    let m = &stats.mesh;
    let pod = |ns: &NetNs| {
        m.pods
            .iter()
            .find(|p| p.net_ns == ns.inode())
            .unwrap_or_else(|| panic!("pod {} not reported: {m:#?}", ns.name))
    };
    let (a, b) = (pod(&pod_a), pod(&pod_b));
    assert_eq!(a.mesh, "nginx");
    assert_eq!(b.mesh, "haproxy");
    let names = |v: &[span_core::mesh::MeshMember]| {
        let mut n: Vec<String> = v.iter().map(|x| x.service.clone()).collect();
        n.dedup();
        n
    };
    assert_eq!(names(&a.apps), ["users"]);
    assert_eq!(names(&a.sidecars), ["nginx"]);
    assert_eq!(names(&b.apps), ["profile"]);
    assert_eq!(names(&b.sidecars), ["haproxy"]);
    // Pod A's sidecar carries both directions, pod B's only inbound.
    assert_eq!(a.inbound, REQUESTS as u64, "{a:?}");
    assert_eq!(a.outbound, REQUESTS as u64, "{a:?}");
    assert_eq!((b.inbound, b.outbound), (REQUESTS as u64, 0), "{b:?}");
    assert!(
        m.pods.iter().all(|p| p.net_ns != client.inode()),
        "the client namespace has no sidecar"
    );
    assert!(
        stats
            .summary_lines()
            .iter()
            .any(|l| l.starts_with("mesh: ")),
        "summary"
    );
    assert_eq!(
        stats.get("zt_mesh_pods", Some("nginx")),
        Some(1.0),
        "{:?}",
        stats.by_label("zt_mesh_pods")
    );

    // The binary, replaying this run's log: the graph and the dashboard
    // say the mesh and the collapsed edges.
    let graph = |format: &str| zt(&["graph", "--from", log.to_str().unwrap(), "--format", format]);
    let text = graph("text");
    for want in [
        "proxyload calls:\n  → users via HTTP through nginx (",
        "users calls:\n  → profile via HTTP through nginx, haproxy (",
        "\nmesh (pods whose traffic goes through a sidecar):\n",
        &format!(
            "  netns:{}: nginx sidecar nginx for users ({REQUESTS} requests in, {REQUESTS} out)\n",
            pod_a.inode()
        ),
        &format!(
            "  netns:{}: haproxy sidecar haproxy for profile ({REQUESTS} requests in, 0 out)\n",
            pod_b.inode()
        ),
    ] {
        assert!(text.contains(want), "graph text lacks {want:?}:\n{text}");
    }
    let dot = graph("dot");
    assert!(
        dot.contains(&format!(
            "label=\"pod netns:{} (nginx sidecar nginx)\";",
            pod_a.inode()
        )),
        "{dot}"
    );
    let json: Value = serde_json::from_str(&graph("json")).expect("graph JSON");
    let pods = json["mesh"]["pods"].as_array().expect("mesh in the JSON");
    assert_eq!(pods.len(), 2, "{json:#}");
    let report = zt(&["dashboard", "--from", log.to_str().unwrap(), "--plain"]);
    let section = report
        .split("=== Service Dependency Graph ===")
        .nth(1)
        .and_then(|r| r.split("=== Trace Example").next())
        .expect("graph section");
    for want in [
        "  → users (http through nginx): 200 calls",
        "  → profile (http through nginx, haproxy): 200 calls",
        &format!(
            "mesh: netns:{}: nginx sidecar nginx for users",
            pod_a.inode()
        ),
        &format!(
            "mesh: netns:{}: haproxy sidecar haproxy for profile",
            pod_b.inode()
        ),
    ] {
        assert!(
            section.contains(want),
            "dashboard lacks {want:?}:\n{section}"
        );
    }
}

/// `zt-trace check --json`'s pods.
fn check_pods() -> Vec<Value> {
    let out = std::process::Command::new(zt_trace_bin())
        .args(["check", "--json"])
        .env_remove("RUST_LOG")
        .output()
        .expect("zt-trace check");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check --json: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["pods"].as_array().cloned().unwrap_or_default()
}

/// The binary's stdout (it must succeed).
fn zt(args: &[&str]) -> String {
    let out = std::process::Command::new(zt_trace_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("zt-trace");
    assert!(
        out.status.success(),
        "zt-trace {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
