//! End to end, as root: real Python services on loopback, traced by the real
//! zt-trace binary; every request's trace is checked against ground truth.
//! Then the event log recorded in that run is replayed without the kernel
//! and must give the same traces.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

const REQUESTS: usize = 200;
const CLIENTS: usize = 16;

/// Expected outcome of request `n` (see tests/topology/service.py).
fn expected(n: usize) -> (u16, Shape) {
    let route = "GET /api/users/{id}";
    let auth = if n % 10 == 3 { 401 } else { 200 };
    let profile = if n % 10 == 7 { 404 } else { 200 };
    let users = if profile == 200 { 200 } else { 502 };
    let gateway = if auth != 200 {
        auth
    } else if users == 200 {
        200
    } else {
        502
    };
    let hop = |caller: &str, callee: &str, name: &str, status: u16, below: Vec<Shape>| {
        Shape::new(
            format!("{caller} CLIENT {name} {status}"),
            vec![Shape::new(
                format!("{callee} SERVER {name} {status}"),
                below,
            )],
        )
    };
    let mut gw_children = vec![hop("gateway", "auth", "GET /validate", auth, vec![])];
    if auth == 200 {
        let profile_hop = hop("users", "profile", "GET /profile/{id}", profile, vec![]);
        gw_children.push(hop(
            "gateway",
            "users",
            "GET /users/{id}",
            users,
            vec![profile_hop],
        ));
    }
    let tree = hop("loadgen", "gateway", route, gateway, gw_children);
    (gateway, tree)
}

/// Check every request of the load against the spans. Returns the shapes by rid.
fn check(spans: &[Value], load: &[Value], what: &str) -> BTreeMap<String, Vec<Shape>> {
    let traces = by_trace(spans);
    let mut failures = Vec::new();
    let mut shapes = BTreeMap::new();
    for req in load {
        let rid = req["rid"].as_str().unwrap();
        let n = req["n"].as_u64().unwrap() as usize;
        let (want_status, want_shape) = expected(n);
        if req["status"].as_u64() != Some(want_status as u64) {
            failures.push(format!(
                "{rid}: client got {} not {want_status}",
                req["status"]
            ));
            continue;
        }
        let needle = format!("rid={rid}");
        let carries = |s: &Value| attr_str(s, "url.query").split('&').any(|kv| kv == needle);
        let ids: BTreeSet<&String> = traces
            .iter()
            .filter(|(_, ss)| ss.iter().any(|s| carries(s)))
            .map(|(id, _)| id)
            .collect();
        if ids.len() != 1 {
            failures.push(format!("{rid}: in {} traces, want exactly 1", ids.len()));
            continue;
        }
        let trace = &traces[*ids.iter().next().unwrap()];
        if let Some(stray) = trace.iter().find(|s| !carries(s)) {
            failures.push(format!(
                "{rid}: trace holds a span of another request: {stray}"
            ));
            continue;
        }
        match shape_of(trace) {
            Err(e) => failures.push(format!("{rid}: {e}")),
            Ok(got) if got != vec![want_shape.clone()] => {
                failures.push(format!("{rid}: tree\n{got:#?}\nwant\n{want_shape:#?}"))
            }
            Ok(got) => {
                shapes.insert(rid.to_owned(), got);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{what}: {} of {} requests wrong; first ones:\n{}",
        failures.len(),
        load.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    shapes
}

#[test]
fn http_topology_traced_and_linked_end_to_end() {
    if !require_root("http_topology_traced_and_linked_end_to_end") {
        return;
    }
    let dir = tempdir();
    let (gw, auth, users, profile) = (free_port(), free_port(), free_port(), free_port());
    let _profile = service("profile", profile, &[]);
    let _users = service("users", users, &[("profile", profile)]);
    let _auth = service("auth", auth, &[]);
    let _gateway = service("gateway", gw, &[("auth", auth), ("users", users)]);

    let log = dir.join("run.zrec");
    let tracer = Tracer::start(
        &dir,
        &["run", "--output", "json", "--record", log.to_str().unwrap()],
    );
    let load: Vec<Value> = run_lines(
        Command::new("python3")
            .arg(repo_root().join("tests/topology/loadgen.py"))
            .args([
                gw.to_string(),
                REQUESTS.to_string(),
                CLIENTS.to_string(),
                "e2e".into(),
            ]),
    )
    .iter()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    assert_eq!(load.len(), REQUESTS);
    let (out, err) = tracer.stop();
    eprintln!(
        "{}",
        err.lines()
            .filter(|l| l.starts_with("zt-trace:"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        err.contains("kernel drops: 0 events lost"),
        "drops reported:\n{err}"
    );

    let live = check(&parse_spans(&out), &load, "live");
    assert_no_probes_left();

    // Golden: the same log replayed, without the kernel.
    let replayed = run_lines(Command::new(zt_trace_bin()).args([
        "replay",
        log.to_str().unwrap(),
        "--output",
        "json",
    ]))
    .join("\n");
    let again = check(&parse_spans(&replayed), &load, "replay");
    assert_eq!(live, again, "replay gives the traces of the live run");
}

/// No program of ours stays attached once the tracer exited.
pub fn assert_no_probes_left() {
    let out = Command::new("bpftool").args(["prog", "list"]).output();
    if let Ok(out) = out {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.lines().any(|l| l.contains(" name zt_")),
            "zt-trace programs still loaded:\n{text}"
        );
    }
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("zt-e2e-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
