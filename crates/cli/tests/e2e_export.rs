//! As root: the real zt-trace binary exporting what it traces, with
//! `--output none` and two `--exporter` flags, to the conformance receivers
//! of the exporters crate (crates/exporters/tests/receivers/receiver.py,
//! which decode with the official OTLP protobuf definitions and validate
//! Zipkin v2 JSON against the Zipkin API definition).
//!
//! Traffic: curl -> users -> profile (tests/topology/service.py), one request
//! at a time, each with a ground-truth rid. Both receivers must get, for
//! every request, the four spans with their kinds, names, service names,
//! HTTP attributes and parent edges; the OTEL_EXPORTER_OTLP_* environment
//! applies to the OTLP exporter only, and the command-line target wins over
//! OTEL_EXPORTER_OTLP_ENDPOINT.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

// ------------------------------------------------------------ receivers ---
// After crates/exporters/tests/common/mod.rs (PyReceiver).

/// `ZT_REQUIRE_SPECS=1` (CI): a missing receiver package or spec file is a
/// failure, not a skip.
fn skip_or_fail(why: &str) {
    if std::env::var("ZT_REQUIRE_SPECS").is_ok_and(|v| v == "1") {
        panic!("ZT_REQUIRE_SPECS=1 and {why}");
    }
    eprintln!("SKIP e2e_export: {why}");
}

fn exporters_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../exporters")
}

/// `<repo>/../shared/specs/zipkin2-api.yaml`, or under `$ZT_SHARED_DIR`.
fn zipkin_spec() -> Option<PathBuf> {
    let shared = match std::env::var_os("ZT_SHARED_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    let p = shared.join("specs/zipkin2-api.yaml");
    p.is_file().then_some(p)
}

/// A running receiver.py; killed when dropped.
struct Receiver {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
    lines: mpsc::Receiver<String>,
}

impl Receiver {
    /// Start `mode` on a free port; None when skipped.
    fn start(mode: &str) -> Option<Receiver> {
        let script = exporters_dir().join("tests/receivers/receiver.py");
        let check = Command::new("python3")
            .arg(&script)
            .args([mode, "--check"])
            .output()
            .expect("python3");
        if !check.status.success() {
            skip_or_fail(&format!(
                "receiver {mode} cannot run: {} (pip install -r crates/exporters/tests/receivers/requirements.txt)",
                String::from_utf8_lossy(&check.stdout).trim()
            ));
            return None;
        }
        let mut cmd = Command::new("python3");
        cmd.arg(&script).arg(mode).args(["--port", "0"]);
        if mode == "zipkin" {
            let Some(spec) = zipkin_spec() else {
                skip_or_fail("the Zipkin API definition specs/zipkin2-api.yaml is not in ../shared (set ZT_SHARED_DIR)");
                return None;
            };
            cmd.arg("--spec").arg(spec);
        }
        let mut child = cmd
            .env("OTEL_SERVICE_NAME", format!("receiver-{mode}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 receiver.py");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut rx = Receiver {
            child,
            stdin,
            port: 0,
            lines,
        };
        let first = rx
            .lines
            .recv_timeout(Duration::from_secs(60))
            .expect("receiver did not start");
        rx.port = first
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        Some(rx)
    }

    /// Every decoded request, once none has come for `quiet`.
    fn requests(&self, quiet: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(quiet) {
            let json = line.strip_prefix("REQ ").expect("REQ line");
            out.push(serde_json::from_str(json).expect("receiver JSON"));
        }
        out
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --------------------------------------------------------------- tracer ---

/// `Tracer::start` with a controlled OTEL_* environment.
fn start_tracer(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Tracer {
    Tracer::start_with(dir, args, |cmd| {
        for (k, _) in std::env::vars() {
            if k.starts_with("OTEL_EXPORTER_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().copied());
    })
}

// ----------------------------------------------------------- the checks ---

/// One exported span in a format-neutral form.
#[derive(Debug)]
struct Got {
    trace_id: String,
    span_id: String,
    parent: String,
    /// "CLIENT" or "SERVER".
    kind: String,
    name: String,
    service: String,
    /// Attribute values as strings (Zipkin tags are strings).
    attrs: BTreeMap<String, String>,
}

/// An OTLP AnyValue as normalised by receiver.py (`[kind, value]`), as a
/// string.
fn otlp_value(v: &Value) -> String {
    match &v[1] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn from_otlp(requests: &[Value]) -> Vec<Got> {
    let mut out = Vec::new();
    for req in requests {
        for rs in req["resource_spans"].as_array().unwrap() {
            let service = otlp_value(&rs["resource"]["service.name"]);
            for ss in rs["scope_spans"].as_array().unwrap() {
                assert_eq!(ss["scope"]["name"], "zt-trace", "instrumentation scope");
                for s in ss["spans"].as_array().unwrap() {
                    assert!(
                        s["start_time_unix_nano"].as_u64() <= s["end_time_unix_nano"].as_u64(),
                        "{s}"
                    );
                    out.push(Got {
                        trace_id: s["trace_id"].as_str().unwrap().into(),
                        span_id: s["span_id"].as_str().unwrap().into(),
                        parent: s["parent_span_id"].as_str().unwrap().into(),
                        kind: s["kind"]
                            .as_str()
                            .unwrap()
                            .trim_start_matches("SPAN_KIND_")
                            .into(),
                        name: s["name"].as_str().unwrap().into(),
                        service: service.clone(),
                        attrs: s["attributes"]
                            .as_object()
                            .unwrap()
                            .iter()
                            .map(|(k, v)| (k.clone(), otlp_value(v)))
                            .collect(),
                    });
                }
            }
        }
    }
    out
}

fn from_zipkin(requests: &[Value]) -> Vec<Got> {
    let mut out = Vec::new();
    for req in requests {
        for s in req["spans"].as_array().unwrap() {
            let str_of = |v: &Value| v.as_str().unwrap_or("").to_owned();
            out.push(Got {
                trace_id: str_of(&s["traceId"]),
                span_id: str_of(&s["id"]),
                parent: str_of(&s["parentId"]),
                kind: str_of(&s["kind"]),
                name: str_of(&s["name"]),
                service: str_of(&s["localEndpoint"]["serviceName"]),
                attrs: s["tags"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), str_of(v))).collect())
                    .unwrap_or_default(),
            });
        }
    }
    out
}

/// Check the spans one receiver decoded against the requests sent; returns
/// the span ids of the requests' spans.
fn check(what: &str, spans: &[Got], n: usize, lowercase_names: bool) -> BTreeSet<String> {
    let mut failures = Vec::new();
    let mut ids = BTreeSet::new();
    for i in 0..n {
        let rid = format!("exp{i:03}");
        let of: Vec<&Got> = spans
            .iter()
            .filter(|s| s.attrs.get("url.query").map(String::as_str) == Some(&format!("rid={rid}")))
            .collect();
        let (profile, users) = if i % 10 == 7 { (404, 502) } else { (200, 200) };
        // (service, kind, name, path, status)
        let want = [
            (
                "curl",
                "CLIENT",
                "GET /users/{id}",
                format!("/users/{i}"),
                users,
            ),
            (
                "users",
                "SERVER",
                "GET /users/{id}",
                format!("/users/{i}"),
                users,
            ),
            (
                "users",
                "CLIENT",
                "GET /profile/{id}",
                format!("/profile/{i}"),
                profile,
            ),
            (
                "profile",
                "SERVER",
                "GET /profile/{id}",
                format!("/profile/{i}"),
                profile,
            ),
        ];
        let mut hops = Vec::new();
        for (service, kind, name, path, status) in &want {
            let m: Vec<&&Got> = of
                .iter()
                .filter(|s| s.service == *service && s.kind == *kind)
                .collect();
            let [s] = m[..] else {
                failures.push(format!(
                    "{rid}: {} {service} {kind} spans, want 1 (of {} spans)",
                    m.len(),
                    of.len()
                ));
                break;
            };
            let name = if lowercase_names {
                name.to_lowercase()
            } else {
                name.to_string()
            };
            let a = |k: &str| s.attrs.get(k).map(String::as_str).unwrap_or("");
            if s.name != name
                || a("http.request.method") != "GET"
                || a("http.response.status_code") != status.to_string()
                || a("url.path") != path
                || a("url.scheme") != "http"
                || a("network.protocol.version") != "1.1"
            {
                failures.push(format!("{rid}: {service} {kind}: {s:?}"));
            }
            hops.push(*s);
        }
        if hops.len() != 4 {
            continue;
        }
        if of.len() != 4 {
            failures.push(format!("{rid}: {} spans, want 4", of.len()));
        }
        // curl -> users (TCP sequence), users' call -> its request (thread),
        // profile -> users' call (TCP sequence).
        if !hops[0].parent.is_empty() {
            failures.push(format!("{rid}: curl's span is not a root: {:?}", hops[0]));
        }
        for w in hops.windows(2) {
            if w[1].parent != w[0].span_id || w[1].trace_id != w[0].trace_id {
                failures.push(format!(
                    "{rid}: {} {} not the child of {} {}",
                    w[1].service, w[1].kind, w[0].service, w[0].kind
                ));
            }
        }
        ids.extend(hops.iter().map(|s| s.span_id.clone()));
    }
    assert!(
        failures.is_empty(),
        "{what}: {} wrong:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n")
    );
    ids
}

#[test]
fn exports_traced_requests_to_otlp_http_and_zipkin() {
    if !require_root("exports_traced_requests_to_otlp_http_and_zipkin") {
        return;
    }
    let (Some(otlp), Some(zipkin)) = (Receiver::start("otlp-http"), Receiver::start("zipkin"))
    else {
        return;
    };
    let dir = tempdir("export");
    let profile = free_port();
    let users = free_port();
    let _p = service("profile", profile, &[]);
    let _u = service("users", users, &[("profile", profile)]);

    let otlp_target = format!("otlp-http=http://127.0.0.1:{}", otlp.port);
    let zipkin_target = format!("zipkin=http://127.0.0.1:{}/api/v2/spans", zipkin.port);
    let closed = free_port();
    let tracer = start_tracer(
        &dir,
        &[
            "run",
            "--output",
            "none",
            "--exporter",
            &otlp_target,
            "--exporter",
            &zipkin_target,
            "--header",
            "x-zt-cli=on-every-exporter",
        ],
        &[
            // Loses to the command-line target (nothing listens there).
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                &format!("http://127.0.0.1:{closed}"),
            ),
            // Percent-encoded, OTLP exporters only.
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-zt-env=from%20env"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ],
    );
    const N: usize = 20;
    for i in 0..N {
        let url = format!("http://127.0.0.1:{users}/users/{i}?rid=exp{i:03}");
        let code = run_lines(Command::new("curl").args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{response_code}",
            &url,
        ]));
        let want = if i % 10 == 7 { "502" } else { "200" };
        assert_eq!(code, [want], "exp{i:03}: curl's status");
    }
    // Let a few export batches go out while tracing: the receivers' server
    // spans of those requests must not be traced (and exported, and traced
    // again, in a loop).
    std::thread::sleep(Duration::from_secs(3));
    let (out, err) = tracer.stop();
    assert!(out.is_empty(), "--output none prints nothing:\n{out}");
    for name in ["otlp-http", "zipkin"] {
        assert!(
            err.contains(&format!("exporting spans with {name}")),
            "{name} exporter built:\n{err}"
        );
    }
    assert!(
        err.contains("dropped: 0 queue full, 0 after retries, 0 rejected, 0 at shutdown"),
        "nothing dropped:\n{err}"
    );

    // The tracer has exited, so every export request has been answered;
    // receiver.py prints each one just after answering it.
    let quiet = Duration::from_secs(2);
    let otlp_reqs = otlp.requests(quiet);
    let zipkin_reqs = zipkin.requests(quiet);
    assert!(!otlp_reqs.is_empty() && !zipkin_reqs.is_empty());
    for r in &otlp_reqs {
        assert!(r.get("decode_error").is_none(), "OTLP decode error: {r}");
        assert_eq!(r["path"], "/v1/traces", "default path appended");
        assert_eq!(r["content_type"], "application/x-protobuf");
        assert_eq!(
            r["content_encoding"], "gzip",
            "OTEL_EXPORTER_OTLP_COMPRESSION"
        );
        assert_eq!(
            r["headers"]["x-zt-env"], "from env",
            "OTEL_EXPORTER_OTLP_HEADERS"
        );
        assert_eq!(r["headers"]["x-zt-cli"], "on-every-exporter", "--header");
        assert!(r["user_agent"].as_str().unwrap().starts_with("zt-trace/"));
    }
    for r in &zipkin_reqs {
        assert!(r.get("decode_error").is_none(), "Zipkin decode error: {r}");
        assert_eq!(r["path"], "/api/v2/spans");
        assert_eq!(
            r["schema_errors"],
            Value::Array(vec![]),
            "valid ListOfSpans"
        );
        assert_eq!(r["content_encoding"], "", "OTEL_* does not apply to zipkin");
        assert!(
            r["headers"].get("x-zt-env").is_none(),
            "OTEL_* does not apply to zipkin"
        );
        assert_eq!(r["headers"]["x-zt-cli"], "on-every-exporter", "--header");
    }

    // The tracer leaves out connections whose other end is itself: no
    // export request shows up as a span.
    let from_otlp = from_otlp(&otlp_reqs);
    let from_zipkin = from_zipkin(&zipkin_reqs);
    for s in from_otlp.iter().chain(&from_zipkin) {
        assert!(
            !s.name.to_lowercase().starts_with("post /v1/traces")
                && !s.name.to_lowercase().starts_with("post /api/v2/spans"),
            "an export request was traced: {s:?}"
        );
    }
    let left_out: u64 = err
        .lines()
        .find_map(|l| {
            l.split("; ")
                .find_map(|p| p.strip_suffix(" events of zt-trace's own connections left out"))
        })
        .and_then(|n| n.parse().ok())
        .expect("summary counts the agent's own connections");
    assert!(left_out > 0, "export traffic seen and left out:\n{err}");
    let otlp_ids = check("otlp-http", &from_otlp, N, false);
    // Zipkin span names are lower case (the exporter follows the Zipkin
    // convention).
    let zipkin_ids = check("zipkin", &from_zipkin, N, true);
    assert_eq!(otlp_ids.len(), 4 * N);
    assert_eq!(
        otlp_ids, zipkin_ids,
        "both --exporter flags got the same spans"
    );
    // Every exported span exactly once per receiver.
    for (what, spans) in [("otlp-http", &from_otlp), ("zipkin", &from_zipkin)] {
        let unique: BTreeSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
        assert_eq!(unique.len(), spans.len(), "{what}: a span exported twice");
    }
}
