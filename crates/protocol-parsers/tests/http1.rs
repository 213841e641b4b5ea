//! Golden tests of the HTTP/1 parser on real traffic.
//!
//! The fixtures in `tests/fixtures/http1/` were recorded by
//! `tests/fixtures/http1/capture.py` (a recording proxy between curl, Python
//! http.client/urllib/raw sockets and Python http.server / nginx). Each
//! connection has `<name>.client.bin`, `<name>.server.bin` and `<name>.order`
//! (the real recv() sizes and interleaving of both directions).
//!
//! Every fixture is replayed in several chunkings (as recorded, one feed per
//! side, byte by byte, with a 4 KiB capture prefix per recv and a gap for the
//! rest, ...) and must give exactly the events in `<name>.events`. A mismatch
//! writes `<name>.events.actual` for review; `UPDATE_GOLDEN=1` rewrites the
//! golden files.

use std::fmt::Write as _;
use std::path::PathBuf;

use protocol_parsers::http1::{looks_like_request, looks_like_response, Http1Parser};
use protocol_parsers::{
    detect, ConnectionParser, HttpRequest, HttpResponse, L7Event, L7EventKind, MessageInfo,
    Protocol, Side,
};

const FIXTURES: &[&str] = &[
    "py-curl-keepalive",
    "py-httpclient",
    "py-urllib",
    "py-curl-expect100",
    "py-pipelined",
    "py-until-close",
    "nginx-curl-keepalive",
    "nginx-head-304-204",
    "nginx-expect100",
    "nginx-upstream",
    "nginx-pipelined",
];

enum Step {
    Data(Side, usize),
    Close(Side),
}

struct Fixture {
    name: &'static str,
    client: Vec<u8>,
    server: Vec<u8>,
    order: Vec<Step>,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/http1")
}

fn load(name: &'static str) -> Fixture {
    let d = dir();
    let client = std::fs::read(d.join(format!("{name}.client.bin"))).unwrap();
    let server = std::fs::read(d.join(format!("{name}.server.bin"))).unwrap();
    let order_text = std::fs::read_to_string(d.join(format!("{name}.order"))).unwrap();
    let order = order_text
        .lines()
        .map(|l| {
            let (s, v) = l.split_once(' ').unwrap();
            let side = if s == "C" { Side::Client } else { Side::Server };
            if v == "close" {
                Step::Close(side)
            } else {
                Step::Data(side, v.parse().unwrap())
            }
        })
        .collect();
    Fixture {
        name,
        client,
        server,
        order,
    }
}

/// How each recorded recv is handed to the parser.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// As recorded.
    Recorded,
    /// Every recv split into pieces of `n` bytes.
    Pieces(usize),
    /// Only the first `n` bytes of each recv captured, the rest a gap.
    Prefix(usize),
    /// All client bytes, then all server bytes, one feed each.
    Whole,
}

fn replay(f: &Fixture, mode: Mode) -> Vec<L7Event> {
    let mut p = Http1Parser::new();
    let mut events = Vec::new();
    if let Mode::Whole = mode {
        p.feed(Side::Client, &f.client);
        p.feed(Side::Server, &f.server);
        p.close(Side::Client);
        p.close(Side::Server);
        events.extend(std::iter::from_fn(|| p.poll()));
        return events;
    }
    let mut pos = [0usize; 2];
    for step in &f.order {
        match *step {
            Step::Close(side) => p.close(side),
            Step::Data(side, n) => {
                let (buf, at) = match side {
                    Side::Client => (&f.client, &mut pos[0]),
                    Side::Server => (&f.server, &mut pos[1]),
                };
                let chunk = &buf[*at..*at + n];
                *at += n;
                match mode {
                    Mode::Recorded | Mode::Whole => p.feed(side, chunk),
                    Mode::Pieces(k) => chunk.chunks(k).for_each(|c| p.feed(side, c)),
                    Mode::Prefix(k) => {
                        let cap = k.min(n);
                        p.feed(side, &chunk[..cap]);
                        p.gap(side, (n - cap) as u64);
                    }
                }
            }
        }
        events.extend(std::iter::from_fn(|| p.poll()));
    }
    events
}

fn side(s: Side) -> char {
    match s {
        Side::Client => 'C',
        Side::Server => 'S',
    }
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or("-".to_owned(), |v| v.to_string())
}

fn headers(h: &[(protocol_parsers::HeaderName, String)]) -> String {
    h.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" | ")
}

fn render(events: &[L7Event]) -> String {
    let mut out = String::new();
    for e in events {
        let _ = write!(out, "{} #{} ", side(e.side), e.exchange);
        let _ = match &e.kind {
            L7EventKind::Head {
                offset,
                info: MessageInfo::HttpRequest(r),
            } => writeln!(
                out,
                "head @{offset} {} {} {} authority={} content_length={} [{}]",
                opt(&r.method),
                opt(&r.target),
                opt(&r.version.map(|v| v.as_str())),
                opt(&r.authority),
                opt(&r.content_length),
                headers(&r.headers)
            ),
            L7EventKind::Head {
                offset,
                info: MessageInfo::HttpResponse(r),
            } => writeln!(
                out,
                "head @{offset} {} {} content_length={} [{}]",
                opt(&r.status),
                opt(&r.version.map(|v| v.as_str())),
                opt(&r.content_length),
                headers(&r.headers)
            ),
            L7EventKind::Head { offset, info } => writeln!(out, "head @{offset} {info:?}"),
            L7EventKind::End { end, info } => writeln!(out, "end @{end} {info:?}"),
            L7EventKind::Desync { offset, reason } => writeln!(out, "desync @{offset} {reason}"),
        };
    }
    out
}

fn golden(f: &Fixture, events: &[L7Event]) {
    let text = render(events);
    let path = dir().join(format!("{}.events", f.name));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    if want != text {
        let actual = dir().join(format!("{}.events.actual", f.name));
        std::fs::write(&actual, &text).unwrap();
        panic!(
            "{}: events differ from {} (actual written to {})",
            f.name,
            path.display(),
            actual.display()
        );
    }
}

fn requests(events: &[L7Event]) -> Vec<(u64, &HttpRequest)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            L7EventKind::Head {
                info: MessageInfo::HttpRequest(r),
                ..
            } => Some((e.exchange, r)),
            _ => None,
        })
        .collect()
}

fn responses(events: &[L7Event]) -> Vec<(u64, &HttpResponse)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            L7EventKind::Head {
                info: MessageInfo::HttpResponse(r),
                ..
            } => Some((e.exchange, r)),
            _ => None,
        })
        .collect()
}

/// (method, target) of each request and the status of the response with
/// the same exchange, in request order.
fn exchanges(events: &[L7Event]) -> Vec<(String, String, u16)> {
    let res = responses(events);
    requests(events)
        .into_iter()
        .map(|(x, r)| {
            let status = res
                .iter()
                .find(|(y, _)| *y == x)
                .and_then(|(_, s)| s.status)
                .unwrap_or(0);
            (
                r.method.clone().unwrap_or_default(),
                r.target.clone().unwrap_or_default(),
                status,
            )
        })
        .collect()
}

fn ex(list: &[(&str, &str, u16)]) -> Vec<(String, String, u16)> {
    list.iter()
        .map(|(m, t, s)| (m.to_string(), t.to_string(), *s))
        .collect()
}

/// Checks that hold for every fixture, independent of the golden file.
fn structural(f: &Fixture, events: &[L7Event]) {
    let mut open: Vec<(Side, u64, u64)> = Vec::new();
    let mut last_end = [0u64; 2];
    for e in events {
        let (stream, i) = match e.side {
            Side::Client => (&f.client, 0),
            Side::Server => (&f.server, 1),
        };
        match &e.kind {
            L7EventKind::Head { offset, info } => {
                let at = &stream[*offset as usize..];
                match info {
                    MessageInfo::HttpRequest(r) => {
                        let m = r.method.as_deref().unwrap();
                        assert!(at.starts_with(format!("{m} ").as_bytes()), "{}", f.name);
                        assert!(r.headers.iter().all(|(n, _)| n != "authorization"
                            && n != "cookie"
                            && n != "proxy-authorization"));
                    }
                    MessageInfo::HttpResponse(r) => {
                        let s = format!(" {} ", r.status.unwrap());
                        assert!(at.starts_with(b"HTTP/1."), "{}", f.name);
                        assert_eq!(&at[8..13], s.as_bytes(), "{}", f.name);
                    }
                    _ => panic!("not HTTP"),
                }
                // Messages are contiguous: each starts where the previous
                // ended, except after interim 1xx responses (no events).
                if *offset != last_end[i] {
                    let between = &stream[last_end[i] as usize..*offset as usize];
                    assert_eq!(e.side, Side::Server, "{}: gap before message", f.name);
                    assert!(between.starts_with(b"HTTP/1.1 1"), "{}", f.name);
                }
                open.push((e.side, e.exchange, *offset));
            }
            L7EventKind::End { end, .. } => {
                let k = open
                    .iter()
                    .position(|(s, x, _)| *s == e.side && *x == e.exchange)
                    .expect("End without Head");
                let (_, _, start) = open.remove(k);
                assert!(*end > start);
                last_end[i] = *end;
            }
            L7EventKind::Desync { .. } => panic!("{}: desync on clean traffic", f.name),
        }
    }
    assert!(open.is_empty(), "{}: unfinished messages {open:?}", f.name);
    // Every byte is inside a message (or an interim 1xx response).
    assert_eq!(last_end[0], f.client.len() as u64, "{}", f.name);
    assert_eq!(last_end[1], f.server.len() as u64, "{}", f.name);
    // Each exchange has exactly one request head and one response head.
    let req = requests(events);
    let res = responses(events);
    assert_eq!(req.len(), res.len(), "{}", f.name);
    for (x, _) in &req {
        assert_eq!(res.iter().filter(|(y, _)| y == x).count(), 1, "{}", f.name);
    }
}

/// Client events, then server events, each in their order.
fn by_side(mut events: Vec<L7Event>) -> Vec<L7Event> {
    events.sort_by_key(|e| e.side);
    events
}

#[test]
fn golden_all_chunkings() {
    for name in FIXTURES {
        let f = load(name);
        let events = replay(&f, Mode::Recorded);
        structural(&f, &events);
        golden(&f, &events);
        // One feed per side changes only how the two sides interleave.
        assert_eq!(by_side(replay(&f, Mode::Whole)), by_side(events.clone()));
        for mode in [
            Mode::Pieces(1),
            Mode::Pieces(2),
            Mode::Pieces(7),
            Mode::Pieces(100),
            Mode::Prefix(4096),
        ] {
            assert_eq!(replay(&f, mode), events, "{name} in {mode:?}");
        }
    }
}

#[test]
fn detection_on_first_bytes() {
    for name in FIXTURES {
        let f = load(name);
        for n in [4, 16, f.client.len().min(4096)] {
            let n = n.min(f.client.len());
            assert!(
                looks_like_request(&f.client[..n]) || n < 5,
                "{name}: {n} request bytes"
            );
        }
        assert!(looks_like_response(&f.server[..12]), "{name}");
        let (c, s) = (f.client.len().min(64), f.server.len().min(64));
        assert_eq!(
            detect(Side::Client, &f.client[..c], 80),
            Some(Protocol::Http1)
        );
        assert_eq!(
            detect(Side::Server, &f.server[..s], 80),
            Some(Protocol::Http1)
        );
    }
}

#[test]
fn python_http_client_exchanges() {
    let f = load("py-httpclient");
    let events = replay(&f, Mode::Recorded);
    assert_eq!(
        exchanges(&events),
        ex(&[
            ("GET", "/hello", 200),
            ("POST", "/echo", 200),
            ("HEAD", "/chunked", 200),
            ("HEAD", "/hello", 200),
            ("GET", "/nocontent", 204),
            ("GET", "/etag", 304),
            ("GET", "/chunked", 200),
        ])
    );
    let req = requests(&events);
    let first = req[0].1;
    assert_eq!(
        first.header("traceparent"),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
    assert_eq!(first.authority.as_deref(), Some("127.0.0.1:21011"));
    // The request carried Authorization and Cookie: never kept.
    assert!(f.client.windows(13).any(|w| w == b"Authorization"));
    assert_eq!(first.header("authorization"), None);
    assert_eq!(first.header("cookie"), None);
    assert_eq!(req[1].1.content_length, Some(7));
    assert_eq!(req[6].1.header("x-request-id"), Some("req-7"));
    // The HEAD /chunked response declares chunked but has no body: the next
    // response starts right after its head.
    let res = responses(&events);
    assert_eq!(res[2].1.content_length, None);
    assert_eq!(res[3].1.content_length, Some(13));
}

#[test]
fn curl_keepalive_and_chunked() {
    let f = load("py-curl-keepalive");
    let events = replay(&f, Mode::Recorded);
    assert_eq!(
        exchanges(&events),
        ex(&[
            ("GET", "/hello", 200),
            ("GET", "/chunked", 200),
            ("GET", "/missing", 404),
        ])
    );
    // The chunked response (with extensions and a trailer) ends exactly
    // where the 404 starts.
    let ends: Vec<u64> = events
        .iter()
        .filter(|e| e.side == Side::Server)
        .filter_map(|e| match e.kind {
            L7EventKind::End { end, .. } => Some(end),
            _ => None,
        })
        .collect();
    let start_404 = f
        .server
        .windows(12)
        .position(|w| w == b"HTTP/1.1 404")
        .unwrap() as u64;
    assert_eq!(ends[1], start_404);
    assert_eq!(ends[2], f.server.len() as u64);
}

#[test]
fn expect_100_continue() {
    for name in ["py-curl-expect100", "nginx-expect100"] {
        let f = load(name);
        assert!(f.server.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"));
        let events = replay(&f, Mode::Recorded);
        assert_eq!(exchanges(&events), ex(&[("POST", "/upload", 200)]));
        // The single response head is the final one, after the interim 100.
        let head_at = events
            .iter()
            .find_map(|e| match e.kind {
                L7EventKind::Head { offset, .. } if e.side == Side::Server => Some(offset),
                _ => None,
            })
            .unwrap();
        assert_eq!(head_at, 25);
        // The 20 KiB body mostly uncaptured (300-byte prefix per recv) is
        // still skipped by count.
        let prefix = replay(&f, Mode::Prefix(300));
        assert_eq!(prefix, events);
    }
}

#[test]
fn pipelined_requests_pair_in_order() {
    let f = load("py-pipelined");
    assert_eq!(
        f.order
            .iter()
            .filter(|s| matches!(s, Step::Data(Side::Client, _)))
            .count(),
        1,
        "all requests in one write"
    );
    let events = replay(&f, Mode::Recorded);
    assert_eq!(
        exchanges(&events),
        ex(&[
            ("GET", "/hello", 200),
            ("HEAD", "/hello", 200),
            ("GET", "/chunked", 200)
        ])
    );
    let f = load("nginx-pipelined");
    let events = replay(&f, Mode::Recorded);
    assert_eq!(
        exchanges(&events),
        ex(&[
            ("GET", "/index.html", 200),
            ("GET", "/words.txt", 200),
            ("HEAD", "/index.html", 200),
            ("GET", "/empty", 204),
        ])
    );
}

#[test]
fn nginx_head_304_204() {
    let f = load("nginx-head-304-204");
    let events = replay(&f, Mode::Recorded);
    assert_eq!(
        exchanges(&events),
        ex(&[
            ("HEAD", "/index.html", 200),
            ("GET", "/index.html", 304),
            ("GET", "/empty", 204),
            ("HEAD", "/words.txt", 200),
            ("GET", "/index.html", 200),
        ])
    );
}

#[test]
fn body_until_close() {
    let f = load("py-until-close");
    let events = replay(&f, Mode::Recorded);
    assert_eq!(exchanges(&events), ex(&[("GET", "/stream", 200)]));
    let last = events.last().unwrap();
    assert_eq!(last.side, Side::Server);
    assert!(matches!(last.kind, L7EventKind::End { end, .. } if end == f.server.len() as u64));
    // Without the close, the response never ends.
    let mut p = Http1Parser::new();
    p.feed(Side::Client, &f.client);
    p.feed(Side::Server, &f.server);
    let n = std::iter::from_fn(|| p.poll()).count();
    assert_eq!(n, events.len() - 1);
}

#[test]
fn small_capture_prefix_never_panics_and_keeps_pairing_sane() {
    for name in FIXTURES {
        let f = load(name);
        let full = replay(&f, Mode::Recorded);
        for k in [1, 8, 32, 64, 200] {
            let events = replay(&f, Mode::Prefix(k));
            // Every response that pairs with a request pairs with the same
            // request as with the full capture (never a wrong pair).
            let full_ex = exchanges(&full);
            let req = requests(&events);
            let res = responses(&events);
            for (x, r) in &req {
                if let Some((_, s)) = res.iter().find(|(y, _)| y == x) {
                    let m = r.method.clone().unwrap_or_default();
                    let t = r.target.clone().unwrap_or_default();
                    assert!(
                        full_ex
                            .iter()
                            .any(|(fm, ft, fs)| *fm == m && *ft == t && Some(*fs) == s.status),
                        "{name} prefix {k}: {m} {t} paired with {:?}",
                        s.status
                    );
                }
            }
        }
    }
}
