//! End to end, as root: real Python services on loopback, traced by the real
//! zt-trace binary; every request's trace is checked against ground truth.
//! Then the event log recorded in that run is replayed without the kernel
//! and must give the same traces.

mod common;

use common::*;
use std::process::Command;

const REQUESTS: usize = 200;
const CLIENTS: usize = 16;

#[test]
fn http_topology_traced_and_linked_end_to_end() {
    if !require_root("http_topology_traced_and_linked_end_to_end") {
        return;
    }
    let dir = tempdir("e2e");
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
    let load = loadgen(gw, REQUESTS, CLIENTS, "e2e", &[]);
    assert_eq!(load.len(), REQUESTS);
    let (out, err) = tracer.stop();
    eprintln!("{}", summary(&err));
    assert!(
        err.contains("kernel drops: 0 events lost"),
        "drops reported:\n{err}"
    );

    let live = check_topology(&parse_spans(&out), &load, "live");
    assert_no_probes_left();

    // Golden: the same log replayed, without the kernel.
    let replayed = run_lines(Command::new(zt_trace_bin()).args([
        "replay",
        log.to_str().unwrap(),
        "--output",
        "json",
    ]))
    .join("\n");
    let again = check_topology(&parse_spans(&replayed), &load, "replay");
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
