//! HTTP/1 parser throughput on realistic keep-alive traffic.
//!
//! `cargo bench --bench http1`. The `http1` group measures wall time, the
//! `http1-cpu` group the benchmark thread's CPU time (per-core cost, stable on a
//! busy machine). Each benchmark reports bytes/s
//! (`Throughput::Bytes`) or messages/s (`Throughput::Elements`, a request
//! and a response count as two messages).

mod common;

use common::CpuTime;
use criterion::measurement::Measurement;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use protocol_parsers::http1::Http1Parser;
use protocol_parsers::{ConnectionParser, L7EventKind, Side};
use std::hint::black_box;

const EXCHANGES: usize = 1000;

/// A small API call as curl or a client library sends it.
fn small_request(i: usize) -> Vec<u8> {
    format!(
        "GET /api/v1/users/{i}?fields=name HTTP/1.1\r\nHost: users.internal:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n"
    )
    .into_bytes()
}

fn small_response() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Type: application/json\r\nContent-Length: 28\r\nConnection: keep-alive\r\n\r\n{\"id\":7,\"name\":\"ada\",\"ok\":1}"
        .to_vec()
}

/// A browser-like request with many headers, some of them credentials.
fn browser_request() -> Vec<u8> {
    b"GET /static/app.js?v=3 HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\nReferer: https://www.example.com/\r\nCookie: session=0123456789abcdef0123456789abcdef; theme=dark; _ga=GA1.2.1234567890.1234567890\r\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abc\r\nX-Request-Id: 6f1c2c57-1e0b-4c7a-9d7b-8a4f7b7f1d2e\r\nConnection: keep-alive\r\n\r\n"
        .to_vec()
}

fn chunked_response() -> Vec<u8> {
    let mut r = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for _ in 0..16 {
        r.extend_from_slice(b"100\r\n");
        r.extend_from_slice(&[b'x'; 256]);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"0\r\n\r\n");
    r
}

/// A named workload: request and response messages.
type Case = (&'static str, Vec<Vec<u8>>, Vec<Vec<u8>>);

/// Feed each message in its own `feed` call (one syscall per message) and
/// drain the events after each, as span-core does.
/// Returns the number of `End` events.
fn run(req: &[Vec<u8>], res: &[Vec<u8>]) -> usize {
    let mut p = Http1Parser::new();
    let mut n = 0;
    for (q, r) in req.iter().zip(res) {
        p.feed(Side::Client, q);
        while let Some(e) = p.poll() {
            n += matches!(e.kind, L7EventKind::End { .. }) as usize;
            black_box(&e);
        }
        p.feed(Side::Server, r);
        while let Some(e) = p.poll() {
            n += matches!(e.kind, L7EventKind::End { .. }) as usize;
            black_box(&e);
        }
    }
    n
}

fn bench<M: Measurement>(c: &mut Criterion<M>, group: &str) {
    let cases: Vec<Case> = vec![
        (
            "small_api",
            (0..EXCHANGES).map(small_request).collect(),
            vec![small_response(); EXCHANGES],
        ),
        (
            "browser_headers",
            vec![browser_request(); EXCHANGES],
            vec![small_response(); EXCHANGES],
        ),
        (
            "chunked_4k",
            (0..EXCHANGES).map(small_request).collect(),
            vec![chunked_response(); EXCHANGES],
        ),
    ];
    for (name, req, res) in &cases {
        let bytes: usize = req.iter().chain(res).map(Vec::len).sum();
        assert_eq!(run(req, res), 2 * EXCHANGES);
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(2 * EXCHANGES as u64));
        g.bench_with_input(BenchmarkId::new("messages", name), name, |b, _| {
            b.iter(|| run(req, res))
        });
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_with_input(BenchmarkId::new("bytes", name), name, |b, _| {
            b.iter(|| run(req, res))
        });
        g.finish();
    }

    // Pipelined: all requests in one feed, all responses in one feed.
    let client: Vec<u8> = (0..EXCHANGES).flat_map(small_request).collect();
    let server: Vec<u8> = (0..EXCHANGES).flat_map(|_| small_response()).collect();
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(2 * EXCHANGES as u64));
    g.bench_function("messages/pipelined_one_feed", |b| {
        b.iter(|| {
            let mut p = Http1Parser::new();
            p.feed(Side::Client, &client);
            p.feed(Side::Server, &server);
            let mut n = 0;
            while let Some(e) = p.poll() {
                n += matches!(e.kind, L7EventKind::End { .. }) as usize;
                black_box(&e);
            }
            assert_eq!(n, 2 * EXCHANGES);
        })
    });
    // Large bodies mostly not captured: 4 KiB prefix then a gap.
    let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1048576\r\n\r\n";
    let mut prefix = head.to_vec();
    prefix.resize(4096, b'z');
    let gap = (head.len() + 1_048_576 - 4096) as u64;
    g.throughput(Throughput::Elements(2 * EXCHANGES as u64));
    g.bench_function("messages/large_bodies_gapped", |b| {
        b.iter(|| {
            let mut p = Http1Parser::new();
            for i in 0..EXCHANGES {
                p.feed(Side::Client, &small_request(i % 10));
                p.feed(Side::Server, &prefix);
                p.gap(Side::Server, gap);
                while let Some(e) = p.poll() {
                    black_box(&e);
                }
            }
        })
    });
    g.finish();
}

fn wall(c: &mut Criterion) {
    bench(c, "http1");
}

fn cpu(c: &mut Criterion<CpuTime>) {
    bench(c, "http1-cpu");
}

criterion_group!(wall_time, wall);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(CpuTime);
    targets = cpu
}
criterion_main!(wall_time, cpu_time);
