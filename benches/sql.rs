//! MySQL / PostgreSQL wire parsers and SQL text helpers.
//!
//! Payloads mirror what the golden fixtures recorded from MariaDB and
//! PostgreSQL (crates/protocol-parsers/tests/fixtures/): short queries with
//! an OK / CommandComplete answer, and result sets of 20 rows. Each exchange
//! is fed as one client write and one server read, the way the capture
//! hands them over. `Elements` counts messages (a request and its response
//! are two).

mod common;

use common::CpuTime;
use criterion::measurement::Measurement;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use protocol_parsers::mysql::MysqlParser;
use protocol_parsers::postgres::PostgresParser;
use protocol_parsers::sql::{sanitize, summarize};
use protocol_parsers::{ConnectionParser, Side};
use std::hint::black_box;

const EXCHANGES: usize = 1000;

fn my_packet(out: &mut Vec<u8>, seq: u8, payload: &[u8]) {
    let n = payload.len() as u32;
    out.extend_from_slice(&n.to_le_bytes()[..3]);
    out.push(seq);
    out.extend_from_slice(payload);
}

fn my_coldef(name: &str) -> Vec<u8> {
    let mut p = Vec::new();
    for s in ["def", "ztfx_db", "ztfx_items", "ztfx_items", name, name] {
        p.push(s.len() as u8);
        p.extend_from_slice(s.as_bytes());
    }
    p.extend_from_slice(&[0x0c, 0x3f, 0, 0x0b, 0, 0, 0, 3, 3, 0x50, 0, 0]);
    p
}

/// (client write, server read) pairs.
type Exchanges = Vec<(Vec<u8>, Vec<u8>)>;

fn mysql_small() -> Exchanges {
    (0..EXCHANGES)
        .map(|i| {
            let mut c = Vec::new();
            let q = format!("\x03UPDATE ztfx_items SET price = price + 1 WHERE id = {i}");
            my_packet(&mut c, 0, q.as_bytes());
            let mut s = Vec::new();
            my_packet(&mut s, 1, &[0, 1, 0, 2, 0, 0, 0]);
            (c, s)
        })
        .collect()
}

fn mysql_rows() -> Exchanges {
    (0..EXCHANGES)
        .map(|i| {
            let mut c = Vec::new();
            let q =
                format!("\x03SELECT id, name, price FROM ztfx_items WHERE id > {i} ORDER BY id");
            my_packet(&mut c, 0, q.as_bytes());
            let mut s = Vec::new();
            my_packet(&mut s, 1, &[3]);
            for (k, name) in ["id", "name", "price"].iter().enumerate() {
                my_packet(&mut s, 2 + k as u8, &my_coldef(name));
            }
            my_packet(&mut s, 5, &[0xfe, 0, 0, 0x22, 0]);
            for r in 0..20u8 {
                my_packet(&mut s, 6 + r, b"\x0212\x05apple\x041.25");
            }
            my_packet(&mut s, 26, &[0xfe, 0, 0, 0x22, 0]);
            (c, s)
        })
        .collect()
}

fn pg_msg(out: &mut Vec<u8>, t: u8, body: &[u8]) {
    out.push(t);
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
}

fn pg_rows(out: &mut Vec<u8>, n: usize) {
    let mut t = vec![0, 3];
    for name in ["id", "name", "price"] {
        t.extend_from_slice(name.as_bytes());
        t.extend_from_slice(&[
            0, 0, 0, 0x40, 6, 0, 1, 0, 0, 0, 0x17, 0, 4, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ]);
    }
    pg_msg(out, b'T', &t);
    for _ in 0..n {
        pg_msg(
            out,
            b'D',
            b"\x00\x03\x00\x00\x00\x0212\x00\x00\x00\x05apple\x00\x00\x00\x041.25",
        );
    }
    pg_msg(out, b'C', format!("SELECT {n}\0").as_bytes());
}

fn pg_simple(rows: usize) -> Exchanges {
    (0..EXCHANGES)
        .map(|i| {
            let mut c = Vec::new();
            let q = if rows == 0 {
                format!("UPDATE ztfx_items SET price = price + 1 WHERE id = {i}\0")
            } else {
                format!("SELECT id, name, price FROM ztfx_items WHERE id > {i} ORDER BY id\0")
            };
            pg_msg(&mut c, b'Q', q.as_bytes());
            let mut s = Vec::new();
            if rows == 0 {
                pg_msg(&mut s, b'C', b"UPDATE 1\0");
            } else {
                pg_rows(&mut s, rows);
            }
            pg_msg(&mut s, b'Z', b"I");
            (c, s)
        })
        .collect()
}

fn pg_extended() -> Exchanges {
    (0..EXCHANGES)
        .map(|_| {
            let mut c = Vec::new();
            pg_msg(
                &mut c,
                b'P',
                b"\0SELECT name FROM ztfx_items WHERE id = $1\0\0\x01\0\0\0\x17",
            );
            pg_msg(
                &mut c,
                b'B',
                b"\0\0\0\x01\0\x01\0\x01\0\0\0\x04\0\0\0\x07\0\x01\0\x01",
            );
            pg_msg(&mut c, b'D', b"P\0");
            pg_msg(&mut c, b'E', b"\0\0\0\0\0");
            pg_msg(&mut c, b'S', b"");
            let mut s = Vec::new();
            pg_msg(&mut s, b'1', b"");
            pg_msg(&mut s, b'2', b"");
            pg_rows(&mut s, 1);
            pg_msg(&mut s, b'Z', b"I");
            (c, s)
        })
        .collect()
}

/// Messages (client + server) in the exchanges, as the parser frames them.
fn count(ex: &Exchanges, per_exchange: u64) -> u64 {
    ex.len() as u64 * per_exchange
}

fn run(p: &mut dyn ConnectionParser, ex: &Exchanges) -> usize {
    let mut events = 0;
    for (c, s) in ex {
        p.feed(Side::Client, c);
        p.feed(Side::Server, s);
        while let Some(e) = p.poll() {
            black_box(&e);
            events += 1;
        }
    }
    events
}

/// The wire parsers; `cpu`: the `sql_wire_cpu_*` groups (thread CPU time).
fn wire_groups<M: Measurement>(c: &mut Criterion<M>, cpu: bool) {
    // (name, exchanges, wire messages per exchange, parser)
    type Make = fn() -> Box<dyn ConnectionParser>;
    let my: Make = || Box::new(MysqlParser::new());
    let pg: Make = || Box::new(PostgresParser::new());
    let cases: Vec<(&str, Exchanges, u64, Make)> = vec![
        ("mysql_query_ok", mysql_small(), 2, my),
        ("mysql_select_20_rows", mysql_rows(), 2 + 4 + 1 + 20 + 1, my),
        ("pg_simple_update", pg_simple(0), 3, pg),
        (
            "pg_simple_select_20_rows",
            pg_simple(20),
            1 + 1 + 20 + 2,
            pg,
        ),
        ("pg_extended_select", pg_extended(), 5 + 6, pg),
    ];
    for (name, ex, per, make) in &cases {
        let bytes: u64 = ex.iter().map(|(a, b)| (a.len() + b.len()) as u64).sum();
        // Every exchange parsed: request Head/End, response Head/End.
        assert_eq!(run(make().as_mut(), ex), ex.len() * 4, "{name}");
        let mut g = c.benchmark_group(if cpu {
            "sql_wire_cpu_bytes"
        } else {
            "sql_wire_bytes"
        });
        g.throughput(Throughput::Bytes(bytes));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| run(make().as_mut(), ex))
        });
        g.finish();
        let mut g = c.benchmark_group(if cpu {
            "sql_wire_cpu_messages"
        } else {
            "sql_wire_messages"
        });
        g.throughput(Throughput::Elements(count(ex, *per)));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| run(make().as_mut(), ex))
        });
        g.finish();
    }
}

const QUERIES: &[&str] = &[
    "SELECT id, name, price FROM ztfx_items WHERE id >= 10 AND name = 'apple' ORDER BY id LIMIT 20",
    "INSERT INTO ztfx_items (id, name, price) VALUES (1, 'apple', 1.25), (2, 'pear', 2.50), (3, 'it''s', 3)",
    "/* traceparent='00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' */ UPDATE ztfx_items SET price = $1 WHERE id IN (1, 2, 3)",
    "WITH recent AS (SELECT * FROM orders WHERE created_at > now() - interval '1 day') SELECT count(*) FROM recent",
];

fn text(c: &mut Criterion) {
    let bytes: u64 = QUERIES.iter().map(|q| q.len() as u64).sum();
    let mut g = c.benchmark_group("sql_sanitize");
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("bytes", |b| {
        b.iter(|| {
            QUERIES
                .iter()
                .map(|q| sanitize(black_box(q)).len())
                .sum::<usize>()
        })
    });
    g.throughput(Throughput::Elements(QUERIES.len() as u64));
    g.bench_function("statements", |b| {
        b.iter(|| {
            QUERIES
                .iter()
                .map(|q| sanitize(black_box(q)).len())
                .sum::<usize>()
        })
    });
    g.finish();
    let mut g = c.benchmark_group("sql_summarize");
    g.throughput(Throughput::Elements(QUERIES.len() as u64));
    g.bench_function("statements", |b| {
        b.iter(|| {
            QUERIES
                .iter()
                .filter(|q| summarize(black_box(q)).table.is_some())
                .count()
        })
    });
    g.finish();
}

fn wire(c: &mut Criterion) {
    wire_groups(c, false);
}

fn wire_cpu(c: &mut Criterion<CpuTime>) {
    wire_groups(c, true);
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .measurement_time(std::time::Duration::from_secs(3))
        .warm_up_time(std::time::Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = wire, text
}
criterion_group! {
    name = cpu_time;
    config = config().with_measurement(CpuTime);
    targets = wire_cpu
}
criterion_main!(benches, cpu_time);
