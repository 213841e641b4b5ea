//! As root: a process that starts while the agent is idle, makes one
//! request and exits at once is still named from its own environment.
//!
//! The agent reads a new process's /proc entry (OTEL_SERVICE_NAME, cgroup)
//! when its exec record arrives, so that record must wake the reader while
//! the process lives. Each client here starts after the pipeline has been
//! idle (its reader asleep, the ring empty), so its exec record is the
//! first one queued. This failed when the programs asked the ring "is it
//! empty?" after reserving a record (the record itself counts, so the ring
//! never looked empty and no wake-up was sent): the exec record and all
//! after it sat unread until the reader's next deadline, the client had
//! exited by then, and its spans took the script's name instead.

mod common;

use common::*;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

const CLIENTS: usize = 8;

#[test]
fn short_lived_clients_started_while_idle_keep_their_service_names() {
    if !require_root("short_lived_clients_started_while_idle_keep_their_service_names") {
        return;
    }
    let dir = tempdir("wakeup");
    let port = free_port();
    let server = Command::new("python3")
        .arg(repo_root().join("tests/topology/service.py"))
        .args(["profile", &port.to_string()])
        .env("OTEL_SERVICE_NAME", "wake-server")
        .stdout(Stdio::null())
        .spawn()
        .expect("python3");
    let _server = Proc {
        name: "wake-server".into(),
        child: server,
    };
    wait_port(port, "wake-server");
    let tracer = Tracer::start(&dir, &["run", "--output", "json"]);
    for i in 0..CLIENTS {
        // Idle long enough for the reader to drain and go to sleep (n % 10
        // == 0: profile answers 200).
        std::thread::sleep(Duration::from_millis(400));
        let status = Command::new("python3")
            .args([
                "-c",
                "import sys, urllib.request; urllib.request.urlopen(sys.argv[1]).read()",
                &format!("http://127.0.0.1:{port}/profile/{}?rid=wk{i:03}", i * 10),
            ])
            .env("OTEL_SERVICE_NAME", format!("wake-client-{i}"))
            .stdout(Stdio::null())
            .status()
            .expect("python3 client");
        assert!(status.success(), "client {i}: {status}");
    }
    let (out, err) = tracer.stop();
    let spans = parse_spans(&out);
    let mut failures = Vec::new();
    for i in 0..CLIENTS {
        let rid = format!("wk{i:03}");
        let of: Vec<&Value> = spans.iter().filter(|s| mentions(s, &rid)).collect();
        let client = of.iter().find(|s| s["kind"] == "CLIENT");
        let server = of.iter().find(|s| s["kind"] == "SERVER");
        match (client, server) {
            (Some(c), Some(s)) => {
                let want = format!("wake-client-{i}");
                if c["service_name"] != want.as_str() {
                    failures.push(format!(
                        "{rid}: the client is named {} instead of {want}",
                        c["service_name"]
                    ));
                }
                if s["parent_span_id"] != c["span_id"] {
                    failures.push(format!("{rid}: the server span is not the client's child"));
                }
            }
            _ => failures.push(format!(
                "{rid}: {:?}, want a client and a server span",
                of.iter().map(|s| label(s)).collect::<Vec<_>>()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {CLIENTS} clients wrong:\n{}\n\ntracer:\n{err}",
        failures.len(),
        failures.join("\n")
    );
}
