//! As root: the in-kernel filters end to end. Two HTTP services on
//! loopback; traffic a filter excludes never becomes a span (the eBPF
//! programs drop it before any other work), the rest is traced as usual.
//! From the command line (`--exclude-port`, `--port`), and through the
//! library on a running tracer (`Tracer::set_kernel_filter`), with no
//! reload. Requests are told apart by a unique id in their query.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zt_trace::ebpf_probes::Filter;
use zt_trace::span_core::Trace;
use zt_trace::{ChannelSink, Tracer as LibTracer};

const N: usize = 10;

/// `n` requests to `port`, each on its own connection, ids `prefix0..`.
fn requests(port: u16, prefix: &str, n: usize) {
    for i in 0..n {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "GET /kf?rid={prefix}{i} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        assert!(out.starts_with(b"HTTP/1."), "{prefix}{i}: no HTTP answer");
    }
}

fn spans_mentioning(json: &str, prefix: &str) -> usize {
    parse_spans(json)
        .iter()
        .filter(|s| mentions(s, prefix))
        .count()
}

#[test]
fn excluded_ports_are_never_traced_from_the_command_line() {
    if !require_root("excluded_ports_are_never_traced_from_the_command_line") {
        return;
    }
    let dir = tempdir("kfilter-cli");
    let (a, b) = (free_port(), free_port());
    let _sa = service("kf-a", a, &[]);
    let _sb = service("kf-b", b, &[]);
    let ex = a.to_string();
    let tracer = Tracer::start(&dir, &["run", "--output", "json", "--exclude-port", &ex]);
    requests(a, "kfcliA", N);
    requests(b, "kfcliB", N);
    std::thread::sleep(Duration::from_millis(500));
    let (out, err) = tracer.stop();
    eprintln!("{}", summary(&err));
    assert_eq!(spans_mentioning(&out, "kfcliA"), 0, "port {a} excluded");
    // Both ends of each request to b: the test's client and the service.
    assert_eq!(spans_mentioning(&out, "kfcliB"), 2 * N, "port {b} traced");

    // --port: only that port.
    let dir = tempdir("kfilter-cli-only");
    let only = b.to_string();
    let tracer = Tracer::start(&dir, &["run", "--output", "json", "--port", &only]);
    requests(a, "kfonlyA", N);
    requests(b, "kfonlyB", N);
    std::thread::sleep(Duration::from_millis(500));
    let (out, _) = tracer.stop();
    assert_eq!(spans_mentioning(&out, "kfonlyA"), 0, "only port {b}");
    assert_eq!(spans_mentioning(&out, "kfonlyB"), 2 * N);
}

/// Spans of the traces received until `prefix`'s requests stop coming (or
/// `within` passes), counted by prefix.
fn collect(rx: &Receiver<Arc<Trace>>, prefixes: &[&str], within: Duration) -> Vec<usize> {
    let deadline = Instant::now() + within;
    let mut n = vec![0; prefixes.len()];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(t) = rx.recv_timeout(left) else { break };
        for s in &t.spans {
            let q = s.attributes.get_str("url.query").unwrap_or_default();
            for (i, p) in prefixes.iter().enumerate() {
                if q.contains(p) {
                    n[i] += 1;
                }
            }
        }
    }
    n
}

#[test]
fn a_running_tracer_changes_its_kernel_filter_without_reload() {
    if !require_root("a_running_tracer_changes_its_kernel_filter_without_reload") {
        return;
    }
    let (a, b) = (free_port(), free_port());
    let _sa = service("kf-live-a", a, &[]);
    let _sb = service("kf-live-b", b, &[]);
    let (sink, rx) = ChannelSink::new(10_000);
    let tracer = LibTracer::builder()
        .kernel_filter(Filter::new().exclude_port(a))
        .sink(sink)
        .start()
        .expect("tracer");
    requests(a, "kflive1A", N);
    requests(b, "kflive1B", N);
    // The tracer runs in this process, which it never traces: only the
    // services' SERVER spans, one per request.
    let first = collect(&rx, &["kflive1A", "kflive1B"], Duration::from_secs(3));
    assert_eq!(first, vec![0, N], "a excluded, b traced");

    // Now the other way round, on the same probes.
    tracer
        .set_kernel_filter(Filter::new().exclude_port(b))
        .expect("live filter change");
    requests(a, "kflive2A", N);
    requests(b, "kflive2B", N);
    let second = collect(&rx, &["kflive2A", "kflive2B"], Duration::from_secs(3));
    assert_eq!(second, vec![N, 0], "b excluded, a traced");

    // A filter the kernel cannot take is refused and changes nothing.
    let e = tracer
        .set_kernel_filter(Filter::new().include_comm("a-name-longer-than-fifteen"))
        .unwrap_err();
    assert!(e.to_string().contains("15 bytes"), "{e}");
    requests(a, "kflive3A", N);
    let third = collect(&rx, &["kflive3A"], Duration::from_secs(3));
    assert_eq!(third, vec![N], "the previous filter still holds");
    tracer.shutdown().expect("shutdown");
}
