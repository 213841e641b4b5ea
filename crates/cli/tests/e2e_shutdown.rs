//! As root: stopping zt-trace leaves nothing of it in the kernel, and its
//! summary says what was still pending. (How long a stop takes is measured
//! by benches/shutdown.sh, not asserted here.)

mod common;

use common::*;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

/// Ids of the BPF programs process `pid` holds (`prog_id:` lines of its
/// fdinfo: every program fd, and every link or perf event with one).
fn prog_ids(pid: u32) -> BTreeSet<u32> {
    let mut ids = BTreeSet::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for l in text.lines() {
            if let Some(id) = l.strip_prefix("prog_id:") {
                ids.extend(id.trim().parse::<u32>().ok());
            }
        }
    }
    ids
}

/// (link id, link type) of every BPF link process `pid` holds.
fn links(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
        };
        if let (Some(kind), Some(id)) = (field("link_type:"), field("link_id:")) {
            out.push((id.parse().unwrap(), kind));
        }
    }
    out
}

/// Whether the kernel still has BPF object `kind` ("prog", "link") `id`.
fn bpftool_shows(kind: &str, id: u32) -> bool {
    Command::new("bpftool")
        .args([kind, "show", "id", &id.to_string()])
        .output()
        .expect("bpftool")
        .status
        .success()
}

fn link_exists(id: u32) -> bool {
    bpftool_shows("link", id)
}

fn loaded(id: u32) -> bool {
    bpftool_shows("prog", id)
}

fn sigterm(t: &mut Tracer) -> std::process::ExitStatus {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(t.proc.pid() as i32, libc::SIGTERM) };
    t.proc.child.wait().unwrap()
}

#[test]
fn nothing_is_left_in_the_kernel_after_sigterm() {
    if !require_root("nothing_is_left_in_the_kernel_after_sigterm") {
        return;
    }
    let dir = tempdir("shutdown");
    let mut tracer = Tracer::start(&dir, &["run", "--output", "none"]);
    let ids = prog_ids(tracer.proc.pid());
    assert!(ids.len() >= 20, "only {} programs: {ids:?}", ids.len());
    assert!(ids.iter().all(|id| loaded(*id)));
    // The uprobes (OpenSSL's libssl is on every machine the tests run on)
    // are uprobe_multi links: one per program and file, each detached in
    // one RCU grace period, where perf-event uprobes took ~60 ms each one
    // after the other under a global mutex (BENCHMARKS.md "Shutdown").
    let held = links(tracer.proc.pid());
    let kinds: BTreeSet<&str> = held.iter().map(|(_, k)| k.as_str()).collect();
    assert!(kinds.contains("uprobe_multi"), "links: {held:?}");
    assert!(
        kinds.iter().all(|k| matches!(
            *k,
            "uprobe_multi" | "uretprobe_multi" | "raw_tracepoint" | "tracing"
        )),
        "links: {held:?}"
    );
    let st = sigterm(&mut tracer);
    assert!(st.success(), "{st}");
    // The kernel frees a program when its last reference goes, tail-call
    // tables' from a work queue: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left: Vec<u32> = ids.iter().copied().filter(|id| loaded(*id)).collect();
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        left.retain(|id| loaded(*id));
    }
    assert!(
        left.is_empty(),
        "programs still loaded after exit: {left:?}"
    );
    let links_left: Vec<u32> = held
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| link_exists(*id))
        .collect();
    assert!(
        links_left.is_empty(),
        "links left after exit: {links_left:?}"
    );
    let err = std::fs::read_to_string(&tracer.stderr).unwrap();
    assert!(err.contains("zt-trace: stopped in "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn the_summary_says_what_was_pending() {
    if !require_root("the_summary_says_what_was_pending") {
        return;
    }
    let dir = tempdir("shutdown-pending");
    // A collector that is not there: every export fails and is retried
    // until the stop's deadline drops what is left.
    let nobody = free_port();
    let exporter = format!("otlp-http=http://127.0.0.1:{nobody}/v1/traces");
    let mut tracer = Tracer::start(
        &dir,
        &[
            "run",
            "--output",
            "none",
            "--exporter",
            &exporter,
            "--export-shutdown-timeout-ms",
            "300",
        ],
    );
    let port = free_port();
    let _server = service("profile", port, &[]);
    for i in 0..20 {
        run_lines(Command::new("curl").args([
            "-s",
            "-o",
            "/dev/null",
            &format!("http://127.0.0.1:{port}/profile/{i}?rid=stop{i}"),
        ]));
    }
    std::thread::sleep(Duration::from_millis(500));
    let st = sigterm(&mut tracer);
    assert!(st.success(), "{st}");
    let err = std::fs::read_to_string(&tracer.stderr).unwrap();
    let line = err
        .lines()
        .find(|l| l.starts_with("zt-trace: stopped in "))
        .unwrap_or_else(|| panic!("no stop line in:\n{err}"));
    // "... N spans to export (M still unsent at the deadline, dropped)":
    // the spans of the requests never reached the absent collector.
    let number = |text: Option<&str>, last: bool| {
        let words: Vec<&str> = text.unwrap_or("").split_whitespace().collect();
        let w = if last { words.last() } else { words.first() };
        w.and_then(|w| w.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{line}"))
    };
    let queued = number(line.split(" spans to export (").next(), true);
    let unsent = number(line.split(" spans to export (").nth(1), false);
    assert!(queued >= 1 && unsent >= 1 && unsent <= queued, "{line}");
    let dropped = err
        .lines()
        .find(|l| l.contains("exported ") && l.contains(" at shutdown"))
        .unwrap_or_else(|| panic!("no export line in:\n{err}"));
    assert!(
        dropped.starts_with("zt-trace: exported 0 spans"),
        "{dropped}"
    );
}
