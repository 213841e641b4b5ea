//! Golden service graphs, no root needed: event logs recorded from the real
//! test topologies (tests/golden/*.zrec) replayed through `zt-trace graph
//! --from`, and the graph checked node by node and edge by edge against
//! the ground truth the topology's rules give for the recorded load
//! (tests/topology/service.py, inventory.py): every request and error
//! counted exactly once. The whole JSON (latencies included: a replay is
//! deterministic) must also equal tests/golden/<name>.graph.json; on a
//! mismatch the actual graph is written next to it for review.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;

type Edges = BTreeMap<(String, String, String), (u64, u64)>;

fn graph_of(name: &str) -> (Value, String) {
    let golden = repo_root().join("tests/golden");
    let log = golden.join(format!("{name}.zrec"));
    let out = run_lines(Command::new(zt_trace_bin()).args([
        "graph",
        "--from",
        log.to_str().unwrap(),
        "--format",
        "json",
    ]))
    .join("\n");
    (serde_json::from_str(&out).unwrap(), out)
}

fn load(name: &str) -> Vec<usize> {
    std::fs::read_to_string(repo_root().join(format!("tests/golden/{name}.load.jsonl")))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["n"]
                .as_u64()
                .unwrap() as usize
        })
        .collect()
}

fn edges_of(g: &Value) -> Edges {
    g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_owned();
            (
                (s("client"), s("server"), s("protocol")),
                (
                    e["requests"].as_u64().unwrap(),
                    e["errors"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

fn nodes_of(g: &Value) -> Vec<(String, String)> {
    g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_owned(),
                n["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn add(e: &mut Edges, c: &str, s: &str, p: &str, failed: bool) {
    let x = e.entry((c.into(), s.into(), p.into())).or_default();
    x.0 += 1;
    x.1 += failed as u64;
}

/// The whole JSON equals the checked-in golden file.
fn matches_golden_file(name: &str, json: &str) {
    let golden = repo_root().join(format!("tests/golden/{name}.graph.json"));
    let actual = repo_root().join(format!("tests/golden/{name}.graph.actual.json"));
    let want = std::fs::read_to_string(&golden).unwrap_or_default();
    if want.trim() != json.trim() {
        std::fs::write(&actual, json).unwrap();
        panic!(
            "{name}: graph differs from {}; actual written to {}",
            golden.display(),
            actual.display()
        );
    }
    let _ = std::fs::remove_file(actual);
}

#[test]
fn http_topology_graph_is_the_ground_truth() {
    let (g, json) = graph_of("http_topology");
    let mut want = Edges::new();
    for n in load("http_topology") {
        // tests/topology/service.py: auth 401 when n % 10 == 3; profile
        // 404 when n % 10 == 7, then users and gateway answer 502. A
        // client sees 4xx as a failure, a server only 5xx: an edge fails
        // when either end did.
        let auth_ok = n % 10 != 3;
        let profile_ok = n % 10 != 7;
        add(
            &mut want,
            "loadgen",
            "gateway",
            "http",
            !(auth_ok && profile_ok),
        );
        add(&mut want, "gateway", "auth", "http", !auth_ok);
        if auth_ok {
            add(&mut want, "gateway", "users", "http", !profile_ok);
            add(&mut want, "users", "profile", "http", !profile_ok);
        }
    }
    assert_eq!(edges_of(&g), want, "{json}");
    assert_eq!(
        nodes_of(&g),
        ["auth", "gateway", "loadgen", "profile", "users"]
            .map(|n| (n.to_owned(), "service".to_owned()))
            .to_vec()
    );
    matches_golden_file("http_topology", &json);
}

#[test]
fn full_topology_graph_is_the_ground_truth() {
    let (g, json) = graph_of("full_topology");
    let mut want = Edges::new();
    let (mysql, pg, redis) = (
        "mysql 127.0.0.1:3306",
        "postgresql 127.0.0.1:5432",
        "redis 127.0.0.1:6379",
    );
    for n in load("full_topology") {
        // service.py and inventory.py: auth 401 when n % 10 == 3; GetItem
        // NOT_FOUND when n % 10 == 7 and INTERNAL (a missing table) when
        // n % 10 == 5; users' SELECT fails when n % 10 == 9 (then nothing
        // else); the pipeline's INCR fails when n % 10 == 1; profile 404
        // when n % 10 == 7.
        let d = n % 10;
        let auth_ok = d != 3;
        add(
            &mut want,
            "loadgen",
            "gateway",
            "http",
            matches!(d, 3 | 5 | 7 | 9),
        );
        add(&mut want, "gateway", "auth", "http", !auth_ok);
        if !auth_ok {
            continue;
        }
        add(
            &mut want,
            "gateway",
            "inventory",
            "grpc",
            matches!(d, 5 | 7),
        );
        add(&mut want, "inventory", mysql, "mysql", d == 5);
        add(&mut want, "gateway", "users", "http", matches!(d, 7 | 9));
        add(&mut want, "users", pg, "postgresql", d == 9);
        if d == 9 {
            continue;
        }
        add(&mut want, "users", redis, "redis", false); // SET
        add(&mut want, "users", redis, "redis", d == 1); // INCR
        add(&mut want, "users", "profile", "http", d == 7);
    }
    assert_eq!(edges_of(&g), want, "{json}");
    let mut nodes = vec![
        ("auth", "service"),
        ("gateway", "service"),
        ("inventory", "service"),
        ("loadgen", "service"),
        (mysql, "database"),
        (pg, "database"),
        ("profile", "service"),
        (redis, "cache"),
        ("users", "service"),
    ];
    nodes.sort();
    assert_eq!(
        nodes_of(&g),
        nodes
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect::<Vec<_>>()
    );
    matches_golden_file("full_topology", &json);
}

/// A graph saved as JSON draws again in every format, the same as from the
/// log it came from.
#[test]
fn a_saved_graph_draws_again() {
    let dir = tempdir("graph-json");
    let log = repo_root().join("tests/golden/full_topology.zrec");
    let json = dir.join("g.json");
    let draw = |from: &std::path::Path, format: &str| {
        run_lines(Command::new(zt_trace_bin()).args([
            "graph",
            "--from",
            from.to_str().unwrap(),
            "--format",
            format,
        ]))
        .join("\n")
    };
    std::fs::write(&json, draw(&log, "json")).unwrap();
    for format in ["text", "dot", "svg", "json"] {
        assert_eq!(draw(&json, format), draw(&log, format), "{format}");
    }
    let text = draw(&json, "text");
    assert!(
        text.contains("users calls:\n  → postgresql 127.0.0.1:5432 via PostgreSQL (avg: "),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `replay --graph FILE.json` writes the graph `graph --from` prints.
#[test]
fn replay_writes_the_graph_when_it_stops() {
    let dir = tempdir("replay-graph");
    let log = repo_root().join("tests/golden/full_topology.zrec");
    let file = dir.join("g.json");
    run_lines(Command::new(zt_trace_bin()).args([
        "replay",
        log.to_str().unwrap(),
        "--output",
        "none",
        "--graph",
        file.to_str().unwrap(),
    ]));
    let written = std::fs::read_to_string(&file).unwrap();
    let (_, printed) = graph_of("full_topology");
    assert_eq!(written.trim(), printed.trim());
    let _ = std::fs::remove_dir_all(dir);
}
