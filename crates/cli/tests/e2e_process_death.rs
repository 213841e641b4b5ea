//! As root: processes that die mid-request and connections torn down
//! without a `close` call, with real processes and the real kernel.
//!
//! tests/topology/fault.py serves `/slow` (never answers), `/late` (answers
//! after 1 s), `/truncated` (announces 1000 body bytes, sends 10, closes)
//! and `/reset` (resets the connection); its client sends one request, reads
//! until the connection ends and then keeps the socket open without closing
//! it, so only what the kernel reports (the server's exit, the peer's FIN or
//! RST) can end the client's span. For each case the trace must be out
//! within the trace linger plus 1 s of the event that ends it (instead of
//! the 30 s request timeout), with the status saying what happened and the
//! services named by their `OTEL_SERVICE_NAME`, the dead one included.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The tracer's trace linger (ms), passed explicitly.
const LINGER_MS: u64 = 200;

/// A fault.py process whose stdout lines arrive on a channel.
struct Fault {
    proc: Proc,
    lines: mpsc::Receiver<String>,
}

impl Fault {
    fn start(service: &str, args: &[&str]) -> Fault {
        let mut child = Command::new("python3")
            .arg(repo_root().join("tests/topology/fault.py"))
            .args(args)
            .env("OTEL_SERVICE_NAME", service)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Fault {
            proc: Proc {
                name: service.into(),
                child,
            },
            lines,
        }
    }

    /// Wait for a line starting with `prefix`.
    fn expect(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(_) => panic!("{}: no {prefix:?} line", self.proc.name),
            }
        }
    }

    fn kill(&mut self) -> Instant {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.proc.pid() as i32, libc::SIGKILL) };
        let at = Instant::now();
        let _ = self.proc.child.wait();
        at
    }
}

/// Poll the tracer's JSON output until both spans of request `rid` are
/// there; returns them with the moment they were seen.
fn wait_trace(stdout: &std::path::Path, rid: &str, within: Duration) -> (Vec<Value>, Instant) {
    let deadline = Instant::now() + within;
    loop {
        let out = std::fs::read_to_string(stdout).unwrap_or_default();
        // Only whole lines (the tracer may be writing one).
        let whole = &out[..out.rfind('\n').map_or(0, |i| i + 1)];
        let spans: Vec<Value> = parse_spans(whole)
            .into_iter()
            .filter(|s| attr_str(s, "url.query") == format!("rid={rid}"))
            .collect();
        if spans.len() >= 2 {
            return (spans, Instant::now());
        }
        if Instant::now() > deadline {
            panic!(
                "{rid}: {} of 2 spans after {within:?}: {spans:#?}",
                spans.len()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kind<'a>(spans: &'a [Value], k: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["kind"] == k)
        .unwrap_or_else(|| panic!("no {k} span in {spans:#?}"))
}

fn message(s: &Value) -> &str {
    s["status_message"].as_str().unwrap_or("")
}

/// The bound the issue sets: out within the trace linger plus 1 s of the
/// event that ends the request.
fn assert_prompt(what: &str, ended: Instant, out: Instant, extra: Duration) {
    let bound = Duration::from_millis(LINGER_MS) + Duration::from_secs(1) + extra;
    let took = out.saturating_duration_since(ended);
    assert!(
        took <= bound,
        "{what}: trace out {took:?} after the end, bound {bound:?}"
    );
}

#[test]
fn requests_of_dead_processes_and_torn_down_connections() {
    if !require_root("requests_of_dead_processes_and_torn_down_connections") {
        return;
    }
    let dir = tempdir("death");
    let linger = LINGER_MS.to_string();
    let tracer = Tracer::start(
        &dir,
        &["run", "--output", "json", "--trace-linger-ms", &linger],
    );
    let port = free_port();
    let ports = port.to_string();
    let mut server = Fault::start("victim", &["server", &ports]);
    server.expect("READY");
    // The spans as read so long after their end would be timeouts.
    let patience = Duration::from_secs(10);

    // 1. The server is killed mid-request.
    let client = Fault::start("caller", &["client", &ports, "/slow?rid=pd-server-killed"]);
    server.expect("GOT /slow");
    // Long enough for the agent to have read the server's environment (its
    // service name) at exec and at the re-read 300 ms later, even when its
    // pipeline lags on a loaded machine: a process killed before the agent
    // first looked at it is named from its command line ("fault").
    std::thread::sleep(Duration::from_millis(1500));
    let killed = server.kill();
    client.expect("DONE eof");
    let (spans, out) = wait_trace(&tracer.stdout, "pd-server-killed", patience);
    let (srv, cli) = (kind(&spans, "SERVER"), kind(&spans, "CLIENT"));
    assert_eq!(
        srv["service_name"], "victim",
        "the dead server keeps its name"
    );
    assert_eq!(attr_str(srv, "zt.incomplete"), "process_exited", "{srv}");
    assert_eq!(srv["status_code"], "ERROR");
    assert!(message(srv).contains("the process exited"), "{srv}");
    assert_eq!(cli["service_name"], "caller");
    assert_eq!(attr_str(cli, "zt.incomplete"), "peer_closed", "{cli}");
    assert_eq!(cli["status_code"], "ERROR");
    assert!(
        message(cli).contains("the peer closed the connection"),
        "{cli}"
    );
    assert_eq!(srv["parent_span_id"], cli["span_id"], "still linked");
    assert_prompt("server killed", killed, out, Duration::ZERO);
    drop(client);

    // 2. The client is killed mid-request; the server answers 1 s after
    //    it read the request, to nobody.
    let server = Fault::start("victim", &["server", &ports]);
    server.expect("READY");
    let mut client = Fault::start("caller", &["client", &ports, "/late?rid=pd-client-killed"]);
    let got = Instant::now();
    server.expect("GOT /late");
    std::thread::sleep(Duration::from_millis(300));
    client.kill();
    let (spans, out) = wait_trace(&tracer.stdout, "pd-client-killed", patience);
    let (srv, cli) = (kind(&spans, "SERVER"), kind(&spans, "CLIENT"));
    assert_eq!(
        cli["service_name"], "caller",
        "the dead client keeps its name"
    );
    assert_eq!(attr_str(cli, "zt.incomplete"), "process_exited", "{cli}");
    assert_eq!(cli["status_code"], "ERROR");
    assert_eq!(srv["service_name"], "victim");
    assert_eq!(
        attr(srv, "http.response.status_code"),
        Some(&Value::from(200))
    );
    assert_eq!(
        attr_str(srv, "zt.incomplete"),
        "",
        "the server answered: {srv}"
    );
    // The server's answer (1 s after the request) ends its span.
    assert_prompt("client killed", got, out, Duration::from_secs(1));

    // 3. A truncated body: 10 of 1000 bytes, then the server closes.
    let client = Fault::start("caller", &["client", &ports, "/truncated?rid=pd-truncated"]);
    let done = {
        client.expect("DONE eof");
        Instant::now()
    };
    let (spans, out) = wait_trace(&tracer.stdout, "pd-truncated", patience);
    for s in &spans {
        assert_eq!(
            attr(s, "http.response.status_code"),
            Some(&Value::from(200))
        );
        assert_eq!(s["status_code"], "ERROR", "{s}");
        assert!(message(s).starts_with("response truncated"), "{s}");
    }
    assert_eq!(
        attr_str(kind(&spans, "CLIENT"), "zt.incomplete"),
        "peer_closed"
    );
    assert_eq!(
        attr_str(kind(&spans, "SERVER"), "zt.incomplete"),
        "connection_closed"
    );
    assert_prompt("truncated body", done, out, Duration::ZERO);
    drop(client);

    // 4. The server resets the connection.
    let client = Fault::start("caller", &["client", &ports, "/reset?rid=pd-reset"]);
    let done = {
        client.expect("DONE reset");
        Instant::now()
    };
    let (spans, out) = wait_trace(&tracer.stdout, "pd-reset", patience);
    let cli = kind(&spans, "CLIENT");
    assert_eq!(attr_str(cli, "zt.incomplete"), "peer_reset", "{cli}");
    assert!(
        message(cli).contains("the peer reset the connection"),
        "{cli}"
    );
    assert_prompt("reset", done, out, Duration::ZERO);
    drop(client);
    drop(server);
    let (_, err) = tracer.stop();
    assert!(!err.contains("panicked"), "{err}");
}
