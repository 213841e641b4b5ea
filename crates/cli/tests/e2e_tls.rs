//! HTTPS through the OpenSSL uprobes, as root, with real programs:
//! - the Python topology over HTTPS (ssl module -> libssl.so.3), 200
//!   requests from 16 clients: traced and linked exactly like plain HTTP;
//! - Node.js (OpenSSL inside the node binary) server and client, both started
//!   after the tracer;
//! - curl (OpenSSL) -> nginx (TLS) -> a plain-HTTP Python backend.

mod common;

use common::*;
use serde_json::Value;
use std::process::{Command, Stdio};

#[test]
fn python_https_topology_like_plain_http() {
    if !require_root("python_https_topology_like_plain_http") {
        return;
    }
    let dir = tempdir("tls-py");
    let (cert, key) = self_signed_cert(&dir);
    let env = [
        ("ZT_TLS_CERT", cert.to_str().unwrap()),
        ("ZT_TLS_KEY", key.to_str().unwrap()),
    ];
    let (gw, auth, users, profile) = (free_port(), free_port(), free_port(), free_port());
    let _p = service_env("profile", profile, &[], &env);
    let _u = service_env("users", users, &[("profile", profile)], &env);
    let _a = service_env("auth", auth, &[], &env);
    let _g = service_env("gateway", gw, &[("auth", auth), ("users", users)], &env);

    let tracer = Tracer::start(&dir, &["run", "--output", "json"]);
    let load = loadgen(gw, 200, 16, "tls", &[("ZT_TLS", "1")]);
    let (out, err) = tracer.stop();
    assert!(
        err.contains("OpenSSL probes ("),
        "TLS probes attached:\n{err}"
    );
    let spans = parse_spans(&out);
    check_topology(&spans, &load, "https");
    let ours: Vec<&Value> = spans.iter().filter(|s| mentions(s, "tls0")).collect();
    assert_eq!(
        ours.len(),
        200 * 8 - 20 * 4,
        "every HTTPS span (4 fewer where auth refuses)"
    );
    assert!(
        ours.iter().all(|s| attr_str(s, "url.scheme") == "https"),
        "url.scheme=https on every span"
    );
}

#[test]
fn node_https_server_and_client_started_after_the_tracer() {
    if !require_root("node_https_server_and_client_started_after_the_tracer") {
        return;
    }
    let dir = tempdir("tls-node");
    let (cert, key) = self_signed_cert(&dir);
    let mut tracer = Tracer::start(&dir, &["run", "--output", "json"]);
    let port = free_port();
    let node = repo_root().join("tests/topology/node");
    let server = Command::new("node")
        .arg(node.join("https_server.js"))
        .args([
            port.to_string(),
            cert.to_str().unwrap().into(),
            key.to_str().unwrap().into(),
        ])
        .env("OTEL_SERVICE_NAME", "node-server")
        .stdout(Stdio::null())
        .spawn()
        .expect("node");
    let _server = Proc {
        name: "node-server".into(),
        child: server,
    };
    wait_port(port, "node https server");
    // The server was started after the tracer: its binary (OpenSSL linked
    // in) is probed once its symbols are resolved, beside the event loop.
    // The client runs the same binary, so it is covered from its start.
    tracer.wait_log("bin/node", 60);
    let load: Vec<Value> = run_lines(
        Command::new("node")
            .arg(node.join("https_client.js"))
            .args([port.to_string(), "200".into(), "16".into(), "nd".into()])
            .env("OTEL_SERVICE_NAME", "node-client"),
    )
    .iter()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    assert_eq!(load.len(), 200);
    let (out, err) = tracer.stop();
    assert!(
        err.contains("/usr/bin/node") || err.contains("/node"),
        "probes on the node binary:\n{err}"
    );
    let spans = parse_spans(&out);
    let mut failures = Vec::new();
    for req in &load {
        let rid = req["rid"].as_str().unwrap();
        let status = req["status"].as_u64().unwrap();
        let of: Vec<&Value> = spans.iter().filter(|s| mentions(s, rid)).collect();
        let c = of
            .iter()
            .find(|s| s["kind"] == "CLIENT" && s["service_name"] == "node-client");
        let s = of
            .iter()
            .find(|s| s["kind"] == "SERVER" && s["service_name"] == "node-server");
        match (c, s) {
            (Some(c), Some(s)) => {
                if s["parent_span_id"] != c["span_id"] || s["trace_id"] != c["trace_id"] {
                    failures.push(format!("{rid}: server span not the client's child"));
                }
                for x in [c, s] {
                    if attr_str(x, "url.scheme") != "https"
                        || attr(x, "http.response.status_code") != Some(&Value::from(status))
                    {
                        failures.push(format!("{rid}: scheme/status wrong on {}", label(x)));
                    }
                }
            }
            _ => failures.push(format!(
                "{rid}: {} spans, want a client and a server span: {:?}",
                of.len(),
                of.iter().map(|s| label(s)).collect::<Vec<_>>()
            )),
        }
    }
    assert_no_failures(&failures, 200);
}

#[test]
fn curl_to_nginx_tls_proxy_to_plain_backend() {
    if !require_root("curl_to_nginx_tls_proxy_to_plain_backend") {
        return;
    }
    let dir = tempdir("tls-nginx");
    let backend = free_port();
    let _b = service("profile", backend, &[]);
    let port = free_port();
    let _nginx = nginx_tls_proxy(&dir, port, backend, false);
    let tracer = Tracer::start(&dir, &["run", "--output", "json"]);
    // One request at a time: an nginx worker serving several requests at
    // once is an event loop whose upstream calls cannot be attributed (the
    // tracer leaves them unparented, as it would over plain HTTP).
    const N: usize = 20;
    for i in 0..N {
        let url = format!("https://127.0.0.1:{port}/profile/{i}?rid=ngx{i:03}");
        let st = Command::new("curl")
            .args(["-sk", "-o", "/dev/null", &url])
            .status()
            .expect("curl");
        assert!(st.success());
    }
    let (out, _) = tracer.stop();
    let spans = parse_spans(&out);
    for i in 0..N {
        let rid = format!("ngx{i:03}");
        let of: Vec<&Value> = spans.iter().filter(|s| mentions(s, &rid)).collect();
        let shape = shape_of(&of).unwrap_or_else(|e| panic!("{rid}: {e}"));
        let status = if i % 10 == 7 { "404" } else { "200" };
        let name = "GET /profile/{id}";
        let want = Shape::new(
            format!("curl CLIENT {name} {status}"),
            vec![Shape::new(
                format!("nginx SERVER {name} {status}"),
                vec![Shape::new(
                    format!("nginx CLIENT {name} {status}"),
                    vec![Shape::new(
                        format!("profile SERVER {name} {status}"),
                        vec![],
                    )],
                )],
            )],
        );
        assert_eq!(shape, vec![want], "{rid}");
        let curl = of.iter().find(|s| s["service_name"] == "curl").unwrap();
        assert_eq!(attr_str(curl, "url.scheme"), "https");
        let upstream = of
            .iter()
            .find(|s| s["service_name"] == "nginx" && s["kind"] == "CLIENT")
            .unwrap();
        assert_eq!(attr_str(upstream, "url.scheme"), "http");
    }
}
