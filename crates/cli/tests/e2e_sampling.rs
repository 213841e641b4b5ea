//! Sampling end to end, as root: the real topology (tests/topology), the
//! real zt-trace binary. Errors come deterministically from the request
//! number (service.py: n % 10 == 3 -> 401 at auth, 7 -> 404 at profile,
//! 502 above it) and so do slow requests (profile answers n % 10 == 5
//! `SLOW_MS` late).
//!
//! - At `--sample 0` with `--keep-errors --keep-slower-than`, every error
//!   and every slow request comes out as its whole, correct trace, with
//!   the reason on its root; nothing else comes out unless a rule really
//!   matched it.
//! - At `--sample 0.5`, every request is either entirely present, with its
//!   whole correct tree, or entirely absent, and the kept fraction is
//!   binomial.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

const CLIENTS: usize = 16;
const SLOW_MS: u64 = 800;
const SLOWER_THAN_MS: u64 = 500;

struct Topology {
    gw: u16,
    _procs: Vec<Proc>,
}

fn topology() -> Topology {
    let (gw, auth, users, profile) = (free_port(), free_port(), free_port(), free_port());
    let slow = SLOW_MS.to_string();
    let procs = vec![
        service_env("profile", profile, &[], &[("ZT_SLOW_MS", &slow)]),
        service("users", users, &[("profile", profile)]),
        service("auth", auth, &[]),
        service("gateway", gw, &[("auth", auth), ("users", users)]),
    ];
    Topology { gw, _procs: procs }
}

/// The traces of request `rid`: (trace id, spans) of every trace holding a
/// span that carries it.
fn traces_of<'a>(
    by: &'a HashMap<String, Vec<&'a Value>>,
    rid: &str,
) -> Vec<(&'a String, &'a Vec<&'a Value>)> {
    let needle = format!("rid={rid}");
    by.iter()
        .filter(|(_, ss)| {
            ss.iter()
                .any(|s| attr_str(s, "url.query").split('&').any(|kv| kv == needle))
        })
        .collect()
}

fn root<'a>(spans: &[&'a Value]) -> &'a Value {
    let ids: BTreeSet<&str> = spans
        .iter()
        .map(|s| s["span_id"].as_str().unwrap())
        .collect();
    spans
        .iter()
        .find(|s| !ids.contains(s["parent_span_id"].as_str().unwrap()))
        .copied()
        .unwrap()
}

fn duration_ms(s: &Value) -> f64 {
    (s["end_time_unix_nano"].as_u64().unwrap() - s["start_time_unix_nano"].as_u64().unwrap()) as f64
        / 1e6
}

/// Request `n`'s trace is present exactly once, whole, with the expected
/// tree; returns its root.
fn check_whole<'a>(
    by: &'a HashMap<String, Vec<&'a Value>>,
    rid: &str,
    n: usize,
) -> Result<&'a Value, String> {
    let found = traces_of(by, rid);
    if found.len() != 1 {
        return Err(format!("{rid}: in {} traces, want 1", found.len()));
    }
    let spans = found[0].1;
    let want = expected_topology(n).1;
    match shape_of(spans) {
        Ok(got) if got == vec![want.clone()] => Ok(root(spans)),
        Ok(got) => Err(format!("{rid}: tree\n{got:#?}\nwant\n{want:#?}")),
        Err(e) => Err(format!("{rid}: {e}")),
    }
}

#[test]
fn errors_and_slow_traces_are_all_kept_whole_at_sample_0() {
    if !require_root("errors_and_slow_traces_are_all_kept_whole_at_sample_0") {
        return;
    }
    const REQUESTS: usize = 200;
    let dir = tempdir("e2e-tail");
    let topo = topology();
    let slower = SLOWER_THAN_MS.to_string();
    let tracer = Tracer::start(
        &dir,
        &[
            "run",
            "--output",
            "json",
            "--sample",
            "0",
            "--keep-errors",
            "--keep-slower-than",
            &slower,
        ],
    );
    let load = loadgen(topo.gw, REQUESTS, CLIENTS, "tail", &[]);
    assert_eq!(load.len(), REQUESTS);
    let (out, err) = tracer.stop();
    eprintln!("{}", summary(&err));
    let spans = parse_spans(&out);
    let by = by_trace(&spans);

    let mut failures = Vec::new();
    let (mut errors, mut slow, mut others_kept) = (0, 0, 0);
    for req in &load {
        let rid = req["rid"].as_str().unwrap();
        let n = req["n"].as_u64().unwrap() as usize;
        let want_status = expected_topology(n).0;
        if req["status"].as_u64() != Some(want_status as u64) {
            failures.push(format!("{rid}: client got {}", req["status"]));
            continue;
        }
        let want_reason = match n % 10 {
            3 | 7 => Some("error"),
            5 => Some("slow"),
            _ => None,
        };
        match want_reason {
            Some(why) => match check_whole(&by, rid, n) {
                Ok(root) => {
                    let got = attr_str(root, "zt.sampling.reason");
                    if got != why {
                        failures.push(format!("{rid}: zt.sampling.reason {got:?}, want {why}"));
                    }
                    if why == "error" {
                        errors += 1
                    } else {
                        slow += 1
                    }
                }
                Err(e) => failures.push(e),
            },
            None => {
                // Nothing else is kept, unless the machine made it truly
                // slow (a rule that matched, correctly).
                for (_, ss) in traces_of(&by, rid) {
                    let r = root(ss);
                    let ok = attr_str(r, "zt.sampling.reason") == "slow"
                        && duration_ms(r) > SLOWER_THAN_MS as f64;
                    if !ok {
                        failures.push(format!(
                            "{rid}: kept without a reason: {} ({:.0} ms)",
                            attr_str(r, "zt.sampling.reason"),
                            duration_ms(r)
                        ));
                    }
                    others_kept += 1;
                }
            }
        }
    }
    assert_no_failures(&failures, REQUESTS);
    assert_eq!(errors, REQUESTS / 10 * 2, "every error trace kept");
    assert_eq!(slow, REQUESTS / 10, "every slow trace kept");
    eprintln!("kept {errors} error and {slow} slow traces; {others_kept} others kept as slow");
    // The statistics still count every trace.
    let line = summary(&err);
    assert!(line.contains("sampling: kept"), "{line}");
    let emitted: usize = line
        .split(" emitted in ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(emitted >= REQUESTS, "{emitted} traces counted: {line}");
}

#[test]
fn head_sampling_keeps_whole_traces_at_the_ratio() {
    if !require_root("head_sampling_keeps_whole_traces_at_the_ratio") {
        return;
    }
    const REQUESTS: usize = 2000;
    let dir = tempdir("e2e-head");
    let topo = topology();
    let tracer = Tracer::start(&dir, &["run", "--output", "json", "--sample", "0.5"]);
    let load = loadgen(topo.gw, REQUESTS, CLIENTS, "head", &[]);
    let (out, err) = tracer.stop();
    eprintln!("{}", summary(&err));
    let spans = parse_spans(&out);
    let by = by_trace(&spans);
    let mut failures = Vec::new();
    let mut kept = 0;
    for req in &load {
        let rid = req["rid"].as_str().unwrap();
        let n = req["n"].as_u64().unwrap() as usize;
        if req["status"].as_u64() != Some(expected_topology(n).0 as u64) {
            failures.push(format!("{rid}: client got {}", req["status"]));
            continue;
        }
        // Absent: no span of it anywhere (no partial trace).
        let any = spans.iter().any(|s| mentions(s, rid));
        if !any {
            continue;
        }
        match check_whole(&by, rid, n) {
            Ok(root) => {
                kept += 1;
                let why = attr_str(root, "zt.sampling.reason");
                if why != "head" {
                    failures.push(format!("{rid}: zt.sampling.reason {why:?}"));
                }
            }
            Err(e) => failures.push(format!("partial or wrong: {e}")),
        }
    }
    assert_no_failures(&failures, REQUESTS);
    // 99% binomial interval around half of the requests.
    let (mean, sd) = (REQUESTS as f64 * 0.5, (REQUESTS as f64 * 0.25).sqrt());
    let (lo, hi) = (mean - 2.576 * sd, mean + 2.576 * sd);
    assert!(
        (lo..=hi).contains(&(kept as f64)),
        "kept {kept} of {REQUESTS}, 99% interval [{lo:.0}, {hi:.0}]"
    );
    eprintln!("kept {kept} of {REQUESTS} requests at --sample 0.5");
}

/// Parent-based: requests that arrive with a W3C `traceparent` follow its
/// sampled flag, whatever the ratio would say.
#[test]
fn an_inbound_traceparent_sampled_flag_is_followed() {
    if !require_root("an_inbound_traceparent_sampled_flag_is_followed") {
        return;
    }
    const EACH: usize = 30;
    let dir = tempdir("e2e-parent");
    let topo = topology();
    let tracer = Tracer::start(&dir, &["run", "--output", "json", "--sample", "0.5"]);
    // Request i (0-based) carries trace id 00..0<i+1>ab.. with flag 01 for
    // the first EACH, 00 for the next EACH; n = 10 * i + 1 (no error, not
    // slow: status 200 everywhere).
    let script = format!(
        r#"
import urllib.request
for i in range({total}):
    tid = "%030x%02x" % (0x5a3e0000 + i, 0xab)
    flags = "01" if i < {each} else "00"
    req = urllib.request.Request(
        "http://127.0.0.1:{port}/api/users/%d?rid=parent%05d" % (10 * i + 1, i),
        headers={{"traceparent": "00-%s-00f067aa0ba902b7-%s" % (tid, flags)}})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200, r.status
        r.read()
    print(tid)
"#,
        total = 2 * EACH,
        each = EACH,
        port = topo.gw
    );
    let tids = run_lines(std::process::Command::new("python3").args(["-c", &script]));
    assert_eq!(tids.len(), 2 * EACH);
    let (out, err) = tracer.stop();
    eprintln!("{}", summary(&err));
    let spans = parse_spans(&out);
    let by = by_trace(&spans);
    // The gateway's part of request n: its SERVER span (adopting the
    // traceparent) and everything under it.
    let want = expected_topology(1).1.children[0].clone();
    let mut failures = Vec::new();
    for (i, tid) in tids.iter().enumerate() {
        let got = by.get(tid.as_str());
        if i < EACH {
            let Some(ss) = got else {
                failures.push(format!("{tid}: sampled=1 but not output"));
                continue;
            };
            match shape_of(ss) {
                Ok(shape) if shape == vec![want.clone()] => {}
                other => failures.push(format!("{tid}: {other:?}")),
            }
            let r = root(ss);
            if attr_str(r, "zt.sampling.reason") != "parent" {
                failures.push(format!(
                    "{tid}: reason {:?}",
                    attr_str(r, "zt.sampling.reason")
                ));
            }
        } else if let Some(ss) = got {
            failures.push(format!("{tid}: sampled=0 but {} spans output", ss.len()));
        }
    }
    assert_no_failures(&failures, 2 * EACH);
}
