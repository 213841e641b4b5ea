//! HTTP/2 parser benchmarks: the recorded grpcio connection (real traffic),
//! a synthetic connection of many small gRPC unary calls (the
//! messages-per-second figure), and the HPACK decoder alone.
//!
//! Run: `cargo bench --bench http2`. The `http2-cpu` group measures the
//! parser in the benchmark thread's CPU time (stable on a busy machine).

mod common;

use common::CpuTime;
use criterion::measurement::Measurement;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use protocol_parsers::http2::hpack::{Decoder, Encoder, Indexing};
use protocol_parsers::http2::Http2Parser;
use protocol_parsers::{ConnectionParser, Side};
use std::hint::black_box;
use std::path::PathBuf;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("crates/protocol-parsers/tests/fixtures/http2")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn frame(kind: u8, flags: u8, sid: u32, payload: &[u8], out: &mut Vec<u8>) {
    let l = (payload.len() as u32).to_be_bytes();
    out.extend_from_slice(&[l[1], l[2], l[3], kind, flags]);
    out.extend_from_slice(&sid.to_be_bytes());
    out.extend_from_slice(payload);
}

/// `n` unary gRPC calls on one connection (HEADERS + DATA each way,
/// trailers), encoded by our HPACK encoder with dynamic indexing like real
/// clients do. Returns the writes of each side, in order: one per message.
fn small_calls(n: u32) -> Vec<(Side, Vec<u8>)> {
    let mut writes = Vec::new();
    let mut c = PREFACE.to_vec();
    let mut s = Vec::new();
    frame(4, 0, 0, &[], &mut c);
    frame(4, 0, 0, &[], &mut s);
    writes.push((Side::Client, std::mem::take(&mut c)));
    writes.push((Side::Server, std::mem::take(&mut s)));
    let (mut ce, mut se) = (Encoder::new(), Encoder::new());
    let msg = [0u8, 0, 0, 0, 7, 10, 5, b'h', b'e', b'l', b'l', b'o'];
    for i in 0..n {
        let sid = 2 * i + 1;
        let rid = format!("req-{}", i % 64);
        let mut b = Vec::new();
        ce.encode(
            [
                (&b":method"[..], &b"POST"[..], Indexing::Incremental),
                (b":scheme", b"http", Indexing::Incremental),
                (
                    b":path",
                    b"/demo.v1.Greeter/SayHello",
                    Indexing::Incremental,
                ),
                (b":authority", b"127.0.0.1:50051", Indexing::Incremental),
                (b"content-type", b"application/grpc", Indexing::Incremental),
                (b"te", b"trailers", Indexing::Incremental),
                (b"user-agent", b"grpc-rust/1.0", Indexing::Incremental),
                (b"x-request-id", rid.as_bytes(), Indexing::Without),
            ],
            &mut b,
        );
        frame(1, 4, sid, &b, &mut c);
        frame(0, 1, sid, &msg, &mut c);
        let mut h = Vec::new();
        se.encode(
            [
                (&b":status"[..], &b"200"[..], Indexing::Incremental),
                (b"content-type", b"application/grpc", Indexing::Incremental),
            ],
            &mut h,
        );
        frame(1, 4, sid, &h, &mut s);
        frame(0, 0, sid, &msg, &mut s);
        let mut t = Vec::new();
        se.encode(
            [
                (&b"grpc-status"[..], &b"0"[..], Indexing::Incremental),
                (b"grpc-message", b"", Indexing::Incremental),
            ],
            &mut t,
        );
        frame(1, 5, sid, &t, &mut s);
        writes.push((Side::Client, std::mem::take(&mut c)));
        writes.push((Side::Server, std::mem::take(&mut s)));
    }
    writes
}

/// Feed the writes in order; count events.
fn run_writes(writes: &[(Side, Vec<u8>)]) -> usize {
    let mut p = Http2Parser::new();
    let mut events = 0;
    for (side, w) in writes {
        p.feed(*side, w);
        while let Some(e) = p.poll() {
            black_box(&e);
            events += 1;
        }
    }
    events
}

/// Feed both directions in 4 KiB chunks (like captured syscalls), client
/// chunk then server chunk; count events.
fn run(client: &[u8], server: &[u8]) -> usize {
    let mut p = Http2Parser::new();
    let mut events = 0;
    let (mut ci, mut si) = (client.chunks(4096), server.chunks(4096));
    loop {
        let (a, b) = (ci.next(), si.next());
        if a.is_none() && b.is_none() {
            break;
        }
        if let Some(a) = a {
            p.feed(Side::Client, a);
        }
        if let Some(b) = b {
            p.feed(Side::Server, b);
        }
        while let Some(e) = p.poll() {
            black_box(&e);
            events += 1;
        }
    }
    events
}

fn bench_parser(c: &mut Criterion) {
    parser_group(c, "http2");
}

/// The parser under the `http2-cpu` name, measured in thread CPU time.
fn bench_parser_cpu(c: &mut Criterion<CpuTime>) {
    parser_group(c, "http2-cpu");
}

fn parser_group<M: Measurement>(c: &mut Criterion<M>, group: &str) {
    let mut g = c.benchmark_group(group);
    // Real grpcio connection: 23 calls, one with 40 KB messages.
    let (gc, gs) = (fixture("grpc0.client.bin"), fixture("grpc0.server.bin"));
    assert_eq!(run(&gc, &gs), 23 * 4);
    g.throughput(Throughput::Bytes((gc.len() + gs.len()) as u64));
    g.bench_function("grpcio_connection_bytes", |b| b.iter(|| run(&gc, &gs)));

    // Small unary calls: messages = requests + responses.
    let n = 2000;
    let writes = small_calls(n);
    let total: usize = writes.iter().map(|w| w.1.len()).sum();
    assert_eq!(run_writes(&writes), n as usize * 4);
    g.throughput(Throughput::Elements(2 * n as u64));
    g.bench_with_input(
        BenchmarkId::new("small_grpc_calls_messages", n),
        &n,
        |b, _| b.iter(|| run_writes(&writes)),
    );
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_with_input(BenchmarkId::new("small_grpc_calls_bytes", n), &n, |b, _| {
        b.iter(|| run_writes(&writes))
    });
    g.finish();
}

fn bench_hpack(c: &mut Criterion) {
    // Header blocks as a browser-like client sends them: literals with
    // Huffman the first time, dynamic references after.
    let mut enc = Encoder::new();
    let mut blocks = Vec::new();
    for i in 0..1000 {
        let path = format!("/api/v1/items/{}", i % 50);
        let mut b = Vec::new();
        enc.encode(
            [
                (&b":method"[..], &b"GET"[..], Indexing::Incremental),
                (b":scheme", b"https", Indexing::Incremental),
                (b":path", path.as_bytes(), Indexing::Incremental),
                (b":authority", b"api.example.com", Indexing::Incremental),
                (
                    b"user-agent",
                    b"Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
                    Indexing::Incremental,
                ),
                (b"accept", b"application/json", Indexing::Incremental),
                (
                    b"accept-encoding",
                    b"gzip, deflate, br",
                    Indexing::Incremental,
                ),
            ],
            &mut b,
        );
        blocks.push(b);
    }
    let bytes: usize = blocks.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("hpack");
    g.throughput(Throughput::Elements(blocks.len() as u64));
    g.bench_function("decode_blocks", |b| {
        b.iter(|| {
            let mut d = Decoder::new();
            let mut n = 0usize;
            for blk in &blocks {
                d.decode(blk, |f| {
                    black_box(f);
                    n += 1;
                })
                .unwrap();
            }
            n
        })
    });
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("decode_bytes", |b| {
        b.iter(|| {
            let mut d = Decoder::new();
            for blk in &blocks {
                d.decode(blk, |f| {
                    black_box(f);
                })
                .unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_parser, bench_hpack);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(CpuTime);
    targets = bench_parser_cpu
}
criterion_main!(benches, cpu_time);
