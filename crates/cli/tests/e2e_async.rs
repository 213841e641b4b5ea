//! As root: an asyncio gateway (one event-loop thread serving 16 concurrent
//! requests) calling two thread-per-request backends, 200 requests. The
//! loop thread always has many requests open, so the thread proves nothing;
//! each request's asyncio task runs in its own Python Context, and the
//! response written in that Context names the request its calls were made
//! for. Every request must be one trace with the right tree.

mod common;

use common::*;
use std::collections::BTreeMap;

const REQUESTS: usize = 200;
const CLIENTS: usize = 16;

fn hop(caller: &str, callee: &str, name: &str, status: u64, below: Vec<Shape>) -> Shape {
    Shape::new(
        format!("{caller} CLIENT {name} {status}"),
        vec![Shape::new(
            format!("{callee} SERVER {name} {status}"),
            below,
        )],
    )
}

fn expected(n: usize) -> (u64, Shape) {
    let auth_ok = n % 10 != 3;
    let profile = if n % 10 == 7 { 404 } else { 200 };
    let status = match (auth_ok, profile) {
        (false, _) => 401,
        (true, 200) => 200,
        _ => 502,
    };
    let mut calls = vec![hop(
        "gateway",
        "auth",
        "GET /validate",
        if auth_ok { 200 } else { 401 },
        vec![],
    )];
    if auth_ok {
        calls.push(hop(
            "gateway",
            "profile",
            "GET /profile/{id}",
            profile,
            vec![],
        ));
    }
    (
        status,
        hop("loadgen", "gateway", "GET /api/users/{id}", status, calls),
    )
}

#[test]
fn asyncio_gateway_calls_link_through_task_contexts() {
    if !require_root("asyncio_gateway_calls_link_through_task_contexts") {
        return;
    }
    let dir = tempdir("async");
    let mut tracer = Tracer::start(&dir, &["run", "--output", "json"]);
    let (gw, auth, profile) = (free_port(), free_port(), free_port());
    let _profile = service("profile", profile, &[]);
    let _auth = service("auth", auth, &[]);
    let _gateway = script_service(
        "async_gateway.py",
        "gateway",
        gw,
        &[("auth", auth), ("profile", profile)],
    );
    // The services started after the tracer: the context probes reach
    // their Python runtime once its symbols are resolved. Requests before
    // that carry no context and would (rightly) stay unlinked.
    tracer.wait_log("CPython context probes", 60);
    let load = loadgen(gw, REQUESTS, CLIENTS, "asy", &[]);
    let (out, err) = tracer.stop();
    eprintln!("{}", summary(&err));
    let spans = parse_spans(&out);
    let traces = by_trace(&spans);
    assert_eq!(load.len(), REQUESTS);

    let mut failures = Vec::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for req in &load {
        let rid = req["rid"].as_str().unwrap();
        let n = req["n"].as_u64().unwrap() as usize;
        let (want_status, want) = expected(n);
        if req["status"].as_u64() != Some(want_status) {
            failures.push(format!(
                "{rid}: client got {} not {want_status}",
                req["status"]
            ));
            continue;
        }
        for s in spans
            .iter()
            .filter(|s| s["service_name"] == "gateway" && s["kind"] == "CLIENT" && mentions(s, rid))
        {
            *reasons
                .entry(attr_str(s, "zt.link.reason").to_owned())
                .or_default() += 1;
        }
        let ids: Vec<&String> = traces
            .iter()
            .filter(|(_, ss)| ss.iter().any(|s| mentions(s, rid)))
            .map(|(id, _)| id)
            .collect();
        if ids.len() != 1 {
            failures.push(format!("{rid}: in {} traces, want 1", ids.len()));
            continue;
        }
        let trace = &traces[ids[0]];
        if let Some(stray) = trace.iter().find(|s| !mentions(s, rid)) {
            failures.push(format!("{rid}: span of another request: {}", label(stray)));
            continue;
        }
        match shape_of(trace) {
            Err(e) => failures.push(format!("{rid}: {e}")),
            Ok(got) if got != vec![want.clone()] => {
                failures.push(format!("{rid}: tree\n{got:#?}\nwant\n{want:#?}"))
            }
            Ok(_) => {}
        }
    }
    eprintln!("gateway calls by link reason: {reasons:?}");
    assert_no_failures(&failures, REQUESTS);
    // Concurrency keeps the loop thread ambiguous: the Context does the work.
    let by_context = reasons.get("context").copied().unwrap_or(0);
    assert!(
        by_context * 2 >= reasons.values().sum::<usize>(),
        "only {by_context} calls linked through their task's Context: {reasons:?}"
    );
}
