//! End to end, as root: requests a real server rejects are still spans.
//!
//! A raw TCP client sends malformed HTTP/1.1 requests (a control byte in the
//! method, control bytes or invalid UTF-8 in the path, an unsupported
//! version, a header name with a control byte) to a real nginx on loopback.
//! nginx answers each one (`400`, `505`, or `200` for a path that is only
//! invalid UTF-8) and the tracer must report one SERVER span (nginx) and one
//! CLIENT span (this test process) per request: the status paired, the
//! invalid parts escaped (`\x01`), the unknown method as `_OTHER` with
//! `http.request.method_original`, and `zt.http.invalid` naming what was
//! invalid. Before the HTTP/1 parser decoded rejected heads, these requests
//! gave no span at all.

mod common;

use common::*;
use serde_json::{json, Map, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

/// nginx (1 worker, foreground) on `port`, answering `200 ok` to every
/// request it accepts.
fn nginx(dir: &std::path::Path, port: u16) -> Proc {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1; pid {d}/nginx.pid; error_log {d}/logs/error.log; daemon off;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off;\n\
               client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};\n\
               uwsgi_temp_path {d}; scgi_temp_path {d};\n\
               server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"ok\\n\"; }} }} }}\n",
            d = dir.display(),
        ),
    )
    .unwrap();
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx");
    let p = Proc {
        name: "nginx".into(),
        child,
    };
    wait_port(port, "nginx");
    p
}

/// One malformed request and what its spans must say.
struct Case {
    what: &'static str,
    /// Sent first on the same connection (so the connection is detected as
    /// HTTP/1 from a valid request), answered `200`.
    first: Option<String>,
    request: Vec<u8>,
    status: i64,
    /// `http.request.method`, and `http.request.method_original` if `_OTHER`.
    method: (&'static str, Option<&'static str>),
    /// `url.path` as reported (escaped).
    path: String,
    /// `http.route` / `url.template`, when the path is valid.
    route: Option<String>,
    version: Option<&'static str>,
    invalid: &'static str,
    name: String,
}

fn cases(rid: &str) -> Vec<Case> {
    let p = |tail: &str| format!("/zt-bad/{rid}/{tail}");
    let r = |tail: &str| format!("/zt-bad/{{id}}/{tail}");
    let head = |line: &[u8], extra: &str| {
        let mut v = line.to_vec();
        v.extend_from_slice(
            format!("\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n").as_bytes(),
        );
        v
    };
    vec![
        Case {
            what: "control byte in the method",
            first: None,
            request: head(format!("G\x01T {} HTTP/1.1", p("method")).as_bytes(), ""),
            status: 400,
            method: ("_OTHER", Some("G\\x01T")),
            path: p("method"),
            route: Some(r("method")),
            version: Some("1.1"),
            invalid: "method",
            name: format!("HTTP {}", r("method")),
        },
        Case {
            what: "control bytes and DEL in the path",
            first: None,
            request: head(
                &[b"GET ", p("ctl").as_bytes(), b"\x01x\x7f HTTP/1.1"].concat(),
                "",
            ),
            status: 400,
            method: ("GET", None),
            path: format!("{}\\x01x\\x7f", p("ctl")),
            route: None,
            version: Some("1.1"),
            invalid: "target",
            name: "GET".into(),
        },
        Case {
            what: "invalid UTF-8 in the path (nginx accepts it)",
            first: None,
            request: head(
                &[b"GET ", p("caf").as_bytes(), b"\xe9 HTTP/1.1"].concat(),
                "",
            ),
            status: 200,
            method: ("GET", None),
            path: format!("{}\\xe9", p("caf")),
            route: None,
            version: Some("1.1"),
            invalid: "target",
            name: "GET".into(),
        },
        Case {
            what: "unsupported version after a valid request",
            first: Some(p("first")),
            request: head(format!("GET {} HTTP/2.0", p("version")).as_bytes(), ""),
            status: 505,
            method: ("GET", None),
            path: p("version"),
            route: Some(r("version")),
            version: None,
            invalid: "version",
            name: format!("GET {}", r("version")),
        },
        Case {
            what: "control byte in a header name",
            first: None,
            request: head(
                format!("GET {} HTTP/1.1", p("header")).as_bytes(),
                "X-\x01: ab\r\n",
            ),
            status: 400,
            method: ("GET", None),
            path: p("header"),
            route: Some(r("header")),
            version: Some("1.1"),
            invalid: "header",
            name: format!("GET {}", r("header")),
        },
    ]
}

/// Read one response: up to EOF when `to_eof`, else a complete `200 ok`.
fn read_response(s: &mut TcpStream, to_eof: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if !to_eof && out.ends_with(b"\r\n\r\nok\n") {
            return out;
        }
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading the response: {e} (got {out:?})"),
        }
    }
}

/// Send a case's bytes as a client would; returns the final status line.
fn send(port: u16, c: &Case) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if let Some(first) = &c.first {
        s.write_all(format!("GET {first} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .unwrap();
        let resp = read_response(&mut s, false);
        assert!(resp.starts_with(b"HTTP/1.1 200 "), "{resp:?}");
    }
    s.write_all(&c.request).unwrap();
    let resp = read_response(&mut s, true);
    let line = resp.split(|b| *b == b'\r').next().unwrap_or_default();
    String::from_utf8_lossy(line).into_owned()
}

/// The attributes a span of `kind` for `c` must have, beyond the peer
/// addresses (checked apart: ports are ephemeral).
fn expected_attrs(c: &Case, kind: &str, port: u16) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("http.request.method".into(), json!(c.method.0));
    if let Some(orig) = c.method.1 {
        m.insert("http.request.method_original".into(), json!(orig));
    }
    m.insert("url.scheme".into(), json!("http"));
    m.insert("url.path".into(), json!(c.path));
    if let Some(v) = c.version {
        m.insert("network.protocol.name".into(), json!("http"));
        m.insert("network.protocol.version".into(), json!(v));
    }
    m.insert("zt.http.invalid".into(), json!(c.invalid));
    m.insert("http.response.status_code".into(), json!(c.status));
    m.insert("server.address".into(), json!("127.0.0.1"));
    m.insert("network.transport".into(), json!("tcp"));
    m.insert("network.type".into(), json!("ipv4"));
    m.insert("network.peer.address".into(), json!("127.0.0.1"));
    match kind {
        "SERVER" => {
            if let Some(r) = &c.route {
                m.insert("http.route".into(), json!(r));
            }
            m.insert("client.address".into(), json!("127.0.0.1"));
            // The server is nginx: a proxy by its name.
            m.insert("zt.proxy".into(), json!(true));
            m.insert("zt.proxy.kind".into(), json!("nginx"));
            m.insert("zt.proxy.detected_by".into(), json!("name"));
        }
        _ => {
            m.insert("server.port".into(), json!(port));
            m.insert(
                "url.full".into(),
                json!(format!("http://127.0.0.1:{port}{}", c.path)),
            );
            if let Some(r) = &c.route {
                m.insert("url.template".into(), json!(r));
            }
            m.insert("network.peer.port".into(), json!(port));
        }
    }
    // 4xx/5xx are errors for a client; for a server only 5xx are.
    if c.status >= 500 || (kind == "CLIENT" && c.status >= 400) {
        m.insert("error.type".into(), json!(c.status.to_string()));
    }
    m
}

#[test]
fn rejected_requests_become_spans_with_escaped_values() {
    if !require_root("rejected_requests_become_spans_with_escaped_values") {
        return;
    }
    let dir = tempdir("bad-requests");
    let port = free_port();
    let _nginx = nginx(&dir, port);
    let rid = format!("{}{}", std::process::id(), port);
    let cases = cases(&rid);

    let tracer = Tracer::start(&dir, &["run", "--output", "json"]);
    let answers: Vec<String> = cases.iter().map(|c| send(port, c)).collect();
    // SAFETY: no preconditions.
    let tid = unsafe { libc::gettid() };
    // Let the last bytes reach the tracer before it drains and stops.
    std::thread::sleep(Duration::from_millis(500));
    let (out, err) = tracer.stop();
    eprintln!("{}", summary(&err));
    // Ground truth: nginx's own answers.
    for (c, a) in cases.iter().zip(&answers) {
        assert!(
            a.starts_with(&format!("HTTP/1.1 {} ", c.status)),
            "{}: nginx answered {a:?}",
            c.what
        );
    }

    let spans = parse_spans(&out);
    let mut failures = Vec::new();
    for c in &cases {
        // The escaped path names the request (and the `first` request of a
        // connection has a path of its own).
        let mine: Vec<&Value> = spans
            .iter()
            .filter(|s| attr_str(s, "url.path") == c.path)
            .collect();
        for kind in ["SERVER", "CLIENT"] {
            let of_kind: Vec<&&Value> = mine.iter().filter(|s| s["kind"] == kind).collect();
            if of_kind.len() != 1 {
                failures.push(format!(
                    "{}: {} {kind} spans for {:?}, want 1: {of_kind:?}",
                    c.what,
                    of_kind.len(),
                    c.path
                ));
                continue;
            }
            let span = of_kind[0];
            if let Err(e) = check_span(span, c, kind, port, tid) {
                failures.push(format!("{} ({kind}): {e}\n{span}", c.what));
            }
        }
        // One trace: the server span's parent is the client span.
        let (client, server) = (
            mine.iter().find(|s| s["kind"] == "CLIENT"),
            mine.iter().find(|s| s["kind"] == "SERVER"),
        );
        if let (Some(cl), Some(sv)) = (client, server) {
            if sv["parent_span_id"] != cl["span_id"]
                || sv["trace_id"] != cl["trace_id"]
                || cl["parent_span_id"] != ""
            {
                failures.push(format!("{}: not one client -> server trace", c.what));
            }
        }
    }
    assert_no_failures(&failures, cases.len() * 2);
}

/// Every field of the span: name, kind, status, service, and exactly the
/// expected attributes (ports of the ephemeral side only checked as ports).
fn check_span(span: &Value, c: &Case, kind: &str, port: u16, tid: i32) -> Result<(), String> {
    let (start, end) = (
        span["start_time_unix_nano"].as_u64().unwrap_or(0),
        span["end_time_unix_nano"].as_u64().unwrap_or(0),
    );
    if start == 0 || end < start {
        return Err(format!("times {start}..{end}"));
    }
    if span["name"] != c.name.as_str() {
        return Err(format!("name {} != {:?}", span["name"], c.name));
    }
    // 4xx/5xx are errors for a client; for a server only 5xx are.
    let error = c.status >= 500 || (kind == "CLIENT" && c.status >= 400);
    let want_status = if error { "ERROR" } else { "UNSET" };
    if span["status_code"] != want_status {
        return Err(format!("status {} != {want_status}", span["status_code"]));
    }
    if kind == "SERVER" && span["service_name"] != "nginx" {
        return Err(format!("service {} != nginx", span["service_name"]));
    }
    let mut got = span["attributes"]
        .as_object()
        .ok_or("no attributes")?
        .clone();
    // The ephemeral client port: present and a port.
    let eph = if kind == "SERVER" {
        ["client.port", "network.peer.port"].as_slice()
    } else {
        [].as_slice()
    };
    for k in eph {
        match got.remove(*k).and_then(|v| v.as_i64()) {
            Some(p) if (1..=65535).contains(&p) && p != i64::from(port) => {}
            other => return Err(format!("{k}: {other:?}")),
        }
    }
    if kind == "SERVER" {
        match got.remove("server.port").and_then(|v| v.as_i64()) {
            Some(p) if p == i64::from(port) => {}
            other => return Err(format!("server.port: {other:?}")),
        }
    }
    // The thread: nginx's single-threaded worker, or the one that sent.
    let thread = got.remove("thread.id").and_then(|v| v.as_i64());
    let want_thread = if kind == "SERVER" {
        span["resource"]["process.pid"].as_i64()
    } else {
        Some(i64::from(tid))
    };
    if thread.is_none() || thread != want_thread {
        return Err(format!("thread.id {thread:?} != {want_thread:?}"));
    }
    // The server span is the client span's child (same TCP bytes); the
    // client span is a root (this test serves no request).
    let link = got.remove("zt.link.reason");
    let want_link = if kind == "SERVER" {
        "tcp_seq"
    } else {
        "root_no_open_request"
    };
    if link != Some(json!(want_link)) {
        return Err(format!("zt.link.reason {link:?} != {want_link}"));
    }
    let want = expected_attrs(c, kind, port);
    if got != want {
        let extra: Vec<_> = got
            .iter()
            .filter(|(k, v)| want.get(*k) != Some(v))
            .collect();
        let missing: Vec<_> = want
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(v))
            .collect();
        return Err(format!(
            "attributes differ: unexpected {extra:?}, missing {missing:?}"
        ));
    }
    Ok(())
}
