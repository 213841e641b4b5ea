//! Redis parser throughput on realistic traffic.
//!
//! `cargo bench --bench redis`. The `redis` group measures wall time, the
//! `redis-cpu` group the benchmark thread's CPU time (per-core cost, stable on a
//! busy machine). Each benchmark reports bytes/s
//! (`Throughput::Bytes`) or messages/s (`Throughput::Elements`, a command
//! and a reply count as two messages).

mod common;

use common::CpuTime;
use criterion::measurement::Measurement;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use protocol_parsers::redis::RedisParser;
use protocol_parsers::{ConnectionParser, L7EventKind, Side};
use std::hint::black_box;

const COMMANDS: usize = 1000;

fn cmd(words: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", words.len()).into_bytes();
    for w in words {
        v.extend_from_slice(format!("${}\r\n", w.len()).as_bytes());
        v.extend_from_slice(w);
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// A cache-style mix: GET hits and misses, SET with small values, INCR,
/// HGETALL of a small hash, MGET of 4 keys.
fn mix() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut c = Vec::new();
    let mut s = Vec::new();
    for i in 0..COMMANDS {
        let key = format!("session:{i:08}");
        match i % 5 {
            0 => {
                c.push(cmd(&[b"GET", key.as_bytes()]));
                let v = b"{\"user\":7,\"role\":\"adm\"}";
                let mut r = format!("${}\r\n", v.len()).into_bytes();
                r.extend_from_slice(v);
                r.extend_from_slice(b"\r\n");
                s.push(r);
            }
            1 => {
                c.push(cmd(&[
                    b"SET",
                    key.as_bytes(),
                    b"{\"user\":7,\"role\":\"adm\"}",
                    b"EX",
                    b"3600",
                ]));
                s.push(b"+OK\r\n".to_vec());
            }
            2 => {
                c.push(cmd(&[b"INCR", b"counter:requests"]));
                s.push(format!(":{i}\r\n").into_bytes());
            }
            3 => {
                c.push(cmd(&[b"HGETALL", key.as_bytes()]));
                s.push(b"*4\r\n$4\r\nname\r\n$3\r\nada\r\n$4\r\nlang\r\n$2\r\nen\r\n".to_vec());
            }
            _ => {
                c.push(cmd(&[b"MGET", b"a", b"b", b"c", b"d"]));
                s.push(b"*4\r\n$1\r\n1\r\n$-1\r\n$1\r\n3\r\n$-1\r\n".to_vec());
            }
        }
    }
    (c, s)
}

/// One feed per message, events drained after each (as span-core does).
/// Returns the number of `End` events.
fn run(c: &[Vec<u8>], s: &[Vec<u8>]) -> usize {
    let mut p = RedisParser::new();
    let mut n = 0;
    for (q, r) in c.iter().zip(s) {
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
    let (cmds, replies) = mix();
    let bytes: usize = cmds.iter().chain(&replies).map(Vec::len).sum();
    assert_eq!(run(&cmds, &replies), 2 * COMMANDS);
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(2 * COMMANDS as u64));
    g.bench_with_input(BenchmarkId::new("messages", "cache_mix"), &(), |b, _| {
        b.iter(|| run(&cmds, &replies))
    });
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_with_input(BenchmarkId::new("bytes", "cache_mix"), &(), |b, _| {
        b.iter(|| run(&cmds, &replies))
    });

    // Pipelined: all commands in one write, all replies in one read.
    let client: Vec<u8> = cmds.concat();
    let server: Vec<u8> = replies.concat();
    g.throughput(Throughput::Elements(2 * COMMANDS as u64));
    g.bench_function("messages/pipelined_one_feed", |b| {
        b.iter(|| {
            let mut p = RedisParser::new();
            p.feed(Side::Client, &client);
            p.feed(Side::Server, &server);
            let mut n = 0;
            while let Some(e) = p.poll() {
                n += matches!(e.kind, L7EventKind::End { .. }) as usize;
                black_box(&e);
            }
            assert_eq!(n, 2 * COMMANDS);
        })
    });

    // Large values: 64 KiB SET / GET, 4 KiB captured, the rest a gap.
    let value = vec![b'v'; 64 * 1024];
    let set = cmd(&[b"SET", b"blob:1", &value]);
    let mut get_reply = format!("${}\r\n", value.len()).into_bytes();
    get_reply.extend_from_slice(&value);
    get_reply.extend_from_slice(b"\r\n");
    let get = cmd(&[b"GET", b"blob:1"]);
    g.throughput(Throughput::Elements(4 * COMMANDS as u64));
    g.bench_function("messages/large_values_gapped", |b| {
        b.iter(|| {
            let mut p = RedisParser::new();
            for _ in 0..COMMANDS {
                p.feed(Side::Client, &set[..4096]);
                p.gap(Side::Client, (set.len() - 4096) as u64);
                p.feed(Side::Server, b"+OK\r\n");
                p.feed(Side::Client, &get);
                p.feed(Side::Server, &get_reply[..4096]);
                p.gap(Side::Server, (get_reply.len() - 4096) as u64);
                while let Some(e) = p.poll() {
                    black_box(&e);
                }
            }
        })
    });
    g.finish();
}

fn wall(c: &mut Criterion) {
    bench(c, "redis");
}

fn cpu(c: &mut Criterion<CpuTime>) {
    bench(c, "redis-cpu");
}

criterion_group!(wall_time, wall);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(CpuTime);
    targets = cpu
}
criterion_main!(wall_time, cpu_time);
