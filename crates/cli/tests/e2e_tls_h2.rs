//! As root: HTTP/2 over TLS (ALPN h2) through the OpenSSL uprobes. curl
//! (OpenSSL, nghttp2) calls nginx (`listen ... ssl http2`), which proxies
//! over plain HTTP/1.1 to a plain-HTTP Python backend:
//! - one request at a time (separate curl processes, and one curl process
//!   reusing its connection): the whole chain links, as in
//!   e2e_tls.rs's curl -> nginx test;
//! - 16 streams multiplexed on one connection: curl's requests link to
//!   nginx's and nginx's upstream calls to the backend's; nginx's single
//!   worker has many requests open at once, so its thread proves nothing,
//!   but each upstream HTTP/1.1 request carries the head of the one HTTP/2
//!   request it forwards (unique here: the request id is in the path), so
//!   it links by the `forward` rule (`forwarded_head`).

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;

const NAME: &str = "GET /profile/{id}";

fn url(port: u16, i: usize, tag: &str) -> String {
    format!("https://127.0.0.1:{port}/profile/{i}?rid={tag}{i:03}")
}

fn want_status(i: usize) -> u64 {
    if i % 10 == 7 {
        404
    } else {
        200
    }
}

/// Run curl over HTTP/2 for `urls` (extra arguments before them); returns,
/// per URL, curl's status code, HTTP version and new connections made.
fn curl_h2(extra: &[&str], urls: &[String]) -> BTreeMap<String, (u64, String, u64)> {
    let mut cmd = Command::new("curl");
    // --no-progress-meter, not -s: -s leaves --parallel's progress meter on
    // (curl 7.88) and hides curl's error messages.
    cmd.args(["--http2", "-k", "--no-progress-meter"])
        .args(extra)
        .args([
            "-w",
            "%{url} %{response_code} %{http_version} %{num_connects}\\n",
        ]);
    for u in urls {
        cmd.args(["-o", "/dev/null", u]);
    }
    run_lines(&mut cmd)
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 4, "curl -w line {l:?}");
            (
                f[0].to_owned(),
                (
                    f[1].parse().unwrap(),
                    f[2].to_owned(),
                    f[3].parse().unwrap(),
                ),
            )
        })
        .collect()
}

/// The spans of request `rid`, by label; checks the attributes every
/// request must have and returns (curl CLIENT, nginx SERVER, nginx CLIENT,
/// profile SERVER).
fn hops<'a>(spans: &'a [Value], rid: &str, status: u64) -> Result<[&'a Value; 4], String> {
    let of: Vec<&Value> = spans.iter().filter(|s| mentions(s, rid)).collect();
    let find = |service: &str, kind: &str| {
        let m: Vec<&&Value> = of
            .iter()
            .filter(|s| s["service_name"] == service && s["kind"] == kind)
            .collect();
        match m[..] {
            [s] => Ok(*s),
            _ => Err(format!(
                "{rid}: {} {service} {kind} spans, want 1: {:?}",
                m.len(),
                of.iter().map(|s| label(s)).collect::<Vec<_>>()
            )),
        }
    };
    let hops = [
        find("curl", "CLIENT")?,
        find("nginx", "SERVER")?,
        find("nginx", "CLIENT")?,
        find("profile", "SERVER")?,
    ];
    if of.len() != 4 {
        return Err(format!("{rid}: {} spans, want 4", of.len()));
    }
    for s in hops {
        if s["name"] != NAME || attr(s, "http.response.status_code") != Some(&Value::from(status)) {
            return Err(format!("{rid}: {}", label(s)));
        }
    }
    // The TLS hop speaks HTTP/2, the upstream hop HTTP/1.1.
    for (s, scheme, version) in [
        (hops[0], "https", "2"),
        (hops[1], "https", "2"),
        (hops[2], "http", "1.1"),
        (hops[3], "http", "1.1"),
    ] {
        if attr_str(s, "url.scheme") != scheme || attr_str(s, "network.protocol.version") != version
        {
            return Err(format!(
                "{rid}: {} has url.scheme {:?} network.protocol.version {:?}, want {scheme} {version}",
                label(s),
                attr_str(s, "url.scheme"),
                attr_str(s, "network.protocol.version")
            ));
        }
    }
    Ok(hops)
}

fn child_of(child: &Value, parent: &Value) -> bool {
    child["parent_span_id"] == parent["span_id"] && child["trace_id"] == parent["trace_id"]
}

#[test]
fn curl_h2_to_nginx_tls_proxy_to_plain_backend() {
    if !require_root("curl_h2_to_nginx_tls_proxy_to_plain_backend") {
        return;
    }
    let dir = tempdir("tls-h2-nginx");
    let backend = free_port();
    let _b = service("profile", backend, &[]);
    let port = free_port();
    let _nginx = nginx_tls_proxy(&dir, port, backend, true);
    let tracer = Tracer::start(&dir, &["run", "--output", "json"]);
    // One request at a time, as in e2e_tls.rs (an nginx worker serving
    // several requests at once cannot attribute its upstream calls): first
    // a curl process per request, then one curl process sending the rest
    // one after another on the same connection (stream ids 1, 3, 5, ...;
    // HPACK dynamic table entries reused).
    const N: usize = 24;
    let urls: Vec<String> = (0..N).map(|i| url(port, i, "h2ngx")).collect();
    let mut got = BTreeMap::new();
    for u in &urls[..N / 2] {
        got.extend(curl_h2(&[], std::slice::from_ref(u)));
    }
    let reused = curl_h2(&[], &urls[N / 2..]);
    assert_eq!(
        reused.values().map(|r| r.2).sum::<u64>(),
        1,
        "curl reused one connection: {reused:?}"
    );
    got.extend(reused);
    let (out, _) = tracer.stop();
    let spans = parse_spans(&out);
    let mut failures = Vec::new();
    for (i, u) in urls.iter().enumerate() {
        let rid = format!("h2ngx{i:03}");
        let status = want_status(i);
        assert_eq!(got[u].0, status, "{rid}: curl's status");
        assert_eq!(got[u].1, "2", "{rid}: curl spoke HTTP/2");
        let [curl, server, upstream, backend] = match hops(&spans, &rid, status) {
            Ok(h) => h,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        // The same tree as the HTTP/1.1 test in e2e_tls.rs: curl's request
        // is the parent of nginx's (TLS plaintext offset), nginx's upstream
        // call a child of the request it forwards (the same head: the
        // `forward` rule), the backend's a child of nginx's call (TCP
        // sequence).
        for (c, p, what) in [
            (server, curl, "nginx SERVER not the child of curl CLIENT"),
            (
                upstream,
                server,
                "nginx CLIENT not the child of nginx SERVER",
            ),
            (
                backend,
                upstream,
                "profile SERVER not the child of nginx CLIENT",
            ),
        ] {
            if !child_of(c, p) {
                failures.push(format!("{rid}: {what} ({})", attr_str(c, "zt.link.reason")));
            }
        }
        let of: Vec<&Value> = spans.iter().filter(|s| mentions(s, &rid)).collect();
        if let Err(e) = shape_of(&of) {
            failures.push(format!("{rid}: {e}"));
        }
    }
    assert_no_failures(&failures, N);
}

#[test]
fn curl_h2_16_streams_multiplexed_to_nginx() {
    if !require_root("curl_h2_16_streams_multiplexed_to_nginx") {
        return;
    }
    let dir = tempdir("tls-h2-mux");
    let backend = free_port();
    let _b = service("profile", backend, &[]);
    let port = free_port();
    let _nginx = nginx_tls_proxy(&dir, port, backend, true);
    let tracer = Tracer::start(&dir, &["run", "--output", "json"]);
    const N: usize = 64;
    let urls: Vec<String> = (0..N).map(|i| url(port, i, "h2mux")).collect();
    let got = curl_h2(&["--parallel", "--parallel-max", "16"], &urls);
    assert_eq!(got.len(), N);
    assert_eq!(
        got.values().map(|r| r.2).sum::<u64>(),
        1,
        "every request multiplexed on one connection: {got:?}"
    );
    let (out, _) = tracer.stop();
    let spans = parse_spans(&out);
    let mut failures = Vec::new();
    for (i, u) in urls.iter().enumerate() {
        let rid = format!("h2mux{i:03}");
        let status = want_status(i);
        assert_eq!(got[u].0, status, "{rid}: curl's status");
        assert_eq!(got[u].1, "2", "{rid}: curl spoke HTTP/2");
        let [curl, server, upstream, backend] = match hops(&spans, &rid, status) {
            Ok(h) => h,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        if !child_of(server, curl) {
            failures.push(format!("{rid}: nginx SERVER not the child of curl CLIENT"));
        }
        if !child_of(backend, upstream) {
            failures.push(format!(
                "{rid}: profile SERVER not the child of nginx CLIENT"
            ));
        }
        // nginx's single worker thread has several requests open when it
        // calls upstream: the thread proves nothing (ARCHITECTURE.md,
        // "Linking"), the forwarded head does.
        if !child_of(upstream, server) || attr_str(upstream, "zt.link.reason") != "forwarded_head" {
            failures.push(format!(
                "{rid}: nginx CLIENT not linked to its request by its head ({})",
                attr_str(upstream, "zt.link.reason")
            ));
        }
    }
    assert_no_failures(&failures, N);
}
