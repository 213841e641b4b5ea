//! The Python conformance receivers (tests/receivers/receiver.py), which
//! decode what is sent with the official definitions. Also included by
//! path from the workspace root's tests (OTLP metrics).

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `ZT_REQUIRE_SPECS=1` (set in CI): a missing spec file or receiver package
/// is a failure, not a skip.
pub fn require_specs() -> bool {
    std::env::var("ZT_REQUIRE_SPECS").is_ok_and(|v| v == "1")
}

/// Skip (print why) or, under ZT_REQUIRE_SPECS=1, fail.
pub fn skip_or_fail(why: &str) {
    if require_specs() {
        panic!("ZT_REQUIRE_SPECS=1 and {why}");
    }
    eprintln!("SKIPPED: {why}");
}

/// `<repo>/../shared`, or `$ZT_SHARED_DIR`.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("ZT_SHARED_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

pub fn zipkin_spec() -> Option<PathBuf> {
    let p = shared_dir().join("specs/zipkin2-api.yaml");
    p.is_file().then_some(p)
}

fn python() -> String {
    std::env::var("ZT_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// receiver.py, from this crate's tests or from the workspace root's (which
/// include this module by path).
fn receiver_script() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let own = here.join("tests/receivers/receiver.py");
    if own.is_file() {
        own
    } else {
        here.join("crates/exporters/tests/receivers/receiver.py")
    }
}

/// A running Python receiver.
pub struct PyReceiver {
    child: Child,
    stdin: Option<ChildStdin>,
    pub port: u16,
    lines: mpsc::Receiver<String>,
}

impl PyReceiver {
    /// Start `mode` on a free port; None when skipped (packages or spec
    /// missing).
    pub fn start(mode: &str) -> Option<PyReceiver> {
        Self::start_on(mode, 0)
    }

    /// Start `mode` on `port` (0 = any free port).
    pub fn start_on(mode: &str, port: u16) -> Option<PyReceiver> {
        let check = Command::new(python())
            .arg(receiver_script())
            .args([mode, "--check"])
            .output();
        match check {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                skip_or_fail(&format!(
                    "receiver {mode} cannot run: {} (pip install -r crates/exporters/tests/receivers/requirements.txt; pip install --no-deps jaeger-client)",
                    String::from_utf8_lossy(&out.stdout).trim()
                ));
                return None;
            }
            Err(e) => {
                skip_or_fail(&format!("cannot run {}: {e}", python()));
                return None;
            }
        }
        let mut cmd = Command::new(python());
        cmd.arg(receiver_script())
            .arg(mode)
            .args(["--port", &port.to_string()]);
        if mode == "zipkin" {
            match zipkin_spec() {
                Some(p) => {
                    cmd.arg("--spec").arg(p);
                }
                None => {
                    skip_or_fail(&format!(
                        "Zipkin API definition not found at {}/specs/zipkin2-api.yaml (set ZT_SHARED_DIR)",
                        shared_dir().display()
                    ));
                    return None;
                }
            }
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn receiver");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("receiver did not start");
        let port = first
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        Some(PyReceiver {
            child,
            stdin,
            port,
            lines: rx,
        })
    }

    /// The next decoded request (panics after 60 s without one).
    pub fn next_request(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(60))
            .expect("no request reached the receiver");
        let json = line.strip_prefix("REQ ").expect("REQ line");
        serde_json::from_str(json).expect("receiver JSON")
    }

    /// Requests received so far without waiting.
    pub fn drain(&self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(line) = self.lines.try_recv() {
            if let Some(json) = line.strip_prefix("REQ ") {
                out.push(serde_json::from_str(json).expect("receiver JSON"));
            }
        }
        out
    }
}

impl Drop for PyReceiver {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
