//! `ConnectionParser::feed_into` gives exactly the events `feed` then
//! `poll` give, in the same order, for every parser over real captured
//! connections; also when the caller's queue already holds events and when
//! the parser still holds events it was not asked for.

#[path = "fixtures/zcap.rs"]
mod zcap;

use protocol_parsers::{new_parser, L7Event, Protocol, Side};
use std::collections::VecDeque;
use std::path::PathBuf;

type Record = (Side, Vec<u8>);

fn dir(protocol: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(protocol)
}

/// An HTTP/1 or HTTP/2 fixture: `<name>.client.bin`, `<name>.server.bin`
/// and the order of the reads (`<order>`: lines `C <n>` / `S <n>`; other
/// lines such as `S close` are not reads).
fn split_capture(protocol: &str, name: &str, order: &str) -> Vec<Record> {
    let d = dir(protocol);
    let client = std::fs::read(d.join(format!("{name}.client.bin"))).unwrap();
    let server = std::fs::read(d.join(format!("{name}.server.bin"))).unwrap();
    let text = std::fs::read_to_string(d.join(format!("{name}.{order}"))).unwrap();
    let (mut c, mut s) = (0, 0);
    let mut recs = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(side), Some(n)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<usize>() else {
            continue;
        };
        match side {
            "C" => {
                recs.push((Side::Client, client[c..c + n].to_vec()));
                c += n;
            }
            "S" => {
                recs.push((Side::Server, server[s..s + n].to_vec()));
                s += n;
            }
            _ => panic!("{name}: bad line {line:?}"),
        }
    }
    assert!(!recs.is_empty(), "{name}: no reads");
    recs
}

fn captures() -> Vec<(Protocol, String, Vec<Record>)> {
    let mut all = Vec::new();
    for name in [
        "nginx-curl-keepalive",
        "nginx-pipelined",
        "nginx-upstream",
        "py-httpclient",
    ] {
        all.push((
            Protocol::Http1,
            name.into(),
            split_capture("http1", name, "order"),
        ));
    }
    for name in [
        "redis-cli-lrange",
        "redispy-pipeline",
        "redispy-pubsub-resp3",
        "raw-inline",
    ] {
        all.push((
            Protocol::Redis,
            name.into(),
            split_capture("redis", name, "order"),
        ));
    }
    for name in ["h2c0", "h2c1", "grpc0"] {
        all.push((
            Protocol::Http2,
            name.into(),
            split_capture("http2", name, "log"),
        ));
    }
    for (protocol, dir_name) in [(Protocol::Mysql, "mysql"), (Protocol::Postgres, "postgres")] {
        let mut names: Vec<String> = std::fs::read_dir(dir(dir_name))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".zcap") || n.ends_with(".zcap.gz"))
            .collect();
        names.sort();
        assert!(!names.is_empty(), "no {dir_name} captures");
        for n in names {
            let recs = zcap::load(&format!("{dir_name}/{n}"));
            all.push((protocol, n, recs));
        }
    }
    all
}

fn with_poll(protocol: Protocol, recs: &[Record]) -> Vec<L7Event> {
    zcap::run(&mut *new_parser(protocol), recs)
}

/// `feed_into` with one queue kept throughout (as the assembler does),
/// which holds `keep` events of earlier calls when the next call appends.
fn with_feed_into(protocol: Protocol, recs: &[Record], keep: usize) -> Vec<L7Event> {
    let mut p = new_parser(protocol);
    let mut q = VecDeque::new();
    let mut out = Vec::new();
    for (side, data) in recs {
        p.feed_into(*side, data, &mut q);
        while q.len() > keep {
            out.push(q.pop_front().unwrap());
        }
    }
    out.extend(q);
    out
}

#[test]
fn feed_into_gives_the_events_of_feed_and_poll() {
    let mut total = 0;
    for (protocol, name, recs) in captures() {
        // (psycopg_ssl has none: after its SSLRequest come TLS records.)
        let want = with_poll(protocol, &recs);
        total += want.len();
        for keep in [0, 1, 3] {
            assert_eq!(
                with_feed_into(protocol, &recs, keep),
                want,
                "{name}: feed_into (keeping {keep}) differs from feed + poll"
            );
        }
    }
    assert!(total > 100, "only {total} events in all captures");
}

/// Events the parser queued before (a `feed` not followed by `poll`) come
/// out first, and the parser keeps nothing afterwards.
#[test]
fn feed_into_hands_over_events_the_parser_still_held() {
    for (protocol, name, recs) in captures() {
        let want = with_poll(protocol, &recs);
        let mut p = new_parser(protocol);
        let mut q = VecDeque::new();
        for (i, (side, data)) in recs.iter().enumerate() {
            if i % 2 == 0 {
                p.feed(*side, data);
            } else {
                p.feed_into(*side, data, &mut q);
                assert!(p.poll().is_none(), "{name}: the parser kept events");
            }
        }
        while let Some(e) = p.poll() {
            q.push_back(e);
        }
        assert_eq!(Vec::from(q), want, "{name}");
    }
}
