//! Golden test, no root needed: an event log recorded from the real test
//! topology (tests/golden/http_topology.zrec, 20 requests from 4 clients),
//! replayed through the real binary, gives exactly the ground-truth traces.
//! The expected trees come from tests/topology/service.py's rules; on a
//! mismatch the actual output is written next to the log for review.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;

#[test]
fn recorded_http_topology_replays_to_ground_truth() {
    let golden = repo_root().join("tests/golden");
    let log = golden.join("http_topology.zrec");
    let load: Vec<Value> = std::fs::read_to_string(golden.join("http_topology.load.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(load.len(), 20);
    let out = run_lines(Command::new(zt_trace_bin()).args([
        "replay",
        log.to_str().unwrap(),
        "--output",
        "json",
    ]))
    .join("\n");
    let actual = golden.join("http_topology.actual.jsonl");
    let spans = parse_spans(&out);
    let result = std::panic::catch_unwind(|| check_topology(&spans, &load, "golden replay"));
    match result {
        Ok(shapes) => {
            assert_eq!(shapes.len(), 20);
            let _ = std::fs::remove_file(&actual);
        }
        Err(e) => {
            std::fs::write(&actual, &out).unwrap();
            eprintln!("actual output written to {}", actual.display());
            std::panic::resume_unwind(e);
        }
    }
    // Deterministic: a second replay gives byte-identical output (ids included).
    let again = run_lines(Command::new(zt_trace_bin()).args([
        "replay",
        log.to_str().unwrap(),
        "--output",
        "json",
    ]))
    .join("\n");
    assert_eq!(out, again);
}
