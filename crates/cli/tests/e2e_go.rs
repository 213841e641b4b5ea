//! End to end (root): a Go net/http gateway under concurrency. Goroutines
//! move between OS threads, so a thread's one open request does not prove
//! which request a call belongs to: the tracer must never draw such an edge
//! (it did: 6 of 17 thread-linked Go calls had the wrong parent). Every span
//! is captured, every parent edge is checked against the ground-truth id
//! each request carries through every hop, and the test fails on any wrong
//! edge.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};

const REQUESTS: usize = 300;
const CLIENTS: usize = 24;

/// Status the gateway answers request `n` with (tests/topology/go/gateway.go
/// and tests/topology/service.py).
fn expected_status(n: usize) -> u64 {
    match n % 10 {
        3 => 401,
        7 => 502,
        _ => 200,
    }
}

#[test]
fn go_gateway_has_no_wrong_edge() {
    if !require_root("go_gateway_has_no_wrong_edge") {
        return;
    }
    let dir = tempdir("go");
    let gateway_bin = go_build(&dir, "gateway.go", "");
    let (gw, auth, users, profile) = (free_port(), free_port(), free_port(), free_port());
    let tracer = Tracer::start(&dir, &["run", "--output", "json"]);
    let _profile = service("profile", profile, &[]);
    let _users = service("users", users, &[("profile", profile)]);
    let _auth = service("auth", auth, &[]);
    let gateway = Command::new(&gateway_bin)
        .args([
            gw.to_string(),
            format!("auth={auth}"),
            format!("users={users}"),
            format!("profile={profile}"),
        ])
        .env("OTEL_SERVICE_NAME", "gateway")
        .stdout(Stdio::null())
        .spawn()
        .expect("go gateway");
    let _gateway = Proc {
        name: "gateway".into(),
        child: gateway,
    };
    wait_port(gw, "gateway");
    let load = loadgen(gw, REQUESTS, CLIENTS, "g", &[]);
    std::thread::sleep(std::time::Duration::from_millis(800));
    let (out, err) = tracer.stop();
    let spans = parse_spans(&out);
    eprintln!("{}", summary(&err));

    // The load itself went as the services say.
    for req in &load {
        let n = req["n"].as_u64().unwrap() as usize;
        assert_eq!(req["status"].as_u64(), Some(expected_status(n)), "{req}");
    }

    // Every span of every request is captured: loadgen's call, the
    // gateway's server span and its three calls, auth, users and its
    // call, profile twice.
    let mut per_rid: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for s in &spans {
        if let Some(r) = rid_of(s).filter(|r| r.starts_with('g')) {
            per_rid.entry(r).or_default().push(s);
        }
    }
    let mut failures = Vec::new();
    for req in &load {
        let rid = req["rid"].as_str().unwrap();
        let got = per_rid.get(rid).map_or(0, Vec::len);
        if got != 10 {
            failures.push(format!("{rid}: {got} spans, want 10"));
        }
    }
    assert_no_failures(&failures, load.len());

    // No wrong edge, anywhere.
    let wrong = wrong_edges(&spans);
    assert_no_failures(&wrong, spans.len());

    // Server spans are linked to their callers by TCP sequence.
    let ours: Vec<&Value> = per_rid.values().flatten().copied().collect();
    let unlinked_servers: Vec<String> = ours
        .iter()
        .filter(|s| s["kind"] == "SERVER" && s["parent_span_id"].as_str() == Some(""))
        .map(|s| label(s))
        .collect();
    assert_no_failures(&unlinked_servers, ours.len());

    // The Go gateway's calls: linked by proof or unparented with a reason.
    let go_calls: Vec<&&Value> = ours
        .iter()
        .filter(|s| s["service_name"] == "gateway" && s["kind"] == "CLIENT")
        .collect();
    assert_eq!(go_calls.len(), 3 * REQUESTS);
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &go_calls {
        *reasons.entry(attr_str(s, "zt.link.reason")).or_default() += 1;
        assert_eq!(s["resource"]["process.runtime.name"], "go", "{}", label(s));
    }
    let linked = go_calls
        .iter()
        .filter(|s| s["parent_span_id"].as_str() != Some(""))
        .count();
    eprintln!(
        "go gateway calls: {linked} of {} linked; reasons {reasons:?}",
        go_calls.len()
    );
    assert!(
        !reasons.contains_key("thread"),
        "a Go call was linked by thread: {reasons:?}"
    );
}
