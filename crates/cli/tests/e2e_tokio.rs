//! End to end (root): a tokio multi-thread gateway (tests/topology/tokio)
//! under concurrency. Its tasks resume on any worker thread after an
//! `.await`, so a thread's one open request proves nothing: the tracer
//! must never link its calls by thread. The test fails on any wrong edge
//! and prints the share of the gateway's calls that are linked (tokio
//! tasks are not tracked: none, so far).

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};

const REQUESTS: usize = 300;
const CLIENTS: usize = 24;

#[test]
fn tokio_gateway_calls_are_never_linked_by_thread() {
    if !require_root("tokio_gateway_calls_are_never_linked_by_thread") {
        return;
    }
    // Built offline from the crates this workspace already uses.
    let manifest = repo_root().join("tests/topology/tokio/Cargo.toml");
    let target = repo_root().join("target/topology-tokio");
    let st = Command::new(env!("CARGO"))
        .args(["build", "--release", "--offline", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("cargo");
    assert!(st.success(), "building the tokio gateway failed");
    let bin = target.join("release/zt-tokio-gateway");

    let dir = tempdir("tokio");
    let (gw, auth, users, profile) = (free_port(), free_port(), free_port(), free_port());
    let tracer = Tracer::start(&dir, &["run", "--output", "json"]);
    let _profile = service("profile", profile, &[]);
    let _users = service("users", users, &[("profile", profile)]);
    let _auth = service("auth", auth, &[]);
    let gateway = Command::new(&bin)
        .args([
            gw.to_string(),
            format!("auth={auth}"),
            format!("users={users}"),
            format!("profile={profile}"),
        ])
        .env("OTEL_SERVICE_NAME", "gateway")
        .stdout(Stdio::null())
        .spawn()
        .expect("tokio gateway");
    let _gateway = Proc {
        name: "gateway".into(),
        child: gateway,
    };
    wait_port(gw, "gateway");
    let load = loadgen(gw, REQUESTS, CLIENTS, "k", &[]);
    std::thread::sleep(std::time::Duration::from_millis(800));
    let (out, err) = tracer.stop();
    eprintln!("{}", summary(&err));
    let spans = parse_spans(&out);
    assert_eq!(load.len(), REQUESTS);

    let our_pids: Vec<u64> = [&_gateway, &_auth, &_users, &_profile]
        .iter()
        .map(|p| u64::from(p.pid()))
        .collect();
    let wrong = wrong_edges_where(&spans, |s| pid_of(s).is_some_and(|p| our_pids.contains(&p)));
    assert_no_failures(&wrong, spans.len());

    let calls: Vec<&Value> = spans
        .iter()
        .filter(|s| {
            s["service_name"] == "gateway"
                && s["kind"] == "CLIENT"
                && rid_of(s).is_some_and(|r| r.starts_with('k'))
        })
        .collect();
    assert_eq!(calls.len(), 3 * REQUESTS);
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &calls {
        *reasons.entry(attr_str(s, "zt.link.reason")).or_default() += 1;
        assert_eq!(
            s["resource"]["process.runtime.name"],
            "tokio",
            "{}",
            label(s)
        );
    }
    let linked = calls
        .iter()
        .filter(|s| s["parent_span_id"].as_str() != Some(""))
        .count();
    eprintln!(
        "tokio gateway: {linked} of {} calls linked, 0 wrong; reasons {reasons:?}",
        calls.len()
    );
    assert!(
        !reasons.contains_key("thread"),
        "a tokio call was linked by thread: {reasons:?}"
    );
    // The downstream servers still hang off the calls by TCP sequence.
    let downstream = spans
        .iter()
        .filter(|s| {
            s["kind"] == "SERVER"
                && rid_of(s).is_some_and(|r| r.starts_with('k'))
                && s["service_name"] != "gateway"
                && s["parent_span_id"].as_str() != Some("")
        })
        .count();
    assert!(
        downstream >= 3 * REQUESTS,
        "{downstream} downstream server spans linked"
    );
}
