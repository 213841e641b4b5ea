//! As root: nginx and HAProxy as gateways in front of Python services,
//! traced by the real zt-trace binary, 400 requests from 32 clients per
//! load, every parent edge checked against ground truth:
//! - `id`: the client sends X-Request-Id, the proxy passes it on: every
//!   upstream call links (`forwarded_id`), every trace is the whole tree;
//! - `noid`: no id from the client, the proxy makes its own (nginx
//!   `$request_id`, HAProxy `uuid()`): the heads are unique (the request
//!   id is in the query), every upstream call links (`forwarded_head`);
//! - `replaced`: the client's id replaced by the proxy's: the same;
//! - `same`: 400 identical heads to a backend that logs the ground truth
//!   from a header the tracer does not keep: calls sent while another
//!   request with the same head was open stay unparented
//!   (`unlinked_forward_ambiguous`), the others link to the right request.
//!
//! 0 wrong edges everywhere. The service graph the binary writes
//! (`--graph`) draws the linked forwards as edges through the proxy and
//! keeps the unlinked ones as hops of their own.

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashMap;

const REQUESTS: usize = 400;
const CLIENTS: usize = 32;

struct Ports {
    pass: u16,
    replace: u16,
    same: u16,
}

fn run(proxy: &str) {
    let dir = tempdir(&format!("proxy-{proxy}"));
    let (gw, auth, users, profile, truth_port) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let _profile = service("profile", profile, &[]);
    let _users = service("users", users, &[("profile", profile)]);
    let _auth = service("auth", auth, &[]);
    let _gateway = service("gateway", gw, &[("auth", auth), ("users", users)]);
    let (_truth, truth_log) = truth_backend(&dir, truth_port);
    let p = Ports {
        pass: free_port(),
        replace: free_port(),
        same: free_port(),
    };
    let routes = [
        Route::local(p.pass, gw, false),
        Route::local(p.replace, gw, true),
        Route::local(p.same, truth_port, false),
    ];
    let _proxy = match proxy {
        "nginx" => nginx_gateway(&dir, 2, &routes, None),
        _ => haproxy_gateway(&dir, &routes, None),
    };

    // A large ring: on a shared machine other processes' traffic can fill
    // the default one while the reader waits for a CPU (drops are still
    // asserted to be 0 below).
    let graph_file = dir.join("graph.json");
    let tracer = Tracer::start(
        &dir,
        &[
            "run",
            "--output",
            "json",
            "--ring-buffer-mib",
            "256",
            "--graph",
            graph_file.to_str().unwrap(),
        ],
    );
    let loads = [
        ("id", proxyload(p.pass, REQUESTS, CLIENTS, "pxid", "id")),
        (
            "noid",
            proxyload(p.replace, REQUESTS, CLIENTS, "pxno", "noid"),
        ),
        (
            "replaced",
            proxyload(p.replace, REQUESTS, CLIENTS, "pxre", "id"),
        ),
        ("same", proxyload(p.same, REQUESTS, CLIENTS, "pxsa", "same")),
    ];
    let (out, err) = tracer.stop();
    eprintln!("{}", summary(&err));
    assert!(
        err.contains("kernel drops: 0 events lost"),
        "drops reported (a lost request breaks uniqueness):\n{err}"
    );
    let spans = parse_spans(&out);
    let wrong = wrong_edges(&spans);
    assert!(
        wrong.is_empty(),
        "{proxy}: wrong edges:\n{}",
        wrong.join("\n")
    );

    for (what, load) in &loads[..3] {
        assert_eq!(load.len(), REQUESTS);
        // Every request's trace is the whole tree, through the proxy.
        check_topology_via(
            &spans,
            load,
            &format!("{proxy} {what}"),
            "proxyload",
            Some(proxy),
        );
        // Every upstream call of the proxy linked, by the rule expected.
        let want = if *what == "id" {
            "forwarded_id"
        } else {
            "forwarded_head"
        };
        let prefix = &load[0]["rid"].as_str().unwrap()[..4];
        let calls: Vec<&Value> = spans
            .iter()
            .filter(|s| s["service_name"] == proxy && s["kind"] == "CLIENT")
            .filter(|s| rid_of(s).is_some_and(|r| r.starts_with(prefix)))
            .collect();
        assert_eq!(calls.len(), REQUESTS, "{proxy} {what}: upstream calls");
        let other: Vec<String> = calls
            .iter()
            .filter(|s| attr_str(s, "zt.link.reason") != want)
            .map(|s| format!("{} {}", rid_of(s).unwrap(), attr_str(s, "zt.link.reason")))
            .collect();
        assert!(
            other.is_empty(),
            "{proxy} {what}: not linked by {want}: {other:?}"
        );
        for s in &calls {
            assert_eq!(attr(s, "zt.proxy"), Some(&Value::Bool(true)));
            assert_eq!(attr_str(s, "zt.proxy.kind"), proxy);
        }
    }

    // Identical heads: the ground truth is the connection each request
    // came on (client side) and X-Truth as the backend logged it.
    let load = &loads[3].1;
    let rid_by_client_port: HashMap<u64, &str> = load
        .iter()
        .map(|r| (r["port"].as_u64().unwrap(), r["rid"].as_str().unwrap()))
        .collect();
    let truth: HashMap<(u64, u64), String> = std::fs::read_to_string(&truth_log)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                (v["port"].as_u64().unwrap(), v["nth"].as_u64().unwrap()),
                v["truth"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let by_id: HashMap<&str, &Value> = spans
        .iter()
        .map(|s| (s["span_id"].as_str().unwrap(), s))
        .collect();
    let port_of = |s: &Value, k: &str| attr(s, k).and_then(Value::as_u64);
    // The backend's spans, per connection in time order: the n-th request
    // on a connection is the n-th line the backend logged for it.
    let mut backend: HashMap<u64, Vec<&Value>> = HashMap::new();
    for s in &spans {
        if s["service_name"] == "truth" && s["kind"] == "SERVER" {
            backend
                .entry(port_of(s, "client.port").unwrap())
                .or_default()
                .push(s);
        }
    }
    for v in backend.values_mut() {
        v.sort_by_key(|s| s["start_time_unix_nano"].as_u64());
    }
    let truth_of_call = |c: &Value| -> Option<String> {
        let id = c["span_id"].as_str().unwrap();
        for (port, list) in &backend {
            if let Some(nth) = list.iter().position(|s| s["parent_span_id"] == id) {
                return truth.get(&(*port, nth as u64)).cloned();
            }
        }
        None
    };
    let calls: Vec<&Value> = spans
        .iter()
        .filter(|s| {
            s["service_name"] == proxy
                && s["kind"] == "CLIENT"
                // The connection's port (server.port is the Host header's,
                // which HAProxy passes on unchanged).
                && port_of(s, "network.peer.port") == Some(truth_port as u64)
        })
        .collect();
    assert_eq!(calls.len(), REQUESTS, "{proxy} same: upstream calls");
    let (mut linked, mut ambiguous, mut failures) = (0, 0, Vec::new());
    for c in &calls {
        let Some(want) = truth_of_call(c) else {
            failures.push(format!("no backend span for {}", c["span_id"]));
            continue;
        };
        let reason = attr_str(c, "zt.link.reason");
        match by_id.get(c["parent_span_id"].as_str().unwrap()) {
            None => {
                if reason == "unlinked_forward_ambiguous" {
                    ambiguous += 1;
                } else {
                    failures.push(format!("{want}: unparented with reason {reason}"));
                }
            }
            Some(parent) => {
                linked += 1;
                let got = port_of(parent, "client.port")
                    .and_then(|p| rid_by_client_port.get(&p).copied());
                if got != Some(want.as_str()) || reason != "forwarded_head" {
                    failures.push(format!(
                        "{want}: parented ({reason}) to the request of {got:?}"
                    ));
                }
            }
        }
    }
    eprintln!(
        "{proxy} identical heads: {linked} linked (only one open), {ambiguous} unparented as ambiguous"
    );
    assert_no_failures(&failures, calls.len());
    assert!(
        ambiguous > 0,
        "{proxy}: 32 clients with one head never overlapped?"
    );

    // The service graph the binary wrote (proxies collapsed by default):
    // the linked forwards are edges through the proxy, the unlinked ones
    // stay hops of their own. The tracer sees the whole host, so other
    // tests' traffic may add to an edge, never take from it.
    let graph: Value =
        serde_json::from_str(&std::fs::read_to_string(&graph_file).unwrap()).expect("graph JSON");
    let edge = |client: &str, server: &str, via: &[&str]| -> u64 {
        graph["edges"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["client"] == client
                    && e["server"] == server
                    && e["via"].as_array().map_or(0, Vec::len) == via.len()
                    && via.iter().enumerate().all(|(i, v)| e["via"][i] == *v)
            })
            .map(|e| e["requests"].as_u64().unwrap())
            .sum()
    };
    let through = edge("proxyload", "gateway", &[proxy]);
    assert!(
        through >= 3 * REQUESTS as u64,
        "{proxy}: proxyload -> gateway through the proxy: {through}\n{graph:#}"
    );
    assert!(
        edge("proxyload", "truth", &[proxy]) >= linked as u64,
        "{proxy}: the identical heads linked\n{graph:#}"
    );
    assert!(
        edge("proxyload", proxy, &[]) >= ambiguous as u64
            && edge(proxy, "truth", &[]) >= ambiguous as u64,
        "{proxy}: the unlinked forwards stay hops of their own\n{graph:#}"
    );
}

#[test]
fn nginx_gateway_links_every_forward_by_proof() {
    if !require_root("nginx_gateway_links_every_forward_by_proof") {
        return;
    }
    run("nginx");
}

#[test]
fn haproxy_gateway_links_every_forward_by_proof() {
    if !require_root("haproxy_gateway_links_every_forward_by_proof") {
        return;
    }
    run("haproxy");
}
